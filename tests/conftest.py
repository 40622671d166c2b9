"""Shared fixtures. Device and dtype for tests come from the environment (pytorch-metric-learning style):
A2H_TEST_DEVICE=cuda runs the device-aware tests on a GPU."""
from __future__ import annotations

import os

import matplotlib
import pytest

from smoke_book import smoke_runs, smoke_site  # noqa: F401  (session fixtures of the book tests)

# Figures drawn by the tests themselves need no screen. Not through MPLBACKEND: kernels started by
# the tests (nbval, papermill) inherit the environment and would then show no inline figures.
matplotlib.use("Agg")

TEST_DEVICE = os.environ.get("A2H_TEST_DEVICE", "cpu")
# No torch or a2hlib import at module level: under pytest-xdist the controlling process loads this
# file too, and runs no test.


@pytest.fixture(scope="session", autouse=True)
def threads():
    """The notebooks' thread setting (A2H_THREADS, else the measured default): fast on busy machines."""
    from a2hlib.notebook import set_threads
    set_threads(0)


@pytest.fixture
def blob_dataset():
    from blobs import BlobDataset
    return BlobDataset()


@pytest.fixture
def device():
    import torch
    if TEST_DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("A2H_TEST_DEVICE=cuda but no GPU")
    return torch.device(TEST_DEVICE)


# `make test` runs the suite in parallel processes, one per core up to 4 (pytest-xdist, `-n auto
# --maxprocesses 4`). Two groups must each stay in one process: the notebooks, in order (02 trains
# the run that 03-06 read), and the tests that share the executed smoke notebooks, the site and the
# browser (so that their session fixtures run once). Every other test is scheduled on its own.
SITE_TESTS = ("tests/test_book.py", "tests/test_browser.py", "tests/test_figures_inline.py")


def schedule_group(nodeid: str) -> str:
    """The scheduling unit of a test: its group, else the test itself."""
    path = nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        return "notebooks"
    return "site" if path in SITE_TESTS else nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # the largest units (the two groups) are sent first
        def _split_scope(self, nodeid: str) -> str:
            return schedule_group(nodeid)

    return GroupScheduling(config, log)


# Files whose tests take seconds each (compilation, subprocesses, real kernels). After the two groups,
# xdist sends tests in collection order; these go first, so that the last tests to finish are short.
SLOW_FIRST = ("tests/test_training.py", "tests/test_runs.py", "tests/test_compat.py", "tests/test_batch.py",
              "tests/test_backbones.py", "tests/test_synthetic.py", "tests/test_data_prep.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(SLOW_FIRST))
