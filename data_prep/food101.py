"""Food-101 -> manifest (docs/METHOD.md §7)."""
from __future__ import annotations

import pathlib

from data_prep import common

DOWNLOAD = "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz"
OFFICIAL = {"database": 75750, "query": 25250}

DESCRIPTION = f"""\
Food-101: 101 dishes; 75,750 database (train) / 25,250 query (test).

Download: {DOWNLOAD}
  food-101.tar.gz  md5 85eeb15f3717b99a5da872d97d918f87  (5 GB)
--root: the food-101 folder, or the folder the archive was extracted into.

Files read (under food-101/):
  meta/classes.txt   one class folder name per line (101); the line order is the label order
  meta/labels.txt    readable class names, same order (optional; used as class_names)
  meta/train.txt     "<class>/<image id>" without .jpg  -> database
  meta/test.txt      "<class>/<image id>"               -> query
  images/<class>/<image id>.jpg
Written: manifest.csv with paths 'images/<class>/<id>.jpg' relative to image_root = the food-101
folder, source_id = '<class>/<id>'.
"""


def add_arguments(parser) -> None:
    common.add_root_argument(parser, "the food-101 folder or its parent")


def prepare(args) -> pathlib.Path:
    base = common.find_base(args.root, "meta/classes.txt", ["food-101"], DOWNLOAD)
    problems = common.Problems(args.skip_bad)
    folders = [t.strip() for _, t in common.iter_lines(
        common.require(base / "meta/classes.txt", DOWNLOAD), empty_ok=False)]
    label_of = {name: k for k, name in enumerate(folders)}
    class_names = folders
    if (base / "meta/labels.txt").is_file():
        pretty = [t.strip() for _, t in common.iter_lines(base / "meta/labels.txt")]
        class_names = pretty if len(pretty) == len(folders) else folders
    sources = {"database": base / "meta/train.txt", "query": base / "meta/test.txt"}

    def entries(path):
        for line, (entry,) in common.iter_fields(path, 1, problems):
            folder = entry.split("/")[0]
            ok = entry.count("/") == 1 and folder in label_of
            reason = None if ok else f"entry {entry!r} is not '<class>/<id>' with a class of meta/classes.txt"
            yield line, f"images/{entry}.jpg", label_of.get(folder), entry, reason

    records = common.records_from_lists(sources, DOWNLOAD, problems, entries)
    records = common.verify_images(args, common.apply_limit(records, args.limit), base, problems)
    return common.finish(args, name="food101", records=records, class_names=class_names,
                         problems=problems, image_root=str(base), official_counts=OFFICIAL,
                         official_classes=101, split_sources=sources)
