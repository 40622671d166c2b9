"""The library functions behind the walk-throughs of notebooks 00–03: the objective J(B) of the
database-code update and its bit-wise minimisation, the per-term loss functions, the start of
phase 2, validation selection and the demo run that 00 explains."""
import itertools
import json
import pathlib
import re
import types

import papermill
import pytest
import torch

from a2hlib import demo, evaluation, losses, runs
from a2hlib.losses import codes_objective, image_loss, phase2_from, reconstruction_loss
from a2hlib.models import build_model
from a2hlib.training import update_database_codes

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


def tiny_problem(n=5, k=3, m=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    U = torch.rand(m, k, generator=g) * 2 - 1
    B = torch.randint(0, 2, (n, k), generator=g).float() * 2 - 1
    sample = torch.randperm(n, generator=g)[:m]
    labels = torch.randint(0, 2, (n,), generator=g)
    S = losses.similarity_matrix(labels[sample], labels)
    return B, U, sample, S


def loop_objective(B, U, sample, S, gamma):
    m, k = U.shape
    n = B.shape[0]
    total = 0.0
    for i in range(m):
        for j in range(n):
            inner = sum(float(U[i, t]) * float(B[j, t]) for t in range(k))
            total += (inner - k * float(S[i, j])) ** 2
        total += gamma * sum((float(B[int(sample[i]), t]) - float(U[i, t])) ** 2 for t in range(k))
    return total


@pytest.mark.parametrize("gamma", [0.0, 3.0, 200.0])
def test_codes_objective_against_a_plain_loop(gamma):
    B, U, sample, S = tiny_problem()
    assert codes_objective(B, U, sample, S, gamma).item() == pytest.approx(loop_objective(B, U, sample, S, gamma),
                                                                          rel=1e-12)


def test_codes_objective_refuses_mismatched_shapes():
    B, U, sample, S = tiny_problem()
    with pytest.raises(ValueError, match="codes_objective"):
        codes_objective(B, U, sample, S.t(), 1.0)


@pytest.mark.parametrize("seed, gamma", [(0, 1.0), (1, 200.0), (2, 0.5), (3, 0.0)])
def test_each_bit_update_is_the_best_column_and_never_increases_the_objective(seed, gamma):
    """The closed form of METHOD §4.2, bit by bit, equals a brute-force search over all 2^n columns."""
    B, U, sample, S = tiny_problem(seed=seed)
    n, k = B.shape
    swept = update_database_codes(B, U, sample, S, gamma)
    current = B.clone()
    for bit in range(k):
        before = codes_objective(current, U, sample, S, gamma).item()
        best, best_value = None, None
        for column in itertools.product((-1.0, 1.0), repeat=n):
            trial = current.clone()
            trial[:, bit] = torch.tensor(column)
            value = codes_objective(trial, U, sample, S, gamma).item()
            if best_value is None or value < best_value - 1e-9:
                best, best_value = trial, value
        current[:, bit] = swept[:, bit]
        after = codes_objective(current, U, sample, S, gamma).item()
        assert after == pytest.approx(best_value, rel=1e-12, abs=1e-9)
        assert after <= before + 1e-9


def test_one_sweep_reaches_a_value_no_better_than_the_global_minimum():
    B, U, sample, S = tiny_problem(n=4, k=2, m=2, seed=4)
    swept = codes_objective(update_database_codes(B, U, sample, S, 2.0), U, sample, S, 2.0).item()
    everything = [codes_objective(torch.tensor(c).view(4, 2), U, sample, S, 2.0).item()
                  for c in itertools.product((-1.0, 1.0), repeat=8)]
    assert min(everything) <= swept <= codes_objective(B, U, sample, S, 2.0).item()


def test_reconstruction_and_image_terms_against_loops():
    g = torch.Generator().manual_seed(0)
    x, x_hat = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    image, target = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    rec = sum(float(x_hat[i, d] - x[i, d]) ** 2 for i in range(3) for d in range(7)) / (3 * 7)
    img = sum(float(v) ** 2 for v in (image - target).flatten()) / (3 * 2 * 4 * 4)
    assert reconstruction_loss(x_hat, x).item() == pytest.approx(rec, rel=1e-6)
    assert image_loss(image, target).item() == pytest.approx(img, rel=1e-6)


@pytest.mark.parametrize("outer, start, expected", [(40, 0.5, 20), (12, 0.5, 6), (3, 0.5, 1), (1, 0.5, 0),
                                                    (2, 0.5, 1), (10, 0.0, 0), (10, 1.0, 10), (7, 0.3, 2)])
def test_phase2_from_is_the_official_floor(outer, start, expected):
    assert phase2_from(outer, start) == expected


@pytest.mark.parametrize("outer, start", [(0, 0.5), (10, -0.1), (10, 1.5)])
def test_phase2_from_refuses_bad_values(outer, start):
    with pytest.raises(ValueError, match="outer_iterations"):
        phase2_from(outer, start)


def test_validation_selector_scores_the_state_like_query_map(blob_dataset):
    torch.manual_seed(0)
    model = build_model("adsh", 8, backbone="small", image_size=32).eval()
    g = torch.Generator().manual_seed(1)
    B = torch.randint(0, 2, (len(blob_dataset), 8), generator=g).float() * 2 - 1
    val = torch.utils.data.Subset(blob_dataset, list(range(0, len(blob_dataset), 3)))
    val.targets = blob_dataset.targets[val.indices]
    select = evaluation.validation_selector(val, blob_dataset.targets)
    state = types.SimpleNamespace(model=model, B=B)
    expected = evaluation.query_map(model, val, B, blob_dataset.targets)
    assert select(state) == pytest.approx(expected, abs=1e-12)
    aware = evaluation.validation_selector(val, blob_dataset.targets, ties="aware")(state)
    assert aware == pytest.approx(evaluation.query_map(model, val, B, blob_dataset.targets, ties="aware"), abs=1e-12)


def test_validation_selector_checks_before_training(blob_dataset):
    with pytest.raises(ValueError, match="ties"):
        evaluation.validation_selector(blob_dataset, blob_dataset.targets, ties="best")
    empty = torch.utils.data.Subset(blob_dataset, [])
    empty.targets = blob_dataset.targets[:0]
    with pytest.raises(ValueError, match="val split"):
        evaluation.validation_selector(empty, blob_dataset.targets)
    with pytest.raises(ValueError, match="db_labels"):
        evaluation.validation_selector(blob_dataset, torch.full((5,), float("nan")))


def test_demo_run_is_the_showcase_of_the_demo_plan(tmp_path, monkeypatch):
    """00 explains the run that the demo hands to it, and defaults to the same code length."""
    monkeypatch.delenv("CI", raising=False)
    asked = []
    monkeypatch.setattr(runs, "ensure_run", lambda *args, **kwargs: asked.append((args, kwargs))
                        or runs.run_dir(*args[:5]))
    folder = runs.demo_run(tmp_path)
    overview = [s for s in demo.demo_steps(tmp_path, NOTEBOOKS) if s.notebook == demo.OVERVIEW][0]
    assert folder.resolve() == pathlib.Path(overview.parameters["run_dir"]).resolve()
    assert asked[0][1]["config"] == "cpu" and not asked[0][1]["smoke"]
    declared = papermill.inspect_notebook(str(NOTEBOOKS / f"{demo.OVERVIEW}.ipynb"))
    assert int(declared["code_length"]["default"]) == overview.parameters["code_length"] == max(demo.BITS)
    runs.demo_run(tmp_path, 12, smoke=True)
    assert asked[1][0][3] == 12 and asked[1][1]["smoke"]


TAUGHT = ("00_overview", "01_data_preparation", "02_training", "03_retrieval_evaluation")


@pytest.mark.parametrize("name", TAUGHT)
def test_taught_notebooks_keep_their_shape(name):
    """Committed without outputs, python3 kernel, one parameters cell then `notebook.start`, no `def`
    in a code cell, display equations, and a closing "Try this" with two to four suggestions."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    cells = nb["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    text = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert len({c["id"] for c in cells}) == len(cells)
    assert [c["id"] for c in code if "parameters" in c["metadata"].get("tags", [])] == [code[0]["id"]]
    assert "session = notebook.start(globals())" in "".join(code[1]["source"])
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert not [c["id"] for c in code if re.search(r"^\s*def ", "".join(c["source"]), re.M)]
    assert any(re.search(r"\$\$.+?\$\$", t, re.S) for t in text)
    assert text[-1].startswith("## Try this") and 2 <= len(re.findall(r"^\* ", text[-1], re.M)) <= 4
