"""Shared fixtures. Device and dtype for tests come from the environment (pytorch-metric-learning style):
A2H_TEST_DEVICE=cuda runs the device-aware tests on a GPU."""
from __future__ import annotations

import os

import matplotlib
import pytest
import torch

from a2hlib.datasets import IMAGENET_MEAN, IMAGENET_STD
from a2hlib.notebook import set_threads
from smoke_book import smoke_runs, smoke_site  # noqa: F401  (session fixtures of the book tests)

# Figures drawn by the tests themselves need no screen. Not through MPLBACKEND: kernels started by
# the tests (nbval, papermill) inherit the environment and would then show no inline figures.
matplotlib.use("Agg")

TEST_DEVICE = os.environ.get("A2H_TEST_DEVICE", "cpu")
set_threads(0)  # the notebooks' thread setting (A2H_THREADS, else the measured default): fast on busy machines


class BlobDataset(torch.utils.data.Dataset):
    """Separable toy data: each class is a coloured square at a class-specific position, plus noise.
    Implements the item protocol of docs/ARCHITECTURE.md."""

    def __init__(self, num_classes: int = 4, per_class: int = 12, image_size: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        n = num_classes * per_class
        self.targets = torch.arange(num_classes).repeat_interleave(per_class)
        images = torch.rand(n, 3, image_size, image_size, generator=g) * 0.2
        half = image_size // 2
        for i, c in enumerate(self.targets.tolist()):
            y, x = (c // 2) % 2 * half, c % 2 * half
            images[i, c % 3, y:y + half, x:x + half] += 0.8
        mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
        self.images = (images.clamp(0, 1) - mean) / std
        self.num_classes, self.image_size = num_classes, image_size

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.images[i], i


@pytest.fixture
def blob_dataset():
    return BlobDataset()


@pytest.fixture
def device():
    if TEST_DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("A2H_TEST_DEVICE=cuda but no GPU")
    return torch.device(TEST_DEVICE)
