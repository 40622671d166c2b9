"""FGVC-Aircraft (variant level) -> manifest (docs/METHOD.md §7)."""
from __future__ import annotations

import pathlib

from data_prep import common

DOWNLOAD = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"
OFFICIAL = {"database": 6667, "query": 3333}

DESCRIPTION = f"""\
FGVC-Aircraft 2013b, variant level: 100 classes; 6,667 database (trainval) / 3,333 query (test).

Download: {DOWNLOAD}
  fgvc-aircraft-2013b.tar.gz  md5 d4acdd33327262359767eeaa97a4f732  (2.6 GB)
--root: fgvc-aircraft-2013b/, its data/ folder, or the folder the archive was extracted into.

Files read (under fgvc-aircraft-2013b/data/):
  variants.txt                  one variant name per line (100); the line order is the label order
  images_variant_trainval.txt   "<image id> <variant name, may contain spaces>"  -> database
  images_variant_test.txt       "<image id> <variant name>"                      -> query
  images/<image id>.jpg
The images keep their 20-pixel copyright banner at the bottom (as in the hashing code lineage).
Written: manifest.csv with paths 'images/<id>.jpg' relative to image_root = the data folder,
source_id = image id.
"""


def add_arguments(parser) -> None:
    common.add_root_argument(parser, "fgvc-aircraft-2013b, its data folder or its parent")


def prepare(args) -> pathlib.Path:
    base = common.find_base(args.root, "variants.txt",
                            ["data", "fgvc-aircraft-2013b/data"], DOWNLOAD)
    problems = common.Problems(args.skip_bad)
    f_variants = common.require(base / "variants.txt", DOWNLOAD)
    class_names = [text.strip() for _, text in common.iter_lines(f_variants, empty_ok=False)]
    label_of = {name: k for k, name in enumerate(class_names)}
    sources = {"database": base / "images_variant_trainval.txt",
               "query": base / "images_variant_test.txt"}

    def entries(path):
        for line, (image_id, variant) in common.iter_fields(path, 2, problems, rest=True):
            reason = None if variant in label_of else f"variant {variant!r} is not in {f_variants}"
            yield line, f"images/{image_id}.jpg", label_of.get(variant), image_id, reason

    records = common.records_from_lists(sources, DOWNLOAD, problems, entries)
    records = common.verify_images(args, common.apply_limit(records, args.limit), base, problems)
    return common.finish(args, name="aircraft", records=records, class_names=class_names,
                         problems=problems, image_root=str(base), official_counts=OFFICIAL,
                         official_classes=100, split_sources=sources)
