"""Atomic writes, strict JSON and the disk-full message (a2hlib.fileio)."""
import errno
import json
import pathlib

import numpy as np
import pytest
import torch

from a2hlib import fileio


def test_write_json_is_atomic_and_keeps_old_file_on_error(tmp_path):
    path = fileio.write_json(tmp_path / "a" / "m.json", {"x": np.float32(1.5), "p": pathlib.Path("q")})
    assert json.loads(path.read_text()) == {"x": 1.5, "p": "q"}
    with pytest.raises(TypeError, match="object"):
        fileio.write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"x": 1.5, "p": "q"}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]  # no temporary file left


def test_json_is_strict_for_nan_arrays_and_tensors(tmp_path):
    path = fileio.write_json(tmp_path / "x.json", {"a": float("nan"), "b": np.array([1.0, np.inf]),
                                                  "c": torch.tensor([0.5]), "d": [np.float32("nan")], 3: np.bool_(True)})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard {c}")) == {
        "a": None, "b": [1.0, None], "c": [0.5], "d": [None], "3": True}


def test_json_ready_rounds_when_asked():
    out = fileio.json_ready({"a": np.array([[0.123456789, np.nan]]), "b": np.int64(3),
                             "c": [np.float32(np.inf), True], "d": "x"}, digits=3)
    assert out == {"a": [[0.123, None]], "b": 3, "c": [None, True], "d": "x"}


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        fileio.read_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        fileio.read_json(tmp_path / "bad.json")


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64")])
def test_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, failure):
    target = fileio.write_json(tmp_path / "m.json", {"old": 1})

    def write(f):
        f.write(b"partial")
        raise failure

    with pytest.raises(fileio.DiskFullError, match=r"m\.json: the disk is full.*free space"):
        fileio.atomic_write(target, write)
    assert json.loads(target.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_other_errors_pass_through_unchanged(tmp_path):
    def write(f):
        raise RuntimeError("something else")

    with pytest.raises(RuntimeError, match="something else"):
        fileio.atomic_write(tmp_path / "x.bin", write)
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"x")
    (tmp_path / ".metrics.json.q.tmp").write_bytes(b"x")
    (tmp_path / "checkpoint.pt").write_bytes(b"keep")
    removed = fileio.remove_stale_temporaries(tmp_path, "checkpoint.pt")
    assert [p.name for p in removed] == [".checkpoint.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".metrics.json.q.tmp", "checkpoint.pt"]
    assert [p.name for p in fileio.remove_stale_temporaries(tmp_path)] == [".metrics.json.q.tmp"]


def test_save_array_round_trip(tmp_path):
    path = fileio.save_array(tmp_path / "codes.npy", np.array([[1, -1]], dtype=np.int8))
    assert np.load(path).tolist() == [[1, -1]]
