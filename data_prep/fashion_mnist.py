"""Fashion-MNIST -> manifest + extracted grayscale PNGs (real data that installs offline)."""
from __future__ import annotations

import gzip
import pathlib

import numpy as np

from data_prep import common

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
DOWNLOAD = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ or the Debian package "
            f"dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`, files in {DEBIAN_ROOT})")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]
FILES = {"database": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "query": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
OFFICIAL = {"database": 60000, "query": 10000}

DESCRIPTION = f"""\
Fashion-MNIST: 10 clothing classes, 28×28 grayscale; 60,000 database (train) / 10,000 query (test).

Download: {DOWNLOAD}
  upstream md5 (torchvision): train-images-idx3-ubyte.gz 8d4fb7e6c68d591d4c3dfef9ec88bf0d,
  train-labels-idx1-ubyte.gz 25c81989df183df01b3e8a0aad5dffbe, t10k-images-idx3-ubyte.gz
  bef4ecab320f06d8554ea6380940ec79, t10k-labels-idx1-ubyte.gz bb300cfdad3c16e7a12a480ee83cd310.
  Debian 0.0~git20200523.55506a9-1 ships recompressed .gz files (other md5s:
  train-images cf8536b0aa1a6ac5fa3f23001093305c, train-labels 10bea18fdb374794d4bb42e356e600c9,
  t10k-images f78720b4224f21cce2f2ccf2d7a94c9a, t10k-labels 0d30e22e447f3c33dab9ed536400ac01).
--root: the folder holding the four files (default: {DEBIAN_ROOT} when it exists); each file may
be gzipped (.gz) or not.

Files read: train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz) -> database;
t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz) -> query (IDX format: magic 2051 for
images, 2049 for labels, big-endian sizes). Written: grayscale PNGs images/train/<k>.png and
images/t10k/<k>.png (k = 5-digit position in the file), image_root '.'; the datasets convert them
to RGB. The full run writes 70,000 PNGs; --limit N keeps the first N of each split.
"""


def add_arguments(parser) -> None:
    default = DEBIAN_ROOT if pathlib.Path(DEBIAN_ROOT).is_dir() else None
    common.add_root_argument(parser, "the folder holding the four idx files", default=default)


def _find(base: pathlib.Path, stem: str) -> pathlib.Path:
    for name in (stem + ".gz", stem):
        if (base / name).is_file():
            return base / name
    return common.require(base / (stem + ".gz"), DOWNLOAD)


def read_idx(path: pathlib.Path, magic: int) -> np.ndarray:
    """Read an IDX file (optionally gzipped) with the expected magic number (2049 or 2051)."""
    todo = f"restore it from the original download ({DOWNLOAD})"
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise common.DatasetError(f"cannot read ({type(err).__name__}: {err})", todo, file=path) from None
    ndim = magic - 2048
    if len(raw) < 4 + 4 * ndim or int.from_bytes(raw[:4], "big") != magic:
        raise common.DatasetError(f"not an IDX file with magic number {magic}", todo, file=path)
    shape = tuple(int.from_bytes(raw[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise common.DatasetError(f"holds {body.size} bytes of data, expected {int(np.prod(shape))} "
                                  f"for shape {shape} (truncated?)", todo, file=path)
    return body.reshape(shape)


def prepare(args) -> pathlib.Path:
    base = common.find_base(args.root, "", [], DOWNLOAD)  # the folder itself: .gz or plain files
    problems = common.Problems(args.skip_bad)
    images, records, sources = [], [], {}
    for split, (img_stem, lab_stem) in FILES.items():
        img_file, lab_file = _find(base, img_stem), _find(base, lab_stem)
        sources[split] = img_file
        pixels, labels = read_idx(img_file, 2051), read_idx(lab_file, 2049)
        if len(pixels) != len(labels):
            raise common.DatasetError(f"{len(labels)} labels for {len(pixels)} images in {img_file}",
                                      "use image and label files of the same split", file=lab_file)
        n = len(labels) if not args.limit else min(args.limit, len(labels))
        folder = img_stem.split("-")[0]
        for k in range(n):
            if labels[k] >= len(CLASSES):
                problems.bad(lab_file, k + 1, f"entry {k + 1}: label {labels[k]} out of range "
                                              f"0..{len(CLASSES) - 1}")
                continue
            records.append(common.Record(path=f"images/{folder}/{k:05d}.png", split=split,
                                         label=int(labels[k]), source_id=f"{folder}:{k}",
                                         file=str(lab_file), line=k + 1))
            images.append(pixels[k])
    return common.finish_with_images(
        args, np.stack(images) if images else np.zeros((0, 28, 28), np.uint8),
        [r.path[len("images/"):] for r in records], name="fashion_mnist", records=records,
        class_names=CLASSES, problems=problems, official_counts=OFFICIAL, official_classes=10,
        split_sources=sources)
