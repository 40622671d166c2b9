"""The one dataset format of the workbook: `manifest.csv` + `dataset.json` (+ sidecar `.npz` files).

Introduced in `notebooks/01_data_preparation.ipynb`; the contract is written down in docs/ARCHITECTURE.md
("The dataset format"). `data_prep` writes prepared datasets with `write_dataset`; everything else
reads them with `read_dataset`.

- `write_dataset` validates the rows, the metadata and the sidecar arrays, then writes every file to
  a temporary name inside the output folder and renames them into place only after all of them were
  written. On any error nothing that existed before is modified and the temporary files are removed.
- `read_dataset` returns a `PreparedDataset`: the manifest as a DataFrame, the metadata as a dict and
  the sidecar arrays, loaded lazily on first use.
- Every problem is a `DatasetError` whose message names the file (and the line), says what is wrong
  and what to do about it.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from a2hlib.fileio import json_ready, write_temporary

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.csv"
INFO_FILE = "dataset.json"
IMAGES_DIR = "images"
SPLITS = ("database", "query", "val")
BBOX_COLUMNS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
# Column order of manifest.csv; optional columns only when present, unknown extra columns last.
COLUMN_ORDER = ("index", "path", "label", "labels", "split", *BBOX_COLUMNS, "source_id")
# Sidecar files: name -> {array key: (dtype, number of dimensions)}. Extra keys are allowed as long
# as their first dimension is N (one entry per manifest row).
SIDECARS: dict[str, dict[str, tuple[type, int]]] = {
    "attributes": {"present": (np.uint8, 2), "certainty": (np.uint8, 2)},
    "parts": {"xyv": (np.float32, 3)},
    "masks": {"object": (np.bool_, 3), "parts": (np.bool_, 4), "shortcut": (np.bool_, 3)},
}
REQUIRED_SIDECAR_KEYS = {"attributes": ("present", "certainty"), "parts": ("xyv",), "masks": ()}
INFO_DEFAULTS: dict[str, Any] = {
    "format_version": FORMAT_VERSION, "image_root": ".", "official_counts": None,
    "count_differences": [], "warnings": [], "attribute_names": None, "part_names": None,
    "skipped": [], "skipped_count": 0, "created_by": "a2hlib.manifest.write_dataset", "seed": None,
}
REQUIRED_INFO = ("name", "num_classes", "class_names", "multi_label")
INFO_ORDER = ("name", "format_version", "image_root", "num_classes", "class_names", "multi_label",
              "counts", "official_counts", "count_differences", "warnings", "attribute_names",
              "part_names", "skipped", "skipped_count", "created_by", "seed")
_READ_TODO = "re-create the dataset with `python -m data_prep <name> --root RAW --out DIR`"
_WRITE_TODO = "fix the rows/metadata passed to write_dataset"
_BAD_COMPONENT = re.compile(r"(?:^|/)\.\.(?:/|$)")
_DRIVE = re.compile(r"^[A-Za-z]:")


class DatasetError(Exception):
    """A problem with a raw or prepared dataset. `str(err)` is one line:
    `<file>:<line>: <what is wrong> — <what to do>` (file and line only when known)."""

    def __init__(self, what: str, todo: str = "", *, file: str | os.PathLike | None = None,
                 line: int | None = None):
        self.what, self.todo, self.line = what, todo, line
        self.file = None if file is None else str(file)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        return where + self.what + (f" — {self.todo}" if self.todo else "")

    def __reduce__(self):  # picklable across DataLoader workers
        return (_rebuild_error, (self.what, self.todo, self.file, self.line))


def _rebuild_error(what, todo, file, line):
    return DatasetError(what, todo, file=file, line=line)


# ----------------------------------------------------------------------------------- validation
def _row_error(file, row: int, what: str, todo: str) -> DatasetError:
    """Row `row` of the frame is line row+2 of manifest.csv (line 1 is the header)."""
    return DatasetError(what, todo, file=file, line=int(row) + 2)


def parse_labels(text: str) -> list[int]:
    """`"0 5 17"` -> `[0, 5, 17]` (the `labels` column of multi-label manifests)."""
    return [int(t) for t in str(text).split()]


def _check_info(info: Mapping, file, todo: str) -> None:
    missing = [k for k in REQUIRED_INFO if k not in info]
    if missing:
        raise DatasetError(f"missing key(s) {missing} in dataset metadata", todo, file=file)
    c = info["num_classes"]
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
        raise DatasetError(f"num_classes must be a positive int, got {c!r}", todo, file=file)
    names = info["class_names"]
    if not isinstance(names, (list, tuple)) or len(names) != c:
        got = len(names) if isinstance(names, (list, tuple)) else repr(names)
        raise DatasetError(f"class_names must be a list of num_classes={c} names, got {got}",
                           todo, file=file)
    if not isinstance(info["multi_label"], bool):
        raise DatasetError(f"multi_label must be true or false, got {info['multi_label']!r}",
                           todo, file=file)
    if not isinstance(info.get("name"), str) or not info["name"]:
        raise DatasetError("name must be a non-empty string", todo, file=file)
    root = info.get("image_root", ".")
    if not isinstance(root, str) or not (root == "." or os.path.isabs(root)):
        raise DatasetError(f"image_root must be an absolute path or '.', got {root!r}",
                           todo, file=file)
    for key in ("attribute_names", "part_names"):
        v = info.get(key)
        if v is not None and (not isinstance(v, (list, tuple))
                              or not all(isinstance(s, str) for s in v)):
            raise DatasetError(f"{key} must be null or a list of strings", todo, file=file)
    for key in ("count_differences", "warnings"):
        v = info.get(key)
        if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
            raise DatasetError(f"{key} must be a list of strings, got {v!r}", todo, file=file)
    if info.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise DatasetError(f"format_version {info.get('format_version')!r} is not supported "
                           f"(this a2hlib reads version {FORMAT_VERSION})", todo, file=file)


def _normalise_frame(frame: pd.DataFrame, info: Mapping, file, todo: str) -> pd.DataFrame:
    """Check the rows of a manifest and return a copy with canonical column order and dtypes."""
    if not isinstance(frame, pd.DataFrame):
        raise DatasetError(f"expected a pandas DataFrame, got {type(frame).__name__}", todo, file=file)
    f = frame.reset_index(drop=True).copy()
    n = len(f)
    if n == 0:
        raise DatasetError("the manifest has no rows", todo, file=file)
    multi = bool(info["multi_label"])
    label_col, other = ("labels", "label") if multi else ("label", "labels")
    required = ("path", label_col, "split")
    missing = [c for c in required if c not in f.columns]
    if missing:
        kind = "multi-label" if multi else "single-label"
        raise DatasetError(f"missing column(s) {missing} for a {kind} dataset "
                           f"(columns: {list(f.columns)})", todo, file=file)
    if other in f.columns:
        raise DatasetError(f"column {other!r} does not belong in a dataset with "
                           f"multi_label={multi}", todo, file=file)
    present_bbox = [c for c in BBOX_COLUMNS if c in f.columns]
    if present_bbox and len(present_bbox) != 4:
        raise DatasetError(f"bounding boxes need all of {list(BBOX_COLUMNS)}, got {present_bbox}",
                           todo, file=file)
    # index: 0..N-1, the row number
    if "index" in f.columns:
        idx = pd.to_numeric(f["index"], errors="coerce").to_numpy()
        bad = np.flatnonzero(idx != np.arange(n))
        if len(bad):
            r = int(bad[0])
            raise _row_error(file, r, f"index is {f['index'].iloc[r]!r}, expected the row number {r}",
                             todo)
    f["index"] = np.arange(n, dtype=np.int64)
    # path: relative POSIX, no '..', not absolute
    path = f["path"].astype(object).where(f["path"].notna(), "").astype(str)
    for cond, what in ((path.str.contains("\\", regex=False), "contains a backslash (use '/')"),
                       (path.str.startswith("/") | path.str.match(_DRIVE), "is absolute"),
                       (path.str.contains(_BAD_COMPONENT), "contains '..'")):
        bad = np.flatnonzero(cond.to_numpy(dtype=bool))
        if len(bad):
            r = int(bad[0])
            raise _row_error(file, r, f"path {path.iloc[r]!r} {what}; paths must be relative to "
                             "image_root", todo)
    f["path"] = path
    # split
    split = f["split"].astype(object).where(f["split"].notna(), "").astype(str)
    bad = np.flatnonzero(~split.isin(SPLITS).to_numpy())
    if len(bad):
        r = int(bad[0])
        raise _row_error(file, r, f"split {split.iloc[r]!r} is not one of {list(SPLITS)}", todo)
    for s in ("database", "query"):
        if not (split == s).any():
            raise DatasetError(f"split {s!r} is empty (counts: "
                               f"{split.value_counts().to_dict()}); every dataset needs database "
                               "and query images", todo, file=file)
    f["split"] = split
    c = int(info["num_classes"])
    if multi:
        texts = f["labels"].astype(object).where(f["labels"].notna(), "").astype(str)
        for r, t in enumerate(texts):
            try:
                ids = parse_labels(t)
            except ValueError:
                raise _row_error(file, r, f"labels {t!r} are not space-separated ints", todo) from None
            if any(i < 0 or i >= c for i in ids):
                raise _row_error(file, r, f"labels {t!r} out of range 0..{c - 1}", todo)
            if ids != sorted(set(ids)):
                raise _row_error(file, r, f"labels {t!r} must be sorted and unique", todo)
        f["labels"] = [" ".join(map(str, parse_labels(t))) for t in texts]
    else:
        lab = pd.to_numeric(f["label"], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(lab) | (lab != np.round(lab)))
        if len(bad):
            r = int(bad[0])
            raise _row_error(file, r, f"label {f['label'].iloc[r]!r} is not an integer", todo)
        bad = np.flatnonzero((lab < 0) | (lab >= c))
        if len(bad):
            r = int(bad[0])
            raise _row_error(file, r, f"label {int(lab[r])} out of range 0..{c - 1} "
                             f"(num_classes={c})", todo)
        f["label"] = lab.astype(np.int64)
    if present_bbox:
        for col in BBOX_COLUMNS:
            v = pd.to_numeric(f[col], errors="coerce")
            bad = np.flatnonzero(v.isna().to_numpy())
            if len(bad):
                r = int(bad[0])
                raise _row_error(file, r, f"{col} {f[col].iloc[r]!r} is not a number", todo)
            f[col] = v.astype(np.float64)
    if "source_id" in f.columns:
        f["source_id"] = f["source_id"].astype(object).where(f["source_id"].notna(), "").astype(str)
    order = [col for col in COLUMN_ORDER if col in f.columns]
    return f[order + [col for col in f.columns if col not in order]]


def _normalise_arrays(arrays: Mapping | None, n: int, info: Mapping, out_dir: pathlib.Path,
                      todo: str) -> dict[str, dict[str, np.ndarray]]:
    result: dict[str, dict[str, np.ndarray]] = {}
    for name, group in (arrays or {}).items():
        file = out_dir / f"{name}.npz"
        if name not in SIDECARS:
            raise DatasetError(f"unknown sidecar {name!r}; known: {sorted(SIDECARS)}", todo, file=file)
        if not isinstance(group, Mapping) or not group:
            raise DatasetError("a sidecar needs a non-empty dict of arrays", todo, file=file)
        missing = [k for k in REQUIRED_SIDECAR_KEYS[name] if k not in group]
        if missing:
            raise DatasetError(f"missing array(s) {missing}", todo, file=file)
        out = {}
        for key, value in group.items():
            a = np.asarray(value)
            if a.ndim == 0 or a.shape[0] != n:
                raise DatasetError(f"array {key!r} has shape {a.shape}; its first dimension must be "
                                   f"the number of manifest rows N={n}", todo, file=file)
            if key in SIDECARS[name]:
                dtype, ndim = SIDECARS[name][key]
                if a.ndim != ndim:
                    raise DatasetError(f"array {key!r} must have {ndim} dimensions, got shape "
                                       f"{a.shape}", todo, file=file)
                if a.dtype != dtype:
                    if dtype is np.bool_ and not np.isin(a, (0, 1)).all():
                        raise DatasetError(f"array {key!r} must be boolean", todo, file=file)
                    if dtype is np.uint8 and (a.min(initial=0) < 0 or a.max(initial=0) > 255):
                        raise DatasetError(f"array {key!r} must fit uint8", todo, file=file)
                    a = a.astype(dtype)
            out[key] = a
        result[name] = out
    # consistency with the names in the metadata
    names = info.get("attribute_names")
    if "attributes" in result:
        a = result["attributes"]["present"].shape[1]
        if names is None or len(names) != a or result["attributes"]["certainty"].shape[1] != a:
            raise DatasetError(f"attributes.npz has {a} attributes but attribute_names has "
                               f"{None if names is None else len(names)} entries (and certainty must "
                               "match present)", todo, file=out_dir / "attributes.npz")
        if result["attributes"]["present"].max(initial=0) > 1:
            raise DatasetError("array 'present' must be 0/1", todo, file=out_dir / "attributes.npz")
    parts = info.get("part_names")
    if "parts" in result:
        xyv = result["parts"]["xyv"]
        if parts is None or xyv.shape[1:] != (len(parts), 3):
            raise DatasetError(f"parts.npz xyv has shape {xyv.shape}; expected (N, P, 3) with "
                               f"P = len(part_names) = {None if parts is None else len(parts)}",
                               todo, file=out_dir / "parts.npz")
    return result


def validate(frame: pd.DataFrame, info: Mapping, arrays: Mapping | None = None, *,
             out_dir: str | os.PathLike = ".", todo: str = _WRITE_TODO):
    """Check a dataset held in memory; return (frame, info, arrays) in canonical form.

    Raises `DatasetError` naming `out_dir/manifest.csv` and the line the bad row would have."""
    out_dir = pathlib.Path(out_dir)
    if not isinstance(info, Mapping):
        raise DatasetError(f"info must be a dict, got {type(info).__name__}", todo,
                           file=out_dir / INFO_FILE)
    full = {**copy.deepcopy(INFO_DEFAULTS), **info}
    _check_info(full, out_dir / INFO_FILE, todo)
    f = _normalise_frame(frame, full, out_dir / MANIFEST_FILE, todo)
    arr = _normalise_arrays(arrays, len(f), full, out_dir, todo)
    full["counts"] = {s: int((f["split"] == s).sum()) for s in SPLITS}
    full["num_classes"] = int(full["num_classes"])
    full["class_names"] = [str(s) for s in full["class_names"]]
    full["skipped_count"] = int(max(full.get("skipped_count") or 0, len(full.get("skipped") or [])))
    ordered = {k: full[k] for k in INFO_ORDER}
    ordered.update((k, v) for k, v in full.items() if k not in ordered)
    return f, ordered, arr


# --------------------------------------------------------------------------------------- writing
@contextlib.contextmanager
def staging_dir(out_dir: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A temporary folder inside `out_dir` for files that `write_dataset(..., image_dir=...)` will
    rename to `out_dir/images`. Whatever is still there when the block ends (an error) is removed.
    Creates `out_dir` if needed (and removes it again on error if it created it and it is empty)."""
    out_dir = pathlib.Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{IMAGES_DIR}.", suffix=".tmp", dir=out_dir))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only succeeds when empty, i.e. nothing was written


def write_dataset(out_dir: str | os.PathLike, frame: pd.DataFrame, info: dict,
                  arrays: dict[str, dict[str, np.ndarray]] | None = None, *,
                  image_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Validate and write a prepared dataset to `out_dir`; return the resolved folder.

    `frame` holds the manifest rows (`index` is added when absent), `info` the dataset.json keys
    (defaults for the optional ones; `counts` is computed), `arrays` the sidecars, e.g.
    `{"attributes": {"present": ..., "certainty": ...}}`. `image_dir`: a folder inside `out_dir`
    (see `staging_dir`) renamed to `out_dir/images` together with the other files (used when the
    images themselves are written by the preparer; set image_root to '.').

    Atomic in the sense of the contract: all files are written under temporary names first and
    renamed into place only after every one was written; on error nothing existing is touched.
    Sidecars of an earlier dataset in `out_dir` that the new one lacks are removed on success.
    """
    out_dir = pathlib.Path(out_dir)
    frame, info, arrays = validate(frame, info, arrays, out_dir=out_dir)
    if image_dir is not None:
        image_dir = pathlib.Path(image_dir)
        if image_dir.resolve().parent != out_dir.resolve() or not image_dir.is_dir():
            raise DatasetError(f"image_dir {image_dir} must be an existing folder directly inside "
                               f"{out_dir}", "create it with a2hlib.manifest.staging_dir(out_dir)")
        if info["image_root"] != ".":
            raise DatasetError("image_dir given but image_root is not '.'", _WRITE_TODO,
                               file=out_dir / INFO_FILE)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    temps: dict[str, pathlib.Path] = {}
    try:
        for name, group in arrays.items():
            temps[f"{name}.npz"] = write_temporary(out_dir / f"{name}.npz",
                                                   lambda fh, g=group: np.savez_compressed(fh, **g))
        csv = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
        temps[MANIFEST_FILE] = write_temporary(out_dir / MANIFEST_FILE, lambda fh: fh.write(csv))
        text = json.dumps(json_ready(info), indent=2, ensure_ascii=False) + "\n"
        temps[INFO_FILE] = write_temporary(out_dir / INFO_FILE, lambda fh: fh.write(text.encode("utf-8")))
    except BaseException:
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    # commit: images first, then sidecars, manifest and dataset.json last
    old_images = None
    if image_dir is not None:
        target = out_dir / IMAGES_DIR
        if target.exists():
            old_images = pathlib.Path(tempfile.mkdtemp(prefix=".images.old.", dir=out_dir))
            os.replace(target, old_images / IMAGES_DIR)
        os.chmod(image_dir, 0o755)
        os.replace(image_dir, target)
    for name, tmp in temps.items():
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_dir / name)
    for name in SIDECARS:
        if name not in arrays:
            with contextlib.suppress(FileNotFoundError):
                (out_dir / f"{name}.npz").unlink()
    if old_images is not None:
        shutil.rmtree(old_images, ignore_errors=True)
    log.info("wrote %s (%s)", out_dir, info["counts"])
    return out_dir.resolve()


# --------------------------------------------------------------------------------------- reading
@dataclasses.dataclass(eq=False)
class PreparedDataset:
    """A prepared dataset folder: `frame` (manifest.csv), `info` (dataset.json), `root` (the folder,
    resolved). Sidecar arrays load on first use: `attributes()`, `parts()`, `masks()` (None when the
    dataset has no such file)."""
    frame: pd.DataFrame
    info: dict
    root: pathlib.Path
    _arrays: dict = dataclasses.field(default_factory=dict, repr=False)

    # metadata shortcuts
    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def num_classes(self) -> int:
        return int(self.info["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.info["class_names"])

    @property
    def multi_label(self) -> bool:
        return bool(self.info["multi_label"])

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.info["counts"])

    @property
    def image_root(self) -> pathlib.Path:
        r = self.info["image_root"]
        return self.root if r == "." else pathlib.Path(r)

    def image_path(self, row: int) -> pathlib.Path:
        """Absolute path of the image in manifest row `row`."""
        return self.image_root / self.frame["path"].iat[int(row)]

    def indices(self, split: str | Iterable[str]) -> np.ndarray:
        return split_indices(self.frame, split)

    def targets(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Class ids (int64, (n,)) or, for multi-label data, multi-hot rows (float32, (n, C))."""
        return frame_targets(self.frame if rows is None else self.frame.iloc[np.asarray(rows)],
                             self.num_classes, self.multi_label)

    # sidecars
    def has(self, name: str) -> bool:
        return (self.root / f"{name}.npz").is_file()

    def arrays(self, name: str) -> dict[str, np.ndarray] | None:
        if name not in SIDECARS:
            raise KeyError(f"unknown sidecar {name!r}; known: {sorted(SIDECARS)}")
        if name not in self._arrays:
            self._arrays[name] = _load_sidecar(self, name)
        return self._arrays[name]

    def attributes(self) -> dict[str, np.ndarray] | None:
        """`{"present": uint8 (N, A), "certainty": uint8 (N, A)}` or None."""
        return self.arrays("attributes")

    def parts(self) -> dict[str, np.ndarray] | None:
        """`{"xyv": float32 (N, P, 3)}` or None."""
        return self.arrays("parts")

    def masks(self) -> dict[str, np.ndarray] | None:
        """`{"object": bool (N, H, W), "parts": bool (N, P, H, W), "shortcut": ...}` or None."""
        return self.arrays("masks")


def _load_sidecar(ds: PreparedDataset, name: str) -> dict[str, np.ndarray] | None:
    file = ds.root / f"{name}.npz"
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            group = {k: z[k] for k in z.files}
    except Exception as err:  # zipfile.BadZipFile, ValueError, OSError, EOFError ...
        raise DatasetError(f"cannot read ({type(err).__name__}: {err})", _READ_TODO, file=file) from None
    checked = _normalise_arrays({name: group}, len(ds.frame), ds.info, ds.root, _READ_TODO)
    return checked[name]


def read_dataset(path: str | os.PathLike) -> PreparedDataset:
    """Read and validate a prepared dataset folder (manifest.csv + dataset.json)."""
    root = pathlib.Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError("prepared dataset folder not found", _READ_TODO, file=root)
    root = root.resolve()
    info_file, manifest_file = root / INFO_FILE, root / MANIFEST_FILE
    for f in (info_file, manifest_file):
        if not f.is_file():
            raise DatasetError("missing file of a prepared dataset", _READ_TODO, file=f)
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"not valid JSON ({err})", _READ_TODO, file=info_file,
                           line=getattr(err, "lineno", None)) from None
    if not isinstance(info, dict):
        raise DatasetError("expected a JSON object", _READ_TODO, file=info_file)
    try:
        frame = pd.read_csv(manifest_file, keep_default_na=False,
                            dtype={"path": str, "labels": str, "split": str, "source_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DatasetError(f"not a valid CSV file ({err})", _READ_TODO, file=manifest_file) from None
    frame, full, _ = validate(frame, info, None, out_dir=root, todo=_READ_TODO)
    counts = info.get("counts")
    if counts is not None and {k: int(v) for k, v in counts.items()} != full["counts"]:
        raise DatasetError(f"counts {counts} do not match manifest.csv ({full['counts']})",
                           _READ_TODO, file=info_file)
    return PreparedDataset(frame=frame, info=full, root=root)


# --------------------------------------------------------------------------------------- helpers
def frame_targets(frame: pd.DataFrame, num_classes: int, multi_label: bool) -> np.ndarray:
    """Targets of the rows of `frame`: int64 (n,) or multi-hot float32 (n, C)."""
    if not multi_label:
        return frame["label"].to_numpy(dtype=np.int64)
    out = np.zeros((len(frame), num_classes), dtype=np.float32)
    for r, text in enumerate(frame["labels"]):
        out[r, parse_labels(text)] = 1.0
    return out


def split_indices(frame: pd.DataFrame, split: str | Iterable[str]) -> np.ndarray:
    """Row positions (int64, ascending) of the rows in `split` (a name or several names)."""
    names = (split,) if isinstance(split, str) else tuple(split)
    unknown = [s for s in names if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; use {list(SPLITS)}")
    return np.flatnonzero(frame["split"].isin(names).to_numpy()).astype(np.int64)


def carve_val(frame: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Return a copy of `frame` where about `fraction` of each class's database rows become `val`.

    Stratified per class (multi-label rows: by their first label), seeded with `seed`
    (numpy default_rng), at least one database row kept per class. Query rows are never touched."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction}")
    out = frame.copy()
    if fraction == 0.0:
        return out
    db = np.flatnonzero(out["split"].to_numpy() == "database")
    if "label" in out.columns:
        key = out["label"].to_numpy()[db].astype(np.int64)
    else:
        key = np.array([(parse_labels(t) or [-1])[0] for t in out["labels"].to_numpy()[db]])
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(key):
        rows = db[key == c]
        k = min(int(round(fraction * len(rows))), len(rows) - 1)
        if k > 0:
            chosen.append(np.sort(rows[rng.permutation(len(rows))[:k]]))
    if chosen:
        col = out.columns.get_loc("split")
        out.iloc[np.concatenate(chosen), col] = "val"
    return out
