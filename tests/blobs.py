"""Separable toy data for the training tests (the `blob_dataset` fixture of conftest.py)."""
from __future__ import annotations

import torch

from a2hlib.datasets import IMAGENET_MEAN, IMAGENET_STD


class BlobDataset(torch.utils.data.Dataset):
    """Each class is a coloured square at a class-specific position, plus noise. Implements the
    item protocol of docs/ARCHITECTURE.md."""

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
