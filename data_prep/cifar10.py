"""CIFAR-10 (hashing-lineage protocol) -> manifest + extracted PNGs (docs/METHOD.md §7)."""
from __future__ import annotations

import hashlib
import pathlib

import numpy as np

from data_prep import common

DOWNLOAD = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = DOWNLOAD.rsplit("/", 1)[-1]
BATCHES = {"data_batch_1": "c99cafc152244af753f735de768cd75f",
           "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
           "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
           "data_batch_4": "634d18415352ddfa80567beed471001a",
           "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
           "test_batch": "40351d587109b95175f43aff81a1287e"}
META_MD5 = "5ff9c542aee3614f3951f8cda6e48888"
OFFICIAL = {"database": 59000, "query": 1000}

DESCRIPTION = f"""\
CIFAR-10, hashing-lineage protocol: 10 classes; 59,000 database / 1,000 query (100 per class).

Download: {DOWNLOAD}
  cifar-10-python.tar.gz  md5 c58f30108f718f92721af3b95e74349a  (163 MB)
--root: cifar-10-batches-py/ or the folder the archive was extracted into.

Files read (cifar-10-batches-py/, Python pickles):
  data_batch_1 .. data_batch_5, test_batch   dicts with b'data' (N×3072 uint8, RGB planes),
                                             b'labels' (N ints), b'filenames'
  batches.meta                               b'label_names' (10 names)
  md5: {', '.join(f'{k} {v}' for k, v in BATCHES.items())}, batches.meta {META_MD5}
  Each file's md5 is checked before it is read: a different checksum is an error; with
  --no-verify (a copy you trust, e.g. re-pickled) it is a warning, recorded in dataset.json
  'checksum_differences'. Either way the pickles are read with a restricted unpickler that only
  rebuilds plain containers and numpy arrays, so a crafted file is refused without running code.
Protocol (ADSH_PyTorch / SEMICON lineage, not the official 50,000/10,000 split): the 60,000 images
of all six batches are pooled; for each class, --query-per-class (100) of its images are drawn
without replacement (numpy default_rng(--seed), classes in order 0..9) as queries; the other 59,000
are the database, which is also the training pool (the lineage trains on a 5,000 subset of it:
set the training sample size in the training config). The draw depends on --seed only.
Written: images/<k>.png (k = 5-digit position in the pooled 60,000, batches in the order above),
image_root '.', source_id '<batch>/<original file name>'.
"""


def add_arguments(parser) -> None:
    common.add_root_argument(parser, "cifar-10-batches-py or its parent")
    parser.add_argument("--query-per-class", type=int, default=100, metavar="Q",
                        help="query images drawn per class (default 100)")


def _read(path: pathlib.Path, want: str, args, differences: list[str]) -> dict:
    """The dict pickled in `path`, after checking its md5 against `want` (a mismatch is an error,
    or with --no-verify an entry of `differences`); unpickled without running code from it."""
    raw = common.require(path, DOWNLOAD).read_bytes()
    got = hashlib.md5(raw).hexdigest()
    if got != want:
        if args.verify != "off":
            raise common.DatasetError(
                f"md5 {got} differs from the official {want} (a damaged or altered file)",
                f"re-download {ARCHIVE} and extract it again; for a copy you trust, re-run with "
                "--no-verify (the difference is then recorded in dataset.json "
                "'checksum_differences')", file=path)
        differences.append(path.name)
    d = common.load_pickle(raw, path, f"re-extract {ARCHIVE}")
    if not isinstance(d, dict):
        raise common.DatasetError(f"holds a {type(d).__name__}, not the dict of a CIFAR-10 file",
                                  f"re-extract {ARCHIVE}", file=path)
    return d


def _is_batch(data, labels, files) -> bool:
    """Whether the values of a batch dict have the CIFAR-10 layout (`files` may be None)."""
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        return False
    if isinstance(labels, np.ndarray):
        ints = labels.ndim == 1 and labels.dtype.kind in "iu"
    else:
        ints = isinstance(labels, list) and all(type(v) is int for v in labels)
    names = files is None or (isinstance(files, list)
                              and all(isinstance(f, (bytes, str)) for f in files))
    return ints and names and len(labels) == len(data) \
        and (files is None or len(files) == len(data))


def prepare(args) -> pathlib.Path:
    base = common.find_base(args.root, "batches.meta", ["cifar-10-batches-py"], DOWNLOAD)
    problems = common.Problems(args.skip_bad)
    meta_file = base / "batches.meta"
    checksum_diffs: list[str] = []
    label_names = _read(meta_file, META_MD5, args, checksum_diffs).get(b"label_names")
    names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else n
             for n in label_names] if isinstance(label_names, list) else []
    if not names or not all(isinstance(n, str) for n in names):
        raise common.DatasetError("no b'label_names' list of names in the pickle",
                                  f"re-extract it ({DOWNLOAD})", file=meta_file)
    blocks, labels, ids, where = [], [], [], []
    for batch, md5 in BATCHES.items():
        path = base / batch
        d = _read(path, md5, args, checksum_diffs)
        data, lab, files = d.get(b"data"), d.get(b"labels"), d.get(b"filenames")
        if not _is_batch(data, lab, files):
            raise common.DatasetError("not a CIFAR-10 batch (b'data' N×3072 uint8, b'labels' N "
                                      "ints, b'filenames' N names)", f"re-extract it ({DOWNLOAD})",
                                      file=path)
        blocks.append(data)
        for k in range(len(data)):
            labels.append(int(lab[k]))
            fname = str(k) if files is None else files[k]
            fname = fname.decode("utf-8", "replace") if isinstance(fname, bytes) else fname
            ids.append(f"{batch}/{fname}")
            where.append((str(path), k + 1))
    if checksum_diffs:
        common.warn(f"cifar10: md5 of {', '.join(checksum_diffs)} in {base} differs from the "
                    "official files (recorded in dataset.json 'checksum_differences')")
    labels_arr = np.asarray(labels, dtype=np.int64)
    valid = (labels_arr >= 0) & (labels_arr < len(names))
    for g in np.flatnonzero(~valid):
        problems.bad(where[g][0], where[g][1], f"entry {where[g][1]}: label {labels_arr[g]} out of "
                                               f"range 0..{len(names) - 1}")
    rng = np.random.default_rng(args.seed)
    query = np.zeros(len(labels_arr), dtype=bool)
    for c in range(len(names)):
        rows = np.flatnonzero(valid & (labels_arr == c))
        if len(rows) <= args.query_per_class:
            raise common.DatasetError(
                f"class {c} ({names[c]}) has {len(rows)} images; the protocol draws "
                f"{args.query_per_class} queries per class and keeps the rest as database",
                "use the complete download or a smaller --query-per-class", file=base)
        query[rows[rng.permutation(len(rows))[:args.query_per_class]]] = True
    records = [common.Record(path=f"images/{g:05d}.png", split="query" if query[g] else "database",
                             label=labels[g], source_id=ids[g], file=where[g][0], line=where[g][1])
               for g in np.flatnonzero(valid)]
    records = common.apply_limit(records, args.limit)
    keep = [int(r.path[len("images/"):-len(".png")]) for r in records]
    pixels = np.concatenate(blocks)[keep].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return common.finish_with_images(
        args, np.ascontiguousarray(pixels), [r.path[len("images/"):] for r in records], name="cifar10",
        records=records, class_names=names, problems=problems, official_counts=OFFICIAL,
        official_classes=10, split_sources={"database": base, "query": base},
        extra_info={"checksum_differences": checksum_diffs,
                    "protocol": f"{args.query_per_class} queries per class drawn with seed "
                                f"{args.seed} from all 60,000 images; the rest is the database"})
