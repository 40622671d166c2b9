"""Stanford Dogs -> manifest (docs/METHOD.md §7)."""
from __future__ import annotations

import pathlib

import numpy as np

from data_prep import common

DOWNLOAD = "http://vision.stanford.edu/aditya86/ImageNetDogs/ (images.tar, lists.tar)"
OFFICIAL = {"database": 12000, "query": 8580}

DESCRIPTION = f"""\
Stanford Dogs: 120 breeds; 12,000 database (train) / 8,580 query (test).

Download: http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar
            md5 1bb1f2a596ae7057f99d7d75860002ef  (757 MB)
          http://vision.stanford.edu/aditya86/ImageNetDogs/lists.tar
            md5 edbb9f16854ec66506b5f09b583e0656
            (inside: train_list.mat md5 d37f459eacccfa4d299373dffba9648d,
                     test_list.mat  md5 66f60c285efbc3ce2fb7893bd26c6b80)
Extract both into one folder and pass it as --root (lists.tar has no top folder: put its files
under lists/).

Files read:
  lists/train_list.mat  MATLAB: file_list (relative paths under Images/), labels (1-based) -> database
  lists/test_list.mat   same fields                                                      -> query
  Images/<wnid>-<breed>/<file>.jpg
Labels: label - 1; class k is the k-th class folder of Images/ in sorted order (how the lists were
made; each entry's folder is checked against its label). class_names: the breed part of the folder.
Entries are reported as '<file>.mat:<entry number>'.
Written: manifest.csv with paths 'Images/...' relative to image_root = --root.
"""


def add_arguments(parser) -> None:
    common.add_root_argument(parser, "the folder holding Images/ and lists/")


def _load_mat(path: pathlib.Path):
    import scipy.io
    try:
        mat = scipy.io.loadmat(path)
        files = [str(np.asarray(f).ravel()[0]) for f in np.asarray(mat["file_list"]).ravel()]
        labels = np.asarray(mat["labels"]).ravel()
    except Exception as err:  # corrupt file, wrong variables
        raise common.DatasetError(f"cannot read file_list/labels ({type(err).__name__}: {err})",
                                  f"restore it from lists.tar ({DOWNLOAD})", file=path) from None
    if len(files) != len(labels):
        raise common.DatasetError(f"{len(files)} files but {len(labels)} labels",
                                  f"restore it from lists.tar ({DOWNLOAD})", file=path)
    return files, labels


def prepare(args) -> pathlib.Path:
    base = common.find_base(args.root, "lists/train_list.mat", ["StanfordDogs", "stanford_dogs"],
                            DOWNLOAD)
    problems = common.Problems(args.skip_bad)
    images = common.require(base / "Images", DOWNLOAD)
    folders = sorted(p.name for p in images.iterdir() if p.is_dir())
    sources = {"database": base / "lists/train_list.mat", "query": base / "lists/test_list.mat"}
    records = []
    for split, path in sources.items():
        files, labels = _load_mat(common.require(path, DOWNLOAD))
        for entry, (name, value) in enumerate(zip(files, labels), 1):
            rel, reason = common.clean_relpath(name)
            label = int(value) - 1 if float(value).is_integer() else -1
            if reason is None and not 0 <= label < len(folders):
                reason = f"entry {entry}: label {value} out of range 1..{len(folders)}"
            elif reason is None and rel.split("/")[0] != folders[label]:
                reason = (f"entry {entry}: {rel!r} is not in the folder of label {int(value)} "
                          f"({folders[label]})")
            if reason is not None:
                problems.bad(path, entry, reason)
                continue
            records.append(common.Record(path="Images/" + rel, split=split, label=label,
                                         source_id=rel, file=str(path), line=entry))
    records = common.verify_images(args, common.apply_limit(records, args.limit), base, problems)
    return common.finish(args, name="stanford_dogs", records=records, problems=problems,
                         class_names=[f.split("-", 1)[-1] for f in folders],
                         image_root=str(base), official_counts=OFFICIAL, official_classes=120,
                         split_sources=sources)
