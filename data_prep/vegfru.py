"""VegFru -> manifest (docs/METHOD.md §7)."""
from __future__ import annotations

import pathlib

from data_prep import common

DOWNLOAD = ("https://github.com/ustc-vim/vegfru (links to vegfru-dataset archives: veg200_images, "
            "fru92_images, vegfru_list)")
NUM_CLASSES = 292
OFFICIAL = {"database": 29200, "query": 116931, "val": 14600}

DESCRIPTION = f"""\
VegFru: 292 vegetable and fruit classes; 29,200 database (train) / 116,931 query (test); 14,600 val.

Download: {DOWNLOAD}; md5 unknown.
--root: the folder holding vegfru_list/, veg200_images/ and fru92_images/.

Files read:
  vegfru_list/vegfru_train.txt   "<relative path> <label 0..291>"  -> database
  vegfru_list/vegfru_val.txt     "<relative path> <label>"         -> see --official-val
  vegfru_list/vegfru_test.txt    "<relative path> <label>"         -> query
  veg200_images/<class>/<file>.jpg, fru92_images/<class>/<file>.jpg  (paths as in the lists)
Database = the train list alone (29,200 images): the count docs/METHOD.md §7 gives and what the authors'
SEMICON loader does ("do not combine train and val"). The official val list becomes the 'val'
split by default (excluded from training and retrieval); --official-val database merges it into the
database (43,800 images), --official-val drop leaves it out.
class_names: the class folder of the first image of each label (VegFru ships no class-name file).
Written: manifest.csv with the list paths relative to image_root = --root.
"""


def add_arguments(parser) -> None:
    common.add_root_argument(parser, "the folder holding vegfru_list/ and the image folders")
    parser.add_argument("--official-val", choices=("val", "database", "drop"), default="val",
                        help="what to do with vegfru_val.txt (default: val split)")


def prepare(args) -> pathlib.Path:
    base = common.find_base(args.root, "vegfru_list", ["vegfru"], DOWNLOAD)
    problems = common.Problems(args.skip_bad)
    lists = {"database": "vegfru_train.txt", "val": "vegfru_val.txt", "query": "vegfru_test.txt"}
    where = {"val": {"val": "val", "database": "database", "drop": None}[args.official_val],
             "database": "database", "query": "query"}
    sources = {s: base / "vegfru_list" / f for s, f in lists.items()}
    names: dict[int, str] = {}
    records = []
    for list_split, path in sources.items():
        split = where[list_split]
        common.require(path, DOWNLOAD)
        if split is None:
            continue
        for line, text in common.iter_lines(path):
            fields = text.rsplit(None, 1)
            label = common.to_int(fields[-1]) if len(fields) == 2 else None
            rel, reason = common.clean_relpath(fields[0])
            if len(fields) != 2 or label is None:
                reason = f"expected '<relative path> <label>', got {text.strip()!r}"
            elif not 0 <= label < NUM_CLASSES:
                reason = f"label {label} out of range 0..{NUM_CLASSES - 1}"
            if reason is not None:
                problems.bad(path, line, reason)
                continue
            names.setdefault(label, rel.split("/")[-2] if rel.count("/") >= 1 else f"class_{label}")
            records.append(common.Record(path=rel, split=split, label=label, source_id=rel,
                                         file=str(path), line=line))
    records = common.verify_images(args, common.apply_limit(records, args.limit), base, problems)
    official = dict(OFFICIAL)
    if args.official_val == "database":
        official = {"database": OFFICIAL["database"] + OFFICIAL["val"], "query": OFFICIAL["query"]}
    elif args.official_val == "drop":
        official.pop("val")
    return common.finish(
        args, name="vegfru", records=records, problems=problems, image_root=str(base),
        class_names=[names.get(k, f"class_{k}") for k in range(NUM_CLASSES)],
        official_counts=official, split_sources=sources,
        extra_info={"official_val": args.official_val})
