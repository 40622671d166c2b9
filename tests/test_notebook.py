"""Parameter checks and the notebook session (a2hlib.notebook): every bad value is refused with its
name and what to do, before anything runs; text from `papermill -p` becomes the declared type."""
import pytest
import torch

from a2hlib import notebook
from a2hlib.notebook import ParameterError

DECLARED = {"model": str, "code_length": int, "seeds": list, "overrides": dict, "device": str,
            "lr_scale": float, "smoke_test": bool, "runs_dir": str, "figures_dir": str, "threads": int}


def test_text_from_papermill_becomes_the_declared_type():
    out = notebook.check({"seeds": "[0]", "code_length": "24", "overrides": '{"epochs": 5}', "lr_scale": 2,
                          "smoke_test": "True"}, DECLARED)
    assert out == {"seeds": [0], "code_length": 24, "overrides": {"epochs": 5}, "lr_scale": 2.0, "smoke_test": True}
    assert isinstance(out["lr_scale"], float)


@pytest.mark.parametrize("values, message", [
    ({"code_length": "twelve"}, r"parameter code_length: 'twelve' is not an int; pass e\.g\. -p code_length 12"),
    ({"code_length": 0}, r"code_length = 0 must be ≥ 1"),
    ({"code_length": True}, r"code_length: True is a bool, not an int"),
    ({"model": "nonsense"}, r"model = 'nonsense' must be one of 'adsh', 'a2net', 'a2netpp'"),
    ({"seeds": "[0, 0]"}, r"seeds = \[0, 0\] must not repeat"),
    ({"seeds": []}, r"seeds = \[\] must not be empty"),
    ({"overrides": {"lr": "x"}}, r"overrides = .*\['lr'\] = 'x' is not a float"),
    ({"overrides": {"lrate": 0.1}}, r"has no field 'lrate' \(TrainConfig fields: model, code_length"),
    ({"overrides": {"seed": 3}}, r"sets 'seed', which has its own parameter: use -p seed"),
    ({"overrides": {"weights": None, "crop_scale": [0.5, 1.0], "lr_step_at": None}}, None),
    ({"overrides": {"crop_scale": ["a", 1.0]}}, r"\['crop_scale'\]"),
    ({"no_such": 1}, r"parameter no_such: the notebook declares no such parameter \(it has: code_length"),
])
def test_bad_values_name_the_parameter(values, message):
    if message is None:
        notebook.check(values, DECLARED)
        return
    with pytest.raises(ParameterError, match=message):
        notebook.check(values, DECLARED)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ParameterError) as err:
        notebook.check({"model": "x", "code_length": -1}, DECLARED)
    assert "model" in str(err.value) and "code_length" in str(err.value) and len(str(err.value).splitlines()) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ParameterError, match="device = 'cuda' asks for CUDA, but no CUDA device is available"):
        notebook.check({"device": "cuda"}, DECLARED)
    with pytest.raises(ParameterError, match="must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        notebook.check({"device": "gpu"}, DECLARED)
    # work submitted to other machines (SLURM): only the form of the name is checked here
    assert notebook.check({"device": "cuda:1"}, DECLARED, local=False) == {"device": "cuda:1"}
    with pytest.raises(ParameterError, match="must be 'auto'"):
        notebook.check({"device": "gpu"}, DECLARED, local=False)


def test_start_coerces_in_place_and_sets_up(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("A2H_THREADS", "1")
    namespace = {"__annotations__": dict(DECLARED), "model": "adsh", "code_length": "12", "seeds": "[1, 2]",
                 "overrides": {}, "device": "cpu", "lr_scale": 1.0, "smoke_test": False,
                 "runs_dir": str(tmp_path / "runs"), "figures_dir": "", "threads": 0}
    before = torch.get_num_threads()
    try:
        session = notebook.start(namespace)
        assert namespace["code_length"] == 12 and namespace["seeds"] == [1, 2]
        assert session.parameters["seeds"] == [1, 2] and session.device == torch.device("cpu")
        assert session.threads == 1 and torch.get_num_threads() == 1
        assert not session.smoke and session.runs_dir == tmp_path / "runs" and session.figures_dir is None
        assert not (tmp_path / "runs").exists()  # nothing is created
        monkeypatch.setenv("CI", "true")
        smoke = notebook.start({**namespace, "figures_dir": "../figures", "threads": 2})
        assert smoke.smoke and smoke.runs_dir == tmp_path / "runs" / "smoke"
        assert smoke.figures_dir == tmp_path / "runs" / "smoke" / "figures" and smoke.threads == 2
    finally:
        torch.set_num_threads(before)


def test_bad_thread_setting_is_named(monkeypatch):
    monkeypatch.setenv("A2H_THREADS", "many")
    with pytest.raises(ParameterError, match="A2H_THREADS='many'"):
        notebook.set_threads(0)


def test_declared_types_of_a_real_notebook():
    import pathlib
    types = notebook.declared_types(pathlib.Path(__file__).parent.parent / "notebooks" / "02_training.ipynb")
    assert types["code_length"] is int and types["overrides"] is dict and types["model"] is str


def test_smoke_paths_and_switch(monkeypatch):
    assert notebook.smoke_paths("r", "f", False) == ("r", "f")
    assert notebook.smoke_paths("r", "f", True) == ("r/smoke", "r/smoke/figures")
    assert notebook.smoke_paths("r", "", True) == ("r/smoke", "")
    assert notebook.smoke_paths("", "../figures", True) == ("", "")  # never figures/ in smoke mode
    monkeypatch.setenv("CI", "false")
    assert not notebook.smoke_mode(False) and notebook.smoke_mode(True)
    monkeypatch.setenv("CI", "true")
    assert notebook.smoke_mode(False)
