"""What every preparer shares: locating raw files, reading list files with line numbers, path
safety, image verification, count checks, bad-entry handling and the final write.

A preparer module parses its raw layout into `Record`s (one per image, remembering the list file
and line it came from), then calls `verify_images` (images that exist, open, stay inside the root
and are listed once) and `finish`. Bad entries go through `Problems.bad`: an error at the first
one, or with --skip-bad a note in dataset.json `skipped`. Pickled raw files are read with
`load_pickle`, which runs no code from them.
"""
from __future__ import annotations

import argparse
import codecs
import concurrent.futures
import dataclasses
import errno
import importlib
import io
import os
import pathlib
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from a2hlib.fileio import DiskFullError, disk_full_message
from a2hlib.manifest import DatasetError, carve_val, write_dataset

FIX_LINE = "fix or delete the line, or re-run with --skip-bad to leave it out"
FIX_IMAGE = ("restore the image (re-extract the archive), or re-run with --skip-bad to leave "
             "it out")
FIX_LINK = ("put the file itself inside the dataset folder instead of a link to it, or re-run with "
            "--skip-bad to leave it out")
MAX_SKIPPED_LISTED = 1000  # dataset.json lists at most this many skipped entries (all are counted)
MAX_CLASSES_NAMED = 10     # a warning about classes names at most this many of them
VERIFY_THREADS = 8
# Which copy of an image listed in two splits is kept (--skip-bad): the training side first.
SPLIT_PRIORITY = {"database": 0, "val": 1, "query": 2}


@dataclasses.dataclass
class Record:
    """One image of a raw dataset and where it was listed."""
    path: str                      # relative to the image root, POSIX
    split: str                     # database / query / val
    label: int | None = None       # single-label datasets
    labels: tuple[int, ...] | None = None  # multi-label datasets
    source_id: str = ""
    file: str = ""                 # list file that named the image
    line: int | None = None        # its line (or entry number) there
    bbox: tuple[float, float, float, float] | None = None


class Problems:
    """Bad entries of the raw data: raise at the first (default) or collect them (--skip-bad)."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.skipped: list[dict] = []

    def bad(self, file, line: int | None, what: str, todo: str = FIX_LINE) -> None:
        if not self.skip_bad:
            raise DatasetError(what, todo, file=file, line=line)
        self.skipped.append({"file": str(file), "line": line, "reason": what})


# ------------------------------------------------------------------------------------ CLI pieces
def add_root_argument(parser: argparse.ArgumentParser, what: str, default: str | None = None) -> None:
    """`--root RAW`, required unless a default exists."""
    parser.add_argument("--root", type=pathlib.Path, default=default, required=default is None,
                        metavar="RAW", help=what + (f" (default: {default})" if default else ""))


def say(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- raw-file access
def find_base(root: pathlib.Path, marker: str, subdirs: Sequence[str], download: str) -> pathlib.Path:
    """The folder holding `marker`: `root` itself or `root/<subdir>` (users may point --root at the
    extracted folder or at the folder they extracted it into)."""
    root = pathlib.Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError("raw dataset folder not found",
                           f"point --root at the extracted download ({download})", file=root)
    for base in (root, *(root / s for s in subdirs)):
        if (base / marker).exists():
            return base.resolve()
    raise DatasetError("missing file of the raw dataset",
                       f"point --root at the folder that holds {marker} ({download})",
                       file=root / marker)


def require(path: pathlib.Path, download: str) -> pathlib.Path:
    if not path.exists():
        raise DatasetError("missing file of the raw dataset",
                           f"restore it from the original download ({download})", file=path)
    return path


def iter_lines(path: pathlib.Path, *, empty_ok: bool = True) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) of every non-blank line. `empty_ok=False`: a file
    without any non-blank line is an error naming it (rather than a puzzle further on)."""
    lineno, found = 0, False
    try:
        with open(path, encoding="utf-8-sig", newline=None) as fh:
            for lineno, text in enumerate(fh, 1):
                text = text.rstrip("\r\n")
                if text.strip():
                    found = True
                    yield lineno, text
    except UnicodeDecodeError as err:
        raise DatasetError(f"not UTF-8 text ({err.reason})",
                           "restore the file from the original download", file=path,
                           line=lineno + 1) from None
    if not found and not empty_ok:
        raise DatasetError("the file is empty (no line with an entry)",
                           "restore it from the original download", file=path)


def iter_fields(path: pathlib.Path, n: int, problems: Problems, *, rest: bool = False,
                exact: bool = True, empty_ok: bool = True) -> Iterator[tuple[int, list[str]]]:
    """Lines split on whitespace into `n` fields. `rest=True`: the last field keeps its spaces
    ("id name with spaces"). `exact=False`: extra fields are ignored (CUB's malformed attribute
    lines). Lines with too few (or, with exact, too many) fields are bad entries. `empty_ok` as
    in `iter_lines`."""
    for lineno, text in iter_lines(path, empty_ok=empty_ok):
        fields = text.split(None, n - 1) if rest else text.split()
        if len(fields) < n or (exact and not rest and len(fields) > n):
            problems.bad(path, lineno, f"expected {n} fields, got {len(fields)}: {text.strip()!r}")
            continue
        yield lineno, (fields[:n] if not rest else [f.strip() for f in fields])


def to_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def to_float(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if np.isfinite(v) else None


def read_id_table(path: pathlib.Path, problems: Problems, parse: Callable[[list[str]], object],
                  n: int, *, rest: bool = False, what: str = "value") -> dict[str, tuple[int, object]]:
    """`<id> <fields...>` lines -> {id: (line, parse(fields))}. `parse` returns None for a bad
    value; duplicate ids are bad entries too; an empty file is an error."""
    out: dict[str, tuple[int, object]] = {}
    for lineno, fields in iter_fields(path, n, problems, rest=rest, empty_ok=False):
        value = parse(fields[1:])
        if value is None:
            problems.bad(path, lineno, f"bad {what} {' '.join(fields[1:])!r} for id {fields[0]}")
        elif fields[0] in out:
            problems.bad(path, lineno, f"duplicate id {fields[0]} (first on line {out[fields[0]][0]})")
        else:
            out[fields[0]] = (lineno, value)
    return out


def records_from_lists(sources: dict[str, pathlib.Path], download: str, problems: Problems,
                       entries: Callable[[pathlib.Path], Iterator[tuple[int, str, int | None, str, str | None]]]
                       ) -> list[Record]:
    """Records of split list files: `sources` maps a split to its list file (must exist),
    `entries(path)` yields (line, relative image path, label, source id, reason) per entry; an
    entry with a reason, or whose path is absolute or leaves the root, is a bad entry of that line."""
    records = []
    for split, path in sources.items():
        for line, text, label, source_id, reason in entries(require(path, download)):
            rel, path_reason = clean_relpath(text)
            reason = path_reason or reason
            if reason is not None:
                problems.bad(path, line, reason)
                continue
            records.append(Record(path=rel, split=split, label=label, source_id=source_id, file=str(path), line=line))
    return records


def clean_relpath(text: str) -> tuple[str, str | None]:
    """(path in POSIX form, None) or (text, reason) when it is absolute or leaves the root."""
    p = text.strip()
    if "\\" in p:
        p = p.replace("\\", "/")
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        return text, f"path {text!r} is absolute; list files must hold paths relative to the root"
    parts = [s for s in p.split("/") if s not in ("", ".")]
    if ".." in parts:
        return text, f"path {text!r} escapes the dataset root ('..')"
    if not parts:
        return text, f"empty path {text!r}"
    return "/".join(parts), None


# ------------------------------------------------------------------------------ image checking
def verify_file(path: pathlib.Path, mode: str = "fast") -> str | None:
    """None if the image is fine, else the reason. Modes: 'off' (exists only), 'fast' (PIL header +
    verify(): CRCs of PNG chunks; for JPEG also the end-of-image marker), 'full' (decode)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "not found"
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if mode == "off":
        return None
    try:
        with Image.open(path) as im:
            fmt = im.format
            if mode == "full":
                im.load()
            else:
                im.verify()
        if mode == "fast" and fmt == "JPEG":
            with open(path, "rb") as fh:
                fh.seek(max(2, size - 1024))
                if b"\xff\xd9" not in fh.read():
                    return "is truncated (no JPEG end-of-image marker)"
    except Exception as err:  # UnidentifiedImageError, OSError, SyntaxError, struct.error, ...
        return f"is corrupt or truncated ({type(err).__name__}: {err})"
    return None


def _inspect(root: str, path: pathlib.Path, mode: str,
             folders: dict[pathlib.Path, str]) -> tuple[str, bool, str | None]:
    """(resolved path, whether it leaves `root`, reason the image is bad or None). An image whose
    resolved path lies outside `root` (a symbolic link leading out) is not opened. `folders`
    caches resolved folders (many images share one; only the file itself is looked at again)."""
    folder = folders.get(path.parent)
    if folder is None:
        folder = folders[path.parent] = os.path.realpath(path.parent)
    real = os.path.join(folder, path.name)
    if os.path.islink(real):
        real = os.path.realpath(real)
    if os.path.commonpath((root, real)) != root:
        return real, True, (f"resolves to {real!r}, outside the dataset root {root!r} (a symbolic "
                            "link leads out of it)")
    return real, False, verify_file(path, mode)


def _duplicate(rec: Record, kept: Record) -> tuple[str, str]:
    """(what, todo) for `rec`, an entry whose image `kept` (listed elsewhere) already holds."""
    where = f"{kept.file}:{kept.line}"
    same = "" if rec.path == kept.path else f" (the same file as {kept.path!r})"
    if rec.split == kept.split:
        return (f"duplicate entry: image {rec.path!r}{same} is already listed at {where}",
                "delete one of the two lines, or re-run with --skip-bad to keep only the first")
    return (f"image {rec.path!r}{same} is in the {rec.split} split and also in the {kept.split} "
            f"split at {where}; an image on both sides leaks between training and evaluation",
            "delete one of the two lines, or re-run with --skip-bad to keep only the "
            f"{kept.split} entry")


def verify_images(args, records: list[Record], image_root: pathlib.Path,
                  problems: Problems) -> list[Record]:
    """Check the listed images; return the records that pass, in their order (bad ones raise or,
    with --skip-bad, are noted in `problems`). An entry is bad when its image

    - resolves (through symbolic links) to a file outside `image_root`;
    - is the image of another entry (same resolved file): the same split twice keeps the first
      entry; two splits keep the entry of the training side (database, then val, then query), so
      with --skip-bad a train/test leak is removed from the evaluation side;
    - is missing or, unless --no-verify, does not open (`verify_file`)."""
    mode = getattr(args, "verify", "fast")
    if mode != "off" and len(records) > 1000:
        say(args, f"verifying {len(records)} images ({mode}; --no-verify skips this) ...")
    root, folders = os.path.realpath(image_root), {}
    paths = [image_root / r.path for r in records]
    with concurrent.futures.ThreadPoolExecutor(VERIFY_THREADS) as pool:
        found = list(pool.map(lambda p: _inspect(root, p, mode, folders), paths, chunksize=64))
    bad: dict[int, tuple[str, str]] = {}
    holders: dict[str, list[int]] = {}
    for k, (real, escapes, reason) in enumerate(found):
        if reason is not None:
            bad[k] = (f"image {str(paths[k])!r} {reason}", FIX_LINK if escapes else FIX_IMAGE)
        if not escapes:
            holders.setdefault(real, []).append(k)
    for rows in holders.values():
        if len(rows) > 1:
            keep = min(rows, key=lambda k: (SPLIT_PRIORITY[records[k].split], k))
            bad.update((k, _duplicate(records[k], records[keep])) for k in rows if k != keep)
    kept = []
    for k, rec in enumerate(records):
        if k in bad:
            problems.bad(rec.file, rec.line, *bad[k])
        else:
            kept.append(rec)
    return kept


def apply_limit(records: list[Record], limit: int | None) -> list[Record]:
    """Keep the first `limit` records of each split (quick runs)."""
    if not limit:
        return records
    seen: dict[str, int] = {}
    out = []
    for r in records:
        if seen.get(r.split, 0) < limit:
            out.append(r)
            seen[r.split] = seen.get(r.split, 0) + 1
    return out


def count_differences(counts: Mapping[str, int], official: Mapping[str, int | None] | None) -> list[str]:
    diffs = []
    for split, want in (official or {}).items():
        if want is not None and counts.get(split, 0) != want:
            diffs.append(f"{split}: {counts.get(split, 0):,} images, official {want:,}")
    return diffs


def records_to_frame(records: Sequence[Record], multi_label: bool) -> pd.DataFrame:
    data: dict[str, list] = {"path": [r.path for r in records]}
    if multi_label:
        data["labels"] = [" ".join(map(str, sorted(set(r.labels or ())))) for r in records]
    else:
        data["label"] = [r.label for r in records]
    data["split"] = [r.split for r in records]
    if records and all(r.bbox is not None for r in records):
        for k, col in enumerate(("bbox_x", "bbox_y", "bbox_w", "bbox_h")):
            data[col] = [r.bbox[k] for r in records]
    data["source_id"] = [r.source_id for r in records]
    return pd.DataFrame(data)


def class_warnings(frame: pd.DataFrame, class_names: Sequence[str], multi_label: bool) -> list[str]:
    """Warnings about the classes that have no database image: their queries have nothing
    relevant to retrieve and training never sees them (recorded in dataset.json 'warnings')."""
    db = frame[frame["split"] == "database"]
    if multi_label:
        present = {int(t) for text in db["labels"] for t in str(text).split()}
    else:
        present = {int(c) for c in db["label"]}
    missing = [c for c in range(len(class_names)) if c not in present]
    if not missing:
        return []
    named = ", ".join(f"{c} ({class_names[c]})" for c in missing[:MAX_CLASSES_NAMED])
    if len(missing) > MAX_CLASSES_NAMED:
        named += f" and {len(missing) - MAX_CLASSES_NAMED} more"
    verb = "has" if len(missing) == 1 else "have"
    return [f"{len(missing)} of {len(class_names)} classes {verb} no database image: {named}; "
            "their queries have nothing relevant to retrieve and training never sees them"]


def check_nonempty(records: Sequence[Record], problems: Problems,
                   split_sources: Mapping[str, object]) -> None:
    """Database and query must both keep at least one image."""
    for split in ("database", "query"):
        if not any(r.split == split for r in records):
            raise DatasetError(f"no {split} images ({len(problems.skipped)} entries skipped)",
                               "check that this list is complete and matches the images",
                               file=split_sources.get(split))


def finish(args, *, name: str, records: list[Record], class_names: Sequence[str],
           problems: Problems, image_root: str, split_sources: Mapping[str, object],
           official_counts: Mapping[str, int | None] | None = None,
           official_classes: int | None = None, multi_label: bool = False,
           arrays: dict | None = None, attribute_names: Sequence[str] | None = None,
           part_names: Sequence[str] | None = None, image_dir: pathlib.Path | None = None,
           extra_info: Mapping | None = None, extra_differences: Iterable[str] = ()) -> pathlib.Path:
    """Check splits and counts, carve val (--val-fraction), write the dataset, print a summary."""
    check_nonempty(records, problems, split_sources)
    frame = records_to_frame(records, multi_label)
    counts = {s: int((frame["split"] == s).sum()) for s in ("database", "query", "val")}
    diffs = [*count_differences(counts, official_counts), *extra_differences]
    if official_classes is not None and len(class_names) != official_classes:
        diffs.append(f"classes: {len(class_names)}, official {official_classes}")
    if getattr(args, "limit", None):
        diffs.append(f"--limit {args.limit} kept at most {args.limit} images per split")
    if diffs:
        warn(f"{name}: differs from the official dataset (recorded in dataset.json "
             f"'count_differences'): {'; '.join(diffs)}")
    fraction = float(getattr(args, "val_fraction", 0.0) or 0.0)
    if fraction:
        frame = carve_val(frame, fraction, args.seed)
    warnings = class_warnings(frame, class_names, multi_label)
    for w in warnings:
        warn(f"{name}: {w} (recorded in dataset.json 'warnings')")
    info = {
        "name": name, "image_root": image_root, "num_classes": len(class_names),
        "class_names": list(class_names), "multi_label": multi_label,
        "official_counts": dict(official_counts) if official_counts else None,
        "count_differences": diffs, "warnings": warnings,
        "attribute_names": attribute_names and list(attribute_names),
        "part_names": part_names and list(part_names),
        "skipped": problems.skipped[:MAX_SKIPPED_LISTED], "skipped_count": len(problems.skipped),
        "created_by": f"python -m data_prep {name}", "seed": getattr(args, "seed", None),
        "val_fraction": fraction, **(extra_info or {}),
    }
    out = write_dataset(args.out, frame, info, arrays, image_dir=image_dir)
    final = {s: int((frame["split"] == s).sum()) for s in ("database", "query", "val")}
    say(args, f"wrote {out}: database {final['database']:,}, query {final['query']:,}, "
              f"val {final['val']:,}; {len(class_names)} classes")
    if problems.skipped:
        say(args, f"skipped {len(problems.skipped)} bad entries (listed in {out / 'dataset.json'} "
                  "'skipped'):")
        for s in problems.skipped[:10]:
            say(args, f"  {s['file']}:{s['line']}: {s['reason']}")
        if len(problems.skipped) > 10:
            say(args, f"  ... and {len(problems.skipped) - 10} more")
    return out


def finish_with_images(args, images: np.ndarray, names: Sequence[str], **kwargs) -> pathlib.Path:
    """`finish` for preparers that extract the images: write `images[k]` as PNG `images/<names[k]>`
    in a staging folder inside --out, renamed into place together with the manifest."""
    from a2hlib.manifest import staging_dir
    check_nonempty(kwargs["records"], kwargs["problems"], kwargs["split_sources"])
    with staging_dir(args.out) as stage:
        write_pngs(images, names, stage)
        return finish(args, image_root=".", image_dir=stage, **kwargs)


def as_disk_full(err: OSError, path: str | os.PathLike) -> OSError:
    """`err` as an `a2hlib.fileio.DiskFullError` naming `path` if it says the disk (or quota) is
    full, else `err` itself."""
    if isinstance(err, DiskFullError) or err.errno not in (errno.ENOSPC, errno.EDQUOT):
        return err
    return DiskFullError(err.errno, disk_full_message(path, err))


def save_png(array: np.ndarray, path: pathlib.Path) -> None:
    """Write one PNG; a full disk raises `DiskFullError` naming `path`."""
    try:
        Image.fromarray(array).save(path, format="PNG", compress_level=1)
    except OSError as err:
        full = as_disk_full(err, path)
        if full is err:
            raise
        raise full from err


def write_pngs(images: np.ndarray, names: Sequence[str], folder: pathlib.Path) -> None:
    """Write uint8 images (N, H, W[, 3]) as PNG files `folder/<name>` (sub-folders created)."""
    for sub in {os.path.dirname(n) for n in names}:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: save_png(images[k], folder / names[k]), range(len(names)),
                      chunksize=256))


# ------------------------------------------------------------------------ pickled raw files
def numpy_array_globals() -> dict[tuple[str, str], object]:
    """What a pickle of plain containers and numpy arrays may refer to: numpy's array and dtype
    reconstruction (under numpy 1's and numpy 2's module names) and `_codecs.encode` (bytes
    written by Python 3 at protocol 2). None of them runs code chosen by the file."""
    try:  # numpy >= 2 (numpy.core is a deprecated alias there)
        multiarray = importlib.import_module("numpy._core.multiarray")
        numeric = importlib.import_module("numpy._core.numeric")
    except ImportError:  # numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
        numeric = importlib.import_module("numpy.core.numeric")
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray,
                                              ("numpy", "dtype"): np.dtype,
                                              ("_codecs", "encode"): codecs.encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _Refused(pickle.UnpicklingError):
    """A pickle referred to a global that `load_pickle` does not allow."""


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in `allowed` (see `load_pickle`)."""

    def __init__(self, data: bytes, allowed: Mapping[tuple[str, str], object]):
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def load_pickle(data: bytes, file: str | os.PathLike, todo: str,
                allowed: Mapping[tuple[str, str], object] | None = None) -> object:
    """Unpickle `data` (the bytes of `file`) without running code from it: only the globals in
    `allowed` (default `numpy_array_globals()`) may be used, so a crafted file (one that asks
    for `os.system`, say) raises `DatasetError` naming `file` before anything of it runs.
    Bytes keys and values stay bytes (`encoding="bytes"`, as Python 2 pickles need)."""
    try:
        return _RestrictedUnpickler(data, numpy_array_globals() if allowed is None
                                    else allowed).load()
    except _Refused as err:
        raise DatasetError(f"cannot unpickle: it refers to {err}, which a data file never needs "
                           "(a crafted or foreign file; nothing of it was run)", todo,
                           file=file) from None
    except Exception as err:  # truncated, not a pickle, bad arguments to an allowed global
        raise DatasetError(f"cannot unpickle ({type(err).__name__}: {err})", todo,
                           file=file) from None


# ------------------------------------------------- the id-table layout of CUB-200-2011 and NABirds
def read_id_layout(base: pathlib.Path, problems: Problems, download: str, *,
                   classes_from: str) -> tuple[list[Record], list[str]]:
    """Read `images.txt`, `image_class_labels.txt`, `train_test_split.txt` (1 = train -> database),
    `classes.txt` and `bounding_boxes.txt` of a Caltech-style layout (CUB-200-2011, NABirds).

    Labels are the rank of the class id in sorted order among the classes listed in classes.txt
    (`classes_from='listed'`, CUB) or among those that occur in image_class_labels.txt
    (`classes_from='used'`, NABirds, whose classes.txt also lists the hierarchy's inner nodes).
    Returns the records (in images.txt order, paths relative to `base`) and the class names."""
    f_images, f_labels, f_split, f_classes, f_boxes = (
        require(base / n, download) for n in ("images.txt", "image_class_labels.txt",
                                              "train_test_split.txt", "classes.txt",
                                              "bounding_boxes.txt"))
    classes = read_id_table(f_classes, problems, lambda v: v[0], 2, rest=True, what="class name")
    class_ids = {to_int(k): name for k, (_, name) in classes.items() if to_int(k) is not None}
    for k, (line, _) in classes.items():
        if to_int(k) is None:
            problems.bad(f_classes, line, f"class id {k!r} is not an integer")
    labels = read_id_table(f_labels, problems, lambda v: to_int(v[0]), 2, what="class id")
    split = read_id_table(f_split, problems, lambda v: {"1": "database", "0": "query"}.get(v[0]), 2,
                          what="is_training_image flag (expected 1 or 0)")
    boxes = read_id_table(f_boxes, problems,
                          lambda v: None if None in (b := tuple(map(to_float, v))) or b[2] <= 0
                          or b[3] <= 0 else b, 5, what="bounding box (x y w h, w and h > 0)")
    if classes_from == "used":
        chosen = sorted({c for _, c in labels.values() if c in class_ids})
    else:
        chosen = sorted(class_ids)
    rank = {c: k for k, c in enumerate(chosen)}
    for image_id, (line, c) in list(labels.items()):
        if c not in rank:
            problems.bad(f_labels, line, f"class id {c} of image {image_id} is not in {f_classes}")
            del labels[image_id]
    records, seen = [], {}
    for line, (image_id, rel) in iter_fields(f_images, 2, problems, rest=True, empty_ok=False):
        path, reason = clean_relpath(rel)
        if image_id in seen:
            reason = f"duplicate image id {image_id} (first on line {seen[image_id]})"
        seen.setdefault(image_id, line)
        missing = [str(f.name) for f, table in ((f_labels, labels), (f_split, split),
                                                (f_boxes, boxes)) if image_id not in table]
        if reason is None and missing:
            reason = f"image id {image_id} has no valid line in {', '.join(missing)}"
        if reason is not None:
            problems.bad(f_images, line, reason)
            continue
        records.append(Record(path="images/" + path, split=split[image_id][1],
                              label=rank[labels[image_id][1]], source_id=image_id,
                              file=str(f_images), line=line, bbox=boxes[image_id][1]))
    return records, [class_ids[c] for c in chosen]
