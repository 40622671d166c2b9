"""Files that are never seen half-written: atomic writes, strict JSON and arrays.

Every file the workbook writes (checkpoints, codes, `metrics.json`, figures, dataset manifests)
goes through `atomic_write`: the bytes go to a temporary file beside the target
(`.<name>.<random>.tmp`), are flushed to disk, and only then renamed over the target. A reader
sees the old file or the new one, never a mixture; a kill leaves at most a temporary file, which
`remove_stale_temporaries` clears when a run starts again. A full disk gives one line naming the
file and what to do.

JSON is strict (`json_ready`): NaN and infinities become null, numpy and torch values become
plain numbers and lists, paths become strings; anything else is refused.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import pathlib
import tempfile
from typing import IO, Any, Callable, Iterator

import numpy as np

__all__ = ["DiskFullError", "write_temporary", "atomic_write", "remove_stale_temporaries", "json_ready",
           "write_json", "read_json", "save_array"]

TEMP_SUFFIX = ".tmp"


class DiskFullError(OSError):
    """No space left while writing a file; the message names the file and what to do."""


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch.save's zip writer reports a full disk as RuntimeError ("unexpected pos ...")
    if isinstance(err, RuntimeError) and ("unexpected pos" in str(err) or "No space left" in str(err)):
        return True
    return False


def disk_full_message(path: os.PathLike | str, err: BaseException | None = None) -> str:
    path = pathlib.Path(path)
    detail = f" ({type(err).__name__}: {str(err).splitlines()[0][:120]})" if err is not None else ""
    return (f"{path}: the disk is full, nothing was written{detail} — free space on "
            f"{path.parent} (or write elsewhere) and run again")


def write_temporary(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> pathlib.Path:
    """Call `write(f)` on a new temporary file beside `path` (same folder, so a later rename is
    atomic), flush it to disk and return its name; the caller renames it into place (or several
    of them together, as `a2hlib.manifest.write_dataset` does). On any error the temporary file
    is removed; a full disk raises `DiskFullError` naming `path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    tmp = pathlib.Path(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(err, (OSError, RuntimeError)) and not isinstance(err, DiskFullError) and _is_disk_full(err):
            raise DiskFullError(errno.ENOSPC, disk_full_message(path, err)) from err
        raise
    return tmp


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> pathlib.Path:
    """Call `write(f)` on a binary file object and move the result to `path` atomically.

    On any error the target is left as it was and the temporary file is removed; a full disk
    raises `DiskFullError` with a message naming `path`."""
    path = pathlib.Path(path)
    tmp = write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[pathlib.Path]:
    """Delete the temporary files `atomic_write` leaves in `folder` when a process is killed while
    writing (`.<name>.*.tmp`; every such file when `name` is None). Returns what was removed.
    Call it only where no other process is writing into `folder`."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*{TEMP_SUFFIX}" if name else f".*{TEMP_SUFFIX}"
    removed = []
    for p in sorted(folder.glob(pattern)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


def json_ready(x: Any, digits: int | None = None) -> Any:
    """`x` as strict JSON values: dicts (keys as strings), lists, str, bool, int, float and None.

    NaN and infinities become None (strict JSON has no NaN); numpy and torch arrays and scalars
    become lists and numbers; paths become strings; floats are rounded to `digits` if given.
    Anything else raises TypeError naming its type."""
    if x is None or isinstance(x, (str, bool)):
        return x
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if not math.isfinite(x):
            return None
        return round(x, digits) if digits is not None else x
    if isinstance(x, dict):
        return {str(k): json_ready(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v, digits) for v in x]
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if hasattr(x, "tolist"):  # numpy arrays, torch tensors
        return json_ready(x.tolist(), digits)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any, digits: int | None = None) -> pathlib.Path:
    """Write `json_ready(obj)` to `path` atomically (indented, keys sorted, trailing newline)."""
    text = json.dumps(json_ready(obj, digits), indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False)
    return atomic_write(path, lambda f: f.write((text + "\n").encode()))


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing or malformed file raises an error that names it."""
    path = pathlib.Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist; run the notebook that writes it first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and run again") from err


def save_array(path: str | os.PathLike, array) -> pathlib.Path:
    """`np.save` atomically."""
    return atomic_write(path, lambda f: np.save(f, np.asarray(array)))
