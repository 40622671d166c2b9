"""Notebook 01 through papermill (as the batch runner and users call it) on a real dataset (nbval
executes it on the built-in one)."""
import os
import pathlib

import papermill
import pytest

from a2hlib.manifest import read_dataset

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
DEBIAN_FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("dataset", ["fashion_mnist"])
def test_data_preparation_notebook_with_papermill(dataset, tmp_path, monkeypatch):
    if dataset == "fashion_mnist" and not DEBIAN_FASHION.is_dir() and not os.environ.get("A2H_REQUIRE_FASHION_MNIST"):
        pytest.skip("Debian package dataset-fashion-mnist is not installed (CI requires it)")
    monkeypatch.setenv("CI", "true")  # smoke: small synthetic preset, at most 300 images per split
    papermill.execute_notebook(str(NOTEBOOKS / "01_data_preparation.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters={"dataset": dataset, "runs_dir": str(tmp_path / "runs")},
                               kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False)
    prepared = read_dataset(tmp_path / "runs" / "smoke" / "data" / dataset)
    assert prepared.counts["database"] > 0 and prepared.counts["query"] > 0
    assert (tmp_path / "runs" / "smoke" / "data" / dataset / f"data_samples_{dataset}.png").exists()
    if dataset == "fashion_mnist":
        assert prepared.counts == {"database": 300, "query": 300, "val": 0}
    else:
        assert prepared.masks() is not None and prepared.attributes() is not None
