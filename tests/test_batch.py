"""The papermill grid runner on a two-point grid, one point made to fail (smoke mode: CI is set)."""
import json
import pathlib

import pytest

from a2hlib import batch


@pytest.fixture(autouse=True)
def smoke(monkeypatch):
    monkeypatch.setenv("CI", "true")


def test_grid_records_failure_continues_and_skips_finished(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["--datasets", "synthetic", "not_prepared", "--models", "adsh", "--bits", "8",
            "--runs-dir", str(runs), "--results"]
    assert batch.main(argv) == 1
    out = capsys.readouterr().out
    good = runs / "smoke" / "synthetic" / "adsh-8b-s0"
    record = json.loads((good / "metrics.json").read_text())
    assert record["config"]["model"] == "adsh" and record["config"]["code_length"] == 8 and record["smoke"]
    assert 0 <= record["metrics"]["map_all_stable"] <= 1 and record["metrics"]["map_all_stable"] > record["random_codes_map"]
    assert (good / "02_training.ipynb").exists() and (good / "evaluation.json").exists()
    lines = {tuple(line.split()[:5]) for line in out.splitlines()}
    assert ("not_prepared", "adsh", "8b", "s0", "02_training") in lines
    failed_line = next(line for line in out.splitlines() if line.startswith("not_prepared") and "02_training" in line)
    assert "failed" in failed_line and "02_training.ipynb" in failed_line and "FileNotFoundError" in failed_line
    blocked = next(line for line in out.splitlines() if line.startswith("not_prepared") and "03_retrieval" in line)
    assert "blocked" in blocked
    assert "3 done, 0 skipped, 1 failed, 1 blocked" in out
    assert "adsh" in (runs / "smoke" / "results.md").read_text()

    assert batch.main(["--datasets", "synthetic", "--models", "adsh", "--bits", "8", "--runs-dir", str(runs)]) == 0
    assert "0 done, 2 skipped, 0 failed" in capsys.readouterr().out


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit, match="no_such_parameter"):
        batch.main(["--models", "adsh", "--bits", "8", "--runs-dir", str(runs), "--param", "no_such_parameter=3"])
    assert not runs.exists()


def test_params_are_parsed_as_python_literals():
    assert batch.parse_params(["epochs=3", "lr=1e-3", "name=abc", "flags=[1, 2]"]) == {
        "epochs": 3, "lr": 1e-3, "name": "abc", "flags": [1, 2]}
    with pytest.raises(SystemExit, match="name=value"):
        batch.parse_params(["epochs"])


def test_analysis_notebooks_run_through_the_batch_runner(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["--datasets", "synthetic", "--models", "adsh", "--bits", "8", "--runs-dir", str(runs), "--analyses"]
    assert batch.main(argv) == 0
    analysis = runs / "smoke" / "synthetic" / "analysis"
    bias = json.loads((analysis / "simplicity_bias.json").read_text())
    bits = json.loads((analysis / "bit_attributes_8b.json").read_text())
    assert bias["parameters"]["code_length"] == 8 and bits["parameters"]["code_length"] == 8
    assert (analysis / "04_simplicity_bias.ipynb").exists() and (analysis / "05_bit_attributes.ipynb").exists()
    assert "4 done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert batch.main(argv) == 0
    assert "0 done, 4 skipped, 0 failed" in capsys.readouterr().out
