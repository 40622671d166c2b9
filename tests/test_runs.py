"""Run folders, evaluation helpers and the demo plan."""
import json
import pathlib

import numpy as np
import pytest
import torch

from a2hlib import batch, demo, evaluation, runs
from a2hlib.codes import binarize


def test_top_k_ranks_by_hamming_distance_then_index():
    q = torch.tensor([[1., 1, 1, 1]])
    db = torch.tensor([[-1., -1, 1, 1], [1, 1, 1, -1], [1, 1, 1, 1], [1, -1, 1, 1], [-1, -1, -1, -1]])
    assert evaluation.top_k(q, db, 4).tolist() == [[2, 1, 3, 0]]


def test_random_code_baseline_is_near_class_prior():
    labels = torch.arange(10).repeat(30)
    chance = evaluation.random_code_baseline(labels, labels, 32)
    assert 0.08 < chance < 0.16


def test_query_map_matches_metrics(blob_dataset):
    from a2hlib.metrics import mean_average_precision
    from a2hlib.models import build_model, encode
    model = build_model("adsh", 8, image_size=32).eval()
    db = binarize(torch.randn(len(blob_dataset), 8, generator=torch.Generator().manual_seed(0)))
    expected = mean_average_precision(binarize(encode(model, blob_dataset)), db, blob_dataset.targets,
                                      blob_dataset.targets)
    assert evaluation.query_map(model, blob_dataset, db, blob_dataset.targets) == pytest.approx(expected)


def test_demo_plan_sends_gallery_figures_to_figures_dir(tmp_path):
    steps = demo.demo_steps(tmp_path, demo.ROOT / "notebooks")
    batch.check_parameters(steps, demo.ROOT / "notebooks")
    names = [s.notebook for s in steps]
    assert names[0] == batch.PREPARE and names[-1] == demo.OVERVIEW
    runs_per_seed = len(demo.MODELS) * len(demo.BITS)
    assert names.count(batch.TRAIN) == names.count(batch.EVALUATE) == runs_per_seed * len(demo.SEEDS) == 18
    with_figures = {(s.notebook, s.parameters.get("model"), s.parameters.get("code_length"), s.parameters.get("seed"))
                    for s in steps if s.parameters.get("figures_dir") == str(demo.FIGURES)}
    assert (batch.TRAIN, "a2netpp", 24, 0) in with_figures and (batch.TRAIN, "a2netpp", 24, 1) not in with_figures
    assert (batch.TRAIN, "adsh", 12, 0) not in with_figures
    overview = steps[-1].parameters["run_dir"]
    assert overview.endswith("a2netpp-24b-s0")  # the showcase run: seed 0


def test_demo_runs_its_plan_stage_by_stage_through_the_batch_runner(tmp_path, monkeypatch, capsys):
    import fake_notebooks  # papermill's stand-in (tests/fake_notebooks.py)
    log = tmp_path / "executions.log"
    monkeypatch.setenv("FAKE_NOTEBOOK_LOG", str(log))
    monkeypatch.setenv("FAKE_NOTEBOOK_RENDEZVOUS", "2")  # the first two trainings run side by side
    monkeypatch.setattr(batch, "run_notebook", fake_notebooks.run_notebook)
    assert demo.main(["--runs-dir", str(tmp_path / "runs"), "--devices", "cpu,cpu"]) == 0
    assert "41 done, 0 skipped, 0 failed" in capsys.readouterr().out
    order = [e["notebook"] for e in fake_notebooks.executions(log)]
    assert order[0] == batch.PREPARE and order[-4:] == [batch.BIAS, batch.BITS, batch.RESULTS, demo.OVERVIEW]
    assert sorted(order[1:37]) == [batch.TRAIN] * 18 + [batch.EVALUATE] * 18
    assert len({e["pid"] for e in fake_notebooks.executions(log)}) == 2  # two cpu workers shared the work


def test_trained_runs_in_parallel_workers_equal_serial_training(tmp_path):
    """Two worker processes train two missing runs at once; the runs equal those trained one after
    the other (weights and codes, exactly)."""
    parallel = runs.trained_runs(tmp_path / "a", "synthetic", ["adsh", "a2net"], [0], 8, smoke=True, workers=2)
    serial = runs.trained_runs(tmp_path / "b", "synthetic", ["adsh", "a2net"], [0], 8, smoke=True, workers=1)
    for key in serial:
        assert torch.equal(parallel[key].B, serial[key].B)
        assert all(torch.equal(a, b) for a, b in zip(parallel[key].model.state_dict().values(),
                                                      serial[key].model.state_dict().values()))
