"""NUS-WIDE, 21 most frequent concepts (multi-label) -> manifest (docs/METHOD.md §7)."""
from __future__ import annotations

import pathlib

from data_prep import common

DOWNLOAD = ("images: http://lms.comp.nus.edu.sg/research/NUS-WIDE.htm (Flickr images; request "
            "form); the 21-concept lists come from the hashing code lineage (DPSH, ADSH_PyTorch)")
NUM_CONCEPTS = 21
OFFICIAL = {"database": None, "query": 2100}

DESCRIPTION = f"""\
NUS-WIDE (21 most frequent concepts, multi-label): database per list / 2,100 query.

Download: {DOWNLOAD}; md5 unknown (the lists are not an official release).
--root: the folder holding the four list files; image paths in the lists are relative to it.

Files read:
  database_img.txt            one image path per line                -> database
  database_label_onehot.txt   one line per image: {NUM_CONCEPTS} numbers 0/1
  test_img.txt                one image path per line                -> query
  test_label_onehot.txt       one line per image: {NUM_CONCEPTS} numbers 0/1
The n-th non-blank line of a label file belongs to the n-th non-blank line of its image list.
Lines whose label row is not {NUM_CONCEPTS} values of 0/1, or has no 1, are bad entries.
Relevance for retrieval: sharing at least one concept. class_names: the lists carry no names, so
they are 'concept_00'..'concept_20' unless --class-names FILE gives {NUM_CONCEPTS} names, one a line.
Written: manifest.csv with a 'labels' column ('0 5 17'), image_root = --root.
"""


def add_arguments(parser) -> None:
    common.add_root_argument(parser, "the folder holding database_img.txt etc.")
    parser.add_argument("--class-names", type=pathlib.Path, default=None, metavar="FILE",
                        help=f"{NUM_CONCEPTS} concept names, one per line, in label-column order")


def prepare(args) -> pathlib.Path:
    base = common.find_base(args.root, "database_img.txt", ["NUS-WIDE", "nus-wide", "nus_wide"],
                            DOWNLOAD)
    problems = common.Problems(args.skip_bad)
    names = [f"concept_{k:02d}" for k in range(NUM_CONCEPTS)]
    if args.class_names is not None:
        names = [t.strip() for _, t in common.iter_lines(common.require(args.class_names, "--class-names"))]
        if len(names) != NUM_CONCEPTS:
            raise common.DatasetError(f"{len(names)} names, expected {NUM_CONCEPTS}",
                                      "give one concept name per line", file=args.class_names)
    sources = {"database": base / "database_img.txt", "query": base / "test_img.txt"}
    records = []
    for split, img_file in sources.items():
        lab_file = common.require(base / img_file.name.replace("_img.txt", "_label_onehot.txt"),
                                  DOWNLOAD)
        paths = list(common.iter_lines(common.require(img_file, DOWNLOAD)))
        rows = list(common.iter_lines(lab_file))
        if len(paths) != len(rows):
            raise common.DatasetError(
                f"{len(rows)} label lines but {len(paths)} image lines in {img_file.name}",
                "use the image list and label file that belong together", file=lab_file)
        for (line, text), (lab_line, row) in zip(paths, rows):
            rel, reason = common.clean_relpath(text)
            if reason is not None:
                problems.bad(img_file, line, reason)
                continue
            values = row.split()
            if len(values) != NUM_CONCEPTS or any(common.to_float(v) not in (0.0, 1.0) for v in values):
                problems.bad(lab_file, lab_line, f"expected {NUM_CONCEPTS} values 0/1, got "
                                                 f"{row.strip()[:80]!r}")
                continue
            labels = tuple(k for k, v in enumerate(values) if float(v) == 1.0)
            if not labels:
                problems.bad(lab_file, lab_line, "no concept set for this image")
                continue
            records.append(common.Record(path=rel, split=split, labels=labels, source_id=rel,
                                         file=str(img_file), line=line))
    records = common.verify_images(args, common.apply_limit(records, args.limit), base, problems)
    return common.finish(args, name="nuswide", records=records, class_names=names,
                         problems=problems, image_root=str(base), multi_label=True,
                         official_counts=OFFICIAL, split_sources=sources)
