"""CUB-200-2011 -> manifest + attributes.npz + parts.npz (docs/METHOD.md §7)."""
from __future__ import annotations

import pathlib
import re

import numpy as np

from data_prep import common

DOWNLOAD = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
OFFICIAL = {"database": 5994, "query": 5794}
NUM_ATTRIBUTES, NUM_PARTS = 312, 15

DESCRIPTION = f"""\
CUB-200-2011: 200 bird species; 5,994 database (train) / 5,794 query (test); 312 attributes, 15 parts.

Download: {DOWNLOAD}
  (formerly http://www.vision.caltech.edu/visipedia-data/CUB-200-2011/CUB_200_2011.tgz)
  CUB_200_2011.tgz  md5 97eceeb196236b17998738112f37df78  (1.1 GB)
Extract with `tar xzf CUB_200_2011.tgz`: it gives CUB_200_2011/ and, beside it, attributes.txt.
--root: the CUB_200_2011 folder, or the folder the archive was extracted into.

Files read (under CUB_200_2011/):
  images.txt                "<image id> <class folder>/<file>.jpg" (relative to images/)
  image_class_labels.txt    "<image id> <class id 1..200>"
  train_test_split.txt      "<image id> <1 = train (database) | 0 = test (query)>"
  classes.txt               "<class id> <NNN.Name>"
  bounding_boxes.txt        "<image id> <x> <y> <w> <h>" (pixels)
  attributes/image_attribute_labels.txt
                            "<image id> <attribute id> <present 0/1> <certainty 1..4> <time>";
                            some official lines are malformed (extra fields): the first four
                            fields are read, lines with fewer are bad entries
  attributes.txt            "<attribute id> <has_part::value>" (312 lines), looked for in
                            attributes/, in CUB_200_2011/ and in its parent folder
  parts/parts.txt           "<part id> <name>" (15 lines)
  parts/part_locs.txt       "<image id> <part id> <x> <y> <visible 0/1>"
  images/<class folder>/<file>.jpg
Written: manifest.csv (label = class id - 1, bbox_*, source_id = image id, paths 'images/...'
relative to image_root = the CUB_200_2011 folder), attributes.npz (present; certainty 1..4, 0 where
an (image, attribute) pair has no line), parts.npz (xyv: x, y in original pixels, visible 0/1;
0 0 0 where a pair has no line). --no-attributes / --no-parts leave those out.
"""


def add_arguments(parser) -> None:
    common.add_root_argument(parser, "the CUB_200_2011 folder or its parent")
    parser.add_argument("--no-attributes", action="store_true", help="do not read attributes")
    parser.add_argument("--no-parts", action="store_true", help="do not read part locations")


def _attribute_names(base: pathlib.Path, problems) -> tuple[list[str], dict[str, int]]:
    candidates = [base / "attributes" / "attributes.txt", base / "attributes.txt",
                  base.parent / "attributes.txt"]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise common.DatasetError(
            "missing file of the raw dataset", "attributes.txt ships beside CUB_200_2011/ in "
            f"CUB_200_2011.tgz; copy it to {candidates[0].parent}/ or use --no-attributes",
            file=candidates[0])
    table = common.read_id_table(found, problems, lambda v: v[0], 2, rest=True,
                                 what="attribute name")
    ids = sorted(table, key=lambda k: (common.to_int(k) is None, common.to_int(k) or 0))
    return [table[k][1] for k in ids], {k: j for j, k in enumerate(ids)}


def _read_attributes(base, problems, row_of, all_ids, col_of):
    path = common.require(base / "attributes" / "image_attribute_labels.txt", DOWNLOAD)
    present = np.zeros((len(row_of), len(col_of)), np.uint8)
    certainty = np.zeros_like(present)
    lines = 0
    for lineno, text in common.iter_lines(path, empty_ok=False):
        t = text.split()
        if len(t) < 4:
            problems.bad(path, lineno, f"expected at least 4 fields (image attribute present "
                                       f"certainty), got {len(t)}: {text.strip()!r}")
            continue
        img, attr, p, c = t[:4]
        if img not in all_ids or attr not in col_of or p not in ("0", "1") \
                or c not in ("1", "2", "3", "4"):
            problems.bad(path, lineno, f"bad annotation {' '.join(t[:4])!r} (unknown image or "
                                       "attribute id, present not 0/1 or certainty not 1..4)")
            continue
        r = row_of.get(img)
        if r is not None:  # None: the image itself was left out (--skip-bad)
            present[r, col_of[attr]] = p == "1"
            certainty[r, col_of[attr]] = ord(c) - 48
            lines += 1
    return {"present": present, "certainty": certainty}, lines


def _read_parts(base, problems, row_of, all_ids):
    f_names = common.require(base / "parts" / "parts.txt", DOWNLOAD)
    table = common.read_id_table(f_names, problems, lambda v: v[0], 2, rest=True, what="part name")
    ids = sorted(table, key=lambda k: (common.to_int(k) is None, common.to_int(k) or 0))
    col_of = {k: j for j, k in enumerate(ids)}
    path = common.require(base / "parts" / "part_locs.txt", DOWNLOAD)
    xyv = np.zeros((len(row_of), len(ids), 3), np.float32)
    lines = 0
    for lineno, (img, part, x, y, v) in common.iter_fields(path, 5, problems,
                                                              empty_ok=False):
        xy = (common.to_float(x), common.to_float(y))
        if img not in all_ids or part not in col_of or None in xy or v not in ("0", "1"):
            problems.bad(path, lineno, f"bad part location {' '.join((img, part, x, y, v))!r} "
                                       "(unknown image or part id, or bad x y visible)")
            continue
        r = row_of.get(img)
        if r is not None:
            xyv[r, col_of[part]] = (xy[0], xy[1], float(v))
            lines += 1
    return [table[k][1] for k in ids], {"xyv": xyv}, lines


def prepare(args) -> pathlib.Path:
    base = common.find_base(args.root, "images.txt", ["CUB_200_2011"], DOWNLOAD)
    problems = common.Problems(args.skip_bad)
    records, class_names = common.read_id_layout(base, problems, DOWNLOAD, classes_from="listed")
    class_names = [re.sub(r"^\d+\.", "", n) for n in class_names]
    # annotation lines of images left out above are ignored; unknown image ids are bad entries
    all_ids = {text.split()[0] for _, text in common.iter_lines(base / "images.txt")}
    attribute_names = col_of = None
    if not args.no_attributes:
        attribute_names, col_of = _attribute_names(base, problems)
    records = common.verify_images(args, common.apply_limit(records, args.limit), base, problems)
    row_of = {r.source_id: k for k, r in enumerate(records)}
    arrays, diffs, part_names = {}, [], None
    if not args.no_attributes:
        arrays["attributes"], lines = _read_attributes(base, problems, row_of, all_ids, col_of)
        if len(attribute_names) != NUM_ATTRIBUTES:
            diffs.append(f"attributes: {len(attribute_names)}, official {NUM_ATTRIBUTES}")
        if lines != len(records) * len(attribute_names):
            diffs.append(f"attribute annotations: {lines:,} of {len(records) * len(attribute_names):,}"
                         " (image, attribute) pairs have a line")
    if not args.no_parts:
        part_names, arrays["parts"], lines = _read_parts(base, problems, row_of, all_ids)
        if len(part_names) != NUM_PARTS:
            diffs.append(f"parts: {len(part_names)}, official {NUM_PARTS}")
        if lines != len(records) * len(part_names):
            diffs.append(f"part locations: {lines:,} of {len(records) * len(part_names):,} "
                         "(image, part) pairs have a line")
    return common.finish(
        args, name="cub200", records=records, class_names=class_names, problems=problems,
        image_root=str(base), official_counts=OFFICIAL, official_classes=200, arrays=arrays,
        attribute_names=attribute_names, part_names=part_names, extra_differences=diffs,
        split_sources={"database": base / "train_test_split.txt",
                       "query": base / "train_test_split.txt"})
