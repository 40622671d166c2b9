"""NABirds -> manifest (docs/METHOD.md §7): sparse class ids remapped to 0..554."""
from __future__ import annotations

import pathlib

from data_prep import common

DOWNLOAD = "https://dl.allaboutbirds.org/nabirds (form; archive nabirds.tar.gz)"
OFFICIAL = {"database": 23929, "query": 24633}

DESCRIPTION = f"""\
NABirds: 555 North American bird categories; 23,929 database (train) / 24,633 query (test).

Download: {DOWNLOAD}; md5 unknown.
--root: the nabirds folder, or the folder the archive was extracted into.

Files read (under nabirds/):
  images.txt                "<image id (uuid)> <folder>/<file>.jpg" (relative to images/)
  image_class_labels.txt    "<image id> <class id>"  (ids are sparse)
  train_test_split.txt      "<image id> <1 = train (database) | 0 = test (query)>"
  classes.txt               "<class id> <name with spaces>" (1,011 nodes of the hierarchy)
  bounding_boxes.txt        "<image id> <x> <y> <w> <h>"
  images/<folder>/<file>.jpg
  (hierarchy.txt, parts/ and photographers.txt are not needed.)
Labels: the class ids that occur in image_class_labels.txt, sorted numerically, become 0..554;
class names come from classes.txt. Written: manifest.csv with bbox_* and source_id = image id,
paths 'images/...' relative to image_root = the nabirds folder.
"""


def add_arguments(parser) -> None:
    common.add_root_argument(parser, "the nabirds folder or its parent")


def prepare(args) -> pathlib.Path:
    base = common.find_base(args.root, "images.txt", ["nabirds"], DOWNLOAD)
    problems = common.Problems(args.skip_bad)
    records, class_names = common.read_id_layout(base, problems, DOWNLOAD, classes_from="used")
    records = common.verify_images(args, common.apply_limit(records, args.limit), base, problems)
    return common.finish(
        args, name="nabirds", records=records, class_names=class_names, problems=problems,
        image_root=str(base), official_counts=OFFICIAL, official_classes=555,
        split_sources={"database": base / "train_test_split.txt",
                       "query": base / "train_test_split.txt"})
