"""Checkpoints that prove their integrity (a2hlib.checkpoints): round trip, checksum, one-line
errors for every kind of bad file, a full disk, and stale temporaries removed when a run starts."""
import copy
import errno
import os
import pathlib
import re
import shutil
import traceback

import numpy as np
import pytest
import torch

from a2hlib import checkpoints, fileio, runs, training
from a2hlib.codes import binarize
from a2hlib.training import TrainState, get_config, load_checkpoint, save_checkpoint, train


def make_state(iteration=2):
    """A run state without training: a smoke model, an Adam optimiser after one step (so it has
    moment tensors), random B for the 48 items of the blob dataset."""
    config = get_config("smoke", model="adsh", code_length=8, outer_iterations=2)
    torch.manual_seed(0)
    model = training._new_model(config)
    optimizer = training._optimizer(config, model)
    sum(p.square().sum() for p in model.parameters()).backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(1)
    B = binarize(torch.randn(48, 8, generator=generator))
    state = TrainState(config, model, B, iteration=iteration, history=[{"iteration": 0, "total": 1.25}],
                       selection=[{"iteration": 1, "score": 0.5}], best_iteration=1,
                       best_state={"model": copy.deepcopy(model.state_dict()), "B": -B}, seconds=3.5)
    return state, optimizer, generator


def first_moment_of(optimizer_state):
    return next(iter(optimizer_state["state"].values()))["exp_avg"]


def first_moment(optimizer):
    return first_moment_of(optimizer.state_dict())


def test_round_trip_restores_every_value(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "_CHUNK", 1000)  # hash in many chunks
    state, optimizer, generator = make_state()
    path = tmp_path / "c.pt"
    save_checkpoint(path, state, optimizer, generator)
    assert path.read_bytes().startswith(b"a2hlib-checkpoint 2\nsha256 ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    ckpt = load_checkpoint(path)
    assert ckpt["config"] == state.config.to_dict() and ckpt["iteration"] == 2
    assert torch.equal(ckpt["B"], state.B) and torch.equal(ckpt["best_state"]["B"], -state.B)
    assert ckpt["history"] == state.history and ckpt["selection"] == state.selection
    assert ckpt["seconds"] == 3.5 and ckpt["best_iteration"] == 1
    for name, value in state.model.state_dict().items():
        assert torch.equal(ckpt["model"][name], value), name
    assert torch.equal(first_moment_of(ckpt["optimizer"]), first_moment(optimizer))
    assert torch.equal(ckpt["rng"]["sampler"], generator.get_state())

    model, B, config = training.model_from_checkpoint(path)
    assert not model.training and torch.equal(B, state.B) and config == state.config
    _, best_B, _ = training.model_from_checkpoint(path, best=True)
    assert torch.equal(best_B, -state.B)


def flip_optimizer_bytes(path, optimizer, count=64):
    """Flip `count` bytes inside the stored Adam moments of the first parameter (what a bad disk
    or copy does); returns how many stored values changed."""
    data = bytearray(path.read_bytes())
    raw = first_moment(optimizer).numpy().tobytes()
    start = bytes(data).find(raw)
    assert start > 0 and bytes(data).find(raw, start + 1) == -1
    where = np.random.default_rng(0).choice(len(raw), size=count, replace=False)
    for i in where:
        data[start + i] ^= 0xFF
    path.write_bytes(bytes(data))
    return len(set(where // 4))


def test_flipped_bytes_are_refused_not_resumed(tmp_path, blob_dataset):
    state, optimizer, generator = make_state()
    path = tmp_path / "c.pt"
    save_checkpoint(path, state, optimizer, generator)
    assert flip_optimizer_bytes(path, optimizer) > 1
    with pytest.raises(ValueError, match=r"c\.pt: checksum mismatch, the file is corrupt .* — delete it"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="checksum mismatch"):  # train must not resume from it
        train(state.config, blob_dataset, checkpoint=path, progress=False)


class Unsafe:
    """A type that torch.load(weights_only=True) refuses."""


def write_case(case, path, state, optimizer, generator):
    if case == "missing":
        return
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("these are not the weights you are looking for\n")
    elif case == "old_format":  # what save_checkpoint wrote before checksums: a bare torch.save zip
        torch.save({"config": state.config.to_dict(), "model": state.model.state_dict()}, path)
    elif case in ("wrong_keys", "not_a_dict", "unsafe_global", "bad_iteration"):
        payload = {"wrong_keys": {"weights": torch.zeros(3)}, "not_a_dict": [1, 2, 3],
                   "unsafe_global": {"x": Unsafe()}}.get(case)
        if case == "bad_iteration":
            save_checkpoint(path, state, optimizer, generator)
            payload = checkpoints.read_verified(path)
            payload["iteration"] = 7
        checkpoints.write_verified(path, payload)
    else:
        save_checkpoint(path, state, optimizer, generator)
        data = path.read_bytes()
        if case == "truncated":
            path.write_bytes(data[:len(data) // 2])
        elif case == "header_only":
            path.write_bytes(data[:40])
        elif case == "flipped":
            flip_optimizer_bytes(path, optimizer)
        elif case == "appended":
            path.write_bytes(data + b"\0" * 10)
        else:
            raise AssertionError(case)


CASES = {
    "missing": "no checkpoint there — train first",
    "empty": "the file is empty",
    "text": "not an a2hlib checkpoint",
    "old_format": "older a2hlib format without a checksum",
    "wrong_keys": "not a training checkpoint \\(missing 'config', 'model'",
    "not_a_dict": "not a training checkpoint \\(it holds a list",
    "unsafe_global": "object of type test_checkpoints.Unsafe, which safe loading refuses",
    "bad_iteration": "'iteration' is 7, outside 0..2",
    "truncated": "truncated",
    "header_only": "truncated",
    "flipped": "checksum mismatch",
    "appended": "longer than its header says",
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_load_failure_is_one_line_naming_the_file(tmp_path, case):
    state, optimizer, generator = make_state()
    path = tmp_path / "checkpoint.pt"
    write_case(case, path, state, optimizer, generator)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert " — " in message and ("train" in message)
    assert re.search(CASES[case], message), message
    if case != "missing":
        assert isinstance(info.value, checkpoints.CheckpointError)
    # nothing in the printed traceback suggests loading unsafely
    printed = "".join(traceback.format_exception(info.value))
    assert "weights_only" not in printed and "trust" not in printed


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    state, optimizer, generator = make_state(iteration=1)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, state, optimizer, generator)
    before = path.read_bytes()

    class DiskFillsUp:
        """A file whose disk is full after `room` bytes."""

        def __init__(self, f, room):
            self.f, self.room = f, room

        def write(self, data):
            size = memoryview(data).nbytes
            if size > self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= size
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: DiskFillsUp(real_fdopen(fd, mode, *a, **k), 5000))
    state.iteration = 2
    with pytest.raises(fileio.DiskFullError) as info:
        save_checkpoint(path, state, optimizer, generator)
    monkeypatch.undo()
    message = str(info.value)
    assert f"{path}: the disk is full" in message and "No space left" in message
    assert "unexpected pos" not in message and "\n" not in message
    assert path.read_bytes() == before and load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_stale_temporaries_are_removed_when_a_run_starts(tmp_path, blob_dataset):
    state, optimizer, generator = make_state()  # a finished run: train() has nothing left to do
    folder = tmp_path / "run"
    save_checkpoint(folder / runs.CHECKPOINT, state, optimizer, generator)
    (folder / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"\0" * 4096)
    (folder / ".metrics.json.x7.tmp").write_bytes(b"{")
    resumed = runs.train_or_resume(state.config, blob_dataset, folder, progress=False)
    assert resumed.iteration == 2 and torch.equal(resumed.B, state.B)
    assert sorted(p.name for p in folder.iterdir()) == [runs.CHECKPOINT]

    # train() on its own clears the temporaries of its checkpoint (and only those)
    shutil.copy(folder / runs.CHECKPOINT, tmp_path / "c.pt")
    (tmp_path / ".c.pt.abc.tmp").write_bytes(b"\0")
    train(state.config, blob_dataset, checkpoint=tmp_path / "c.pt", progress=False)
    assert not (tmp_path / ".c.pt.abc.tmp").exists() and (tmp_path / "c.pt").exists()


def test_finished_run_with_corrupt_checkpoint_is_reported(tmp_path):
    state, optimizer, generator = make_state()
    folder = tmp_path / "run"
    save_checkpoint(folder / runs.CHECKPOINT, state, optimizer, generator)
    assert runs.is_complete(folder)
    (folder / runs.CHECKPOINT).write_bytes((folder / runs.CHECKPOINT).read_bytes()[:-100])
    with pytest.raises(ValueError, match="checkpoint.pt: truncated"):
        runs.load_run(folder)


def test_names_stay_importable_from_training():
    for name in ("save_checkpoint", "load_checkpoint", "model_from_checkpoint", "model_from_state"):
        assert getattr(training, name) is getattr(checkpoints, name)
    assert pathlib.Path(checkpoints.__file__).name == "checkpoints.py"
