"""Training checkpoints that prove their integrity: writing, verified reading, resuming.

Explained in `notebooks/02_training.ipynb` (a run resumes from its checkpoint after a kill).

A checkpoint file is a fixed 119-byte text header followed by the payload:

    a2hlib-checkpoint 2\\n
    sha256 <64 hex digits of the payload>\\n
    bytes <payload size, 20 digits>\\n
    <payload: torch.save of a dict of state_dicts and plain values>

The payload is hashed while `torch.save` streams it to disk (no copy in memory), the header is
filled in last, and the file is renamed into place atomically (`a2hlib.fileio.atomic_write`, so a
full disk leaves the previous checkpoint as it was and raises `DiskFullError`). Reading checks the
header, the size and the sha256 in 1 MiB chunks *before* the payload is unpickled, with
`torch.load(weights_only=True)` only; so flipped bits, a truncated copy or a foreign file are
reported, never loaded. Every failure is one `CheckpointError` line naming the file, what is wrong
and what to do.

Files of the earlier format (a bare `torch.save` zip, no checksum) are refused: their integrity
cannot be checked, and resuming from a silently damaged optimiser state is the failure this
format exists to prevent. Delete them and train again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pathlib
import re
from typing import IO, TYPE_CHECKING, Any

import torch

from a2hlib.fileio import atomic_write, remove_stale_temporaries

if TYPE_CHECKING:
    from a2hlib.models import HashingNet
    from a2hlib.training import TrainConfig, TrainState

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "restore_checkpoint",
           "model_from_checkpoint", "model_from_state", "write_verified", "read_verified"]

log = logging.getLogger(__name__)

FORMAT = 2
_MAGIC = b"a2hlib-checkpoint "
_ZIP_MAGIC = b"PK\x03\x04"  # what a bare torch.save file (format 1) starts with
_CHUNK = 2**20
_RETRAIN = "delete it and train again (the run restarts from iteration 0)"
_NOT_OURS = "pass the checkpoint.pt of a run folder, or " + _RETRAIN
# what a training checkpoint holds, and the type of each value
_FIELDS: dict[str, tuple[type, ...]] = {
    "config": (dict,), "model": (dict,), "optimizer": (dict,), "B": (torch.Tensor,), "iteration": (int,),
    "history": (list,), "selection": (list,), "best_iteration": (int, type(None)),
    "best_state": (dict, type(None)), "seconds": (float, int), "rng": (dict,),
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line: file, what is wrong, what to do."""


def _header(digest: str, size: int) -> bytes:
    return _MAGIC + b"%d\nsha256 %s\nbytes %020d\n" % (FORMAT, digest.encode(), size)


_HEADER_SIZE = len(_header("0" * 64, 0))
_HEADER_RE = re.compile(rb"a2hlib-checkpoint (\d+)\nsha256 ([0-9a-f]{64})\nbytes (\d{20})\n")


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through to `f`.

    torch's zip writer turns an error of `write` into "unexpected pos …"; the first OSError is
    kept in `error` so the caller can raise the real one (ENOSPC, EIO) instead."""

    def __init__(self, f: IO[bytes]):
        self._f = f
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            self._f.write(data)
        except OSError as err:
            self.error = self.error or err
            raise
        self.sha256.update(data)
        nbytes = memoryview(data).nbytes
        self.size += nbytes
        return nbytes

    def flush(self) -> None:
        self._f.flush()


def write_verified(path: str | os.PathLike, payload: Any) -> pathlib.Path:
    """Write `payload` (state_dicts and plain values) to `path` in the checksummed format,
    atomically; a full disk raises `a2hlib.fileio.DiskFullError` and leaves `path` as it was."""

    def write(f: IO[bytes]) -> None:
        f.write(_header("0" * 64, 0))  # placeholder: the digest is known only at the end
        sink = _HashingWriter(f)
        try:
            torch.save(payload, sink)
        except RuntimeError:
            if sink.error is not None:
                raise sink.error from None
            raise
        if sink.error is not None:
            raise sink.error
        f.seek(0)
        f.write(_header(sink.sha256.hexdigest(), sink.size))

    return atomic_write(pathlib.Path(path), write)


def _unpickle_problem(err: BaseException) -> str:
    """What torch.load refused, without torch's advice (which suggests weights_only=False)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    if found:
        return f"it holds an object of type {found.group(1)}, which safe loading refuses"
    return f"its payload could not be unpickled ({type(err).__name__})"


def _check_header(path: pathlib.Path, head: bytes, file_size: int) -> tuple[str, int]:
    """(sha256, payload size) from the header; CheckpointError for anything that is not ours."""
    if file_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes) — {_RETRAIN}")
    if head.startswith(_ZIP_MAGIC):
        raise CheckpointError(f"{path}: checkpoint from an older a2hlib format without a checksum, so its "
                              f"integrity cannot be checked — {_RETRAIN}")
    if not head.startswith(_MAGIC):
        raise CheckpointError(f"{path}: not an a2hlib checkpoint (it starts with {head[:16]!r}) — {_NOT_OURS}")
    match = _HEADER_RE.fullmatch(head)
    if match is None:
        if len(head) < _HEADER_SIZE:
            raise CheckpointError(f"{path}: truncated: {file_size} bytes, shorter than the header — {_RETRAIN}")
        raise CheckpointError(f"{path}: the checkpoint header is damaged — {_RETRAIN}")
    if int(match.group(1)) != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {int(match.group(1))}, but this a2hlib reads format "
                              f"{FORMAT} — use the a2hlib version that wrote it, or {_RETRAIN}")
    digest, size = match.group(2).decode(), int(match.group(3))
    if file_size != _HEADER_SIZE + size:
        what = "truncated" if file_size < _HEADER_SIZE + size else "longer than its header says"
        raise CheckpointError(f"{path}: {what}: {file_size - _HEADER_SIZE} payload bytes where the header "
                              f"says {size} — {_RETRAIN}")
    return digest, size


def read_verified(path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """The payload of a file written by `write_verified`, after checking its header, size and
    sha256; loaded with `torch.load(weights_only=True)`, tensors mapped to `device`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint there — train first (notebooks/02_training.ipynb)")
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            digest, size = _check_header(path, f.read(_HEADER_SIZE), file_size)
            sha, left = hashlib.sha256(), size
            while left > 0:
                block = f.read(min(_CHUNK, left))
                if not block:
                    raise CheckpointError(f"{path}: truncated while it was being read — {_RETRAIN}")
                sha.update(block)
                left -= len(block)
            if sha.hexdigest() != digest:
                raise CheckpointError(f"{path}: checksum mismatch, the file is corrupt (sha256 {sha.hexdigest()[:12]}…, "
                                      f"header says {digest[:12]}…) — {_RETRAIN}")
            f.seek(_HEADER_SIZE)
            try:
                return torch.load(f, map_location=device, weights_only=True)
            except Exception as err:
                problem = _unpickle_problem(err)
        raise CheckpointError(f"{path}: {problem} — {_RETRAIN}") from None  # no torch advice in the chain
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or type(err).__name__}) — check the "
                              "file's permissions and the disk") from None


def _check_fields(path: pathlib.Path, ckpt: Any) -> None:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a training checkpoint (it holds a {type(ckpt).__name__}, not a dict) "
                              f"— {_NOT_OURS}")
    missing = [k for k in _FIELDS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (missing {', '.join(map(repr, missing))}) "
                              f"— {_NOT_OURS}")
    for key, types in _FIELDS.items():
        if not isinstance(ckpt[key], types) or isinstance(ckpt[key], bool):
            raise CheckpointError(f"{path}: {key!r} is a {type(ckpt[key]).__name__}, expected "
                                  f"{' or '.join(t.__name__ for t in types)} — {_RETRAIN}")
    if ckpt["B"].dim() != 2:
        raise CheckpointError(f"{path}: 'B' has shape {tuple(ckpt['B'].shape)}, expected n × k — {_RETRAIN}")
    best = ckpt["best_state"]
    if best is not None and not {"model", "B"} <= set(best):
        raise CheckpointError(f"{path}: 'best_state' lacks 'model' or 'B' — {_RETRAIN}")
    if not {"torch", "sampler"} <= set(ckpt["rng"]):
        raise CheckpointError(f"{path}: 'rng' lacks 'torch' or 'sampler' — {_RETRAIN}")
    from a2hlib.training import TrainConfig  # training imports this module
    try:
        config = TrainConfig.from_dict(ckpt["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its config is not a TrainConfig ({err}) — {_RETRAIN}") from None
    if not 0 <= ckpt["iteration"] <= config.outer_iterations:
        raise CheckpointError(f"{path}: 'iteration' is {ckpt['iteration']}, outside 0..{config.outer_iterations} "
                              f"— {_RETRAIN}")


def _rng_states(generator: torch.Generator) -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "sampler": generator.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def save_checkpoint(path: str | os.PathLike, state: "TrainState", optimizer: torch.optim.Optimizer,
                    generator: torch.Generator) -> None:
    """Write the run's state (plain values and state_dicts only) with a checksum, atomically."""
    write_verified(path, {
        "config": state.config.to_dict(), "model": state.model.state_dict(),
        "optimizer": optimizer.state_dict(), "B": state.B, "iteration": state.iteration,
        "history": state.history, "selection": state.selection, "best_iteration": state.best_iteration,
        "best_state": state.best_state, "seconds": state.seconds, "rng": _rng_states(generator),
    })


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint written by `save_checkpoint` (checksum, then weights_only
    unpickling, then its keys and types); `CheckpointError` otherwise."""
    ckpt = read_verified(path, device)
    _check_fields(pathlib.Path(path), ckpt)
    return ckpt


def restore_checkpoint(path: str | os.PathLike, state: "TrainState", optimizer: torch.optim.Optimizer,
                       generator: torch.Generator) -> bool:
    """Resume from the checkpoint at `path` if there is one: model, optimiser, B, history and
    random states go into `state`, `optimizer` and `generator`, so training continues exactly as an
    uninterrupted run. Temporary files of earlier writes killed midway are removed first. Returns
    whether it resumed; a checkpoint of another config is refused."""
    path = pathlib.Path(path)
    removed = remove_stale_temporaries(path.parent, path.name)
    if removed:
        log.warning("removed %d temporary file(s) of an interrupted checkpoint write in %s", len(removed),
                    path.parent)
    if not path.exists():
        return False
    ckpt = load_checkpoint(path, device="cpu")
    saved = type(state.config).from_dict(ckpt["config"])
    saved = dataclasses.replace(saved, compile=state.config.compile)  # how a step runs, not what it computes
    if saved != state.config:
        diff = {f: (getattr(saved, f), getattr(state.config, f)) for f in saved.to_dict()
                if getattr(saved, f) != getattr(state.config, f)}
        raise ValueError(f"checkpoint {path} was written with another config {diff} (saved, asked); "
                         "use another run folder or delete the checkpoint")
    state.model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    state.B, state.iteration, state.history = ckpt["B"], ckpt["iteration"], ckpt["history"]
    state.selection, state.best_iteration = ckpt["selection"], ckpt["best_iteration"]
    state.best_state, state.seconds = ckpt["best_state"], ckpt["seconds"]
    torch.set_rng_state(ckpt["rng"]["torch"])
    generator.set_state(ckpt["rng"]["sampler"])
    if "cuda" in ckpt["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    return True


def model_from_checkpoint(path: str | os.PathLike, best: bool = False
                          ) -> tuple["HashingNet", torch.Tensor, "TrainConfig"]:
    """(model in eval mode, database codes B, config); `best` picks the validation-selected state."""
    return model_from_state(load_checkpoint(path), best)


def model_from_state(ckpt: dict[str, Any], best: bool = False) -> tuple["HashingNet", torch.Tensor, "TrainConfig"]:
    """`model_from_checkpoint` for a checkpoint dict already read with `load_checkpoint`."""
    from a2hlib.training import TrainConfig, _new_model  # training imports this module
    config = TrainConfig.from_dict(ckpt["config"])
    model = _new_model(config)
    source = ckpt["best_state"] if best and ckpt.get("best_state") else ckpt
    model.load_state_dict(source["model"])
    return model.eval(), source["B"], config
