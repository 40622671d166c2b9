"""Builders of small copies of the raw dataset layouts of docs/METHOD.md §7 (same file names and formats,
a few tiny images per class). Each builder returns a `Layout`: the folder to pass as --root, the
manifest rows the preparer must produce, and what else a test needs to know."""
from __future__ import annotations

import dataclasses
import gzip
import pathlib
import pickle

import numpy as np
import pandas as pd
from PIL import Image


@dataclasses.dataclass
class Layout:
    root: pathlib.Path          # what to pass as --root
    base: pathlib.Path          # the folder image paths are relative to (image_root)
    expected: pd.DataFrame      # expected manifest rows (without the index column)
    class_names: list[str]
    extra: dict = dataclasses.field(default_factory=dict)


def image(path: pathlib.Path, seed: int, size=(8, 8), mode: str = "RGB") -> None:
    """A tiny image; the format follows the suffix (.jpg / .png)."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def truncate(path: pathlib.Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def garbage(path: pathlib.Path) -> None:
    path.write_bytes(b"this is not an image" * 10)


def write_lines(path: pathlib.Path, lines) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ CUB
CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
CUB_ATTRIBUTES = ["has_bill_shape::curved_(up_or_down)", "has_bill_shape::dagger",
                  "has_wing_color::blue", "has_wing_color::black"]
CUB_PARTS = ["back", "beak", "left eye"]


def cub(tmp: pathlib.Path, per_class: int = 4) -> Layout:
    """tmp/raw/{CUB_200_2011/..., attributes.txt} as `tar xzf CUB_200_2011.tgz` leaves it."""
    raw = tmp / "raw"
    base = raw / "CUB_200_2011"
    images, labels, split, boxes, rows = [], [], [], [], []
    img_id = 0
    for c, cls in enumerate(CUB_CLASSES):
        for k in range(per_class):
            img_id += 1
            rel = f"{cls}/{cls[4:]}_{k:04d}_{img_id}.jpg"
            image(base / "images" / rel, img_id, size=(10 + k, 8))
            is_train = k % 2
            bbox = (1.0 + k, 2.0, 5.0, 4.5)
            images.append(f"{img_id} {rel}")
            labels.append(f"{img_id} {c + 1}")
            split.append(f"{img_id} {is_train}")
            boxes.append(f"{img_id} " + " ".join(f"{v:.1f}" for v in bbox))
            rows.append({"path": f"images/{rel}", "label": c,
                         "split": "database" if is_train else "query",
                         "bbox_x": bbox[0], "bbox_y": bbox[1], "bbox_w": bbox[2], "bbox_h": bbox[3],
                         "source_id": str(img_id)})
    n = img_id
    write_lines(base / "images.txt", images)
    write_lines(base / "image_class_labels.txt", labels)
    write_lines(base / "train_test_split.txt", split)
    write_lines(base / "bounding_boxes.txt", boxes)
    write_lines(base / "classes.txt", [f"{k + 1} {c}" for k, c in enumerate(CUB_CLASSES)])
    write_lines(raw / "attributes.txt", [f"{k + 1} {a}" for k, a in enumerate(CUB_ATTRIBUTES)])
    a = len(CUB_ATTRIBUTES)
    present = np.zeros((n, a), np.uint8)
    certainty = np.zeros((n, a), np.uint8)
    lines = []
    for i in range(n):
        for j in range(a):
            present[i, j] = (i + j) % 2
            certainty[i, j] = 1 + (i * 3 + j) % 4
            line = f"{i + 1} {j + 1} {present[i, j]} {certainty[i, j]} {i * 1.5 + j:.3f}"
            if (i, j) in ((2, 1), (7, 3)):  # malformed like the official file: extra fields
                line = f"{i + 1} {j + 1} {present[i, j]} {certainty[i, j]} 0 {i}.279 12"
            lines.append(line)
    write_lines(base / "attributes" / "image_attribute_labels.txt", lines)
    write_lines(base / "attributes" / "certainties.txt",
                ["1 not visible", "2 guessing", "3 probably", "4 definitely"])
    write_lines(base / "parts" / "parts.txt", [f"{k + 1} {p}" for k, p in enumerate(CUB_PARTS)])
    xyv = np.zeros((n, len(CUB_PARTS), 3), np.float32)
    plines = []
    for i in range(n):
        for p in range(len(CUB_PARTS)):
            visible = (i + p) % 3 != 0
            xyv[i, p] = (2.0 + p, 1.5 * i, 1.0) if visible else (0.0, 0.0, 0.0)
            plines.append(f"{i + 1} {p + 1} {xyv[i, p, 0]:.1f} {xyv[i, p, 1]:.1f} {int(visible)}")
    write_lines(base / "parts" / "part_locs.txt", plines)
    return Layout(raw, base, frame(rows), [c[4:] for c in CUB_CLASSES],
                  {"present": present, "certainty": certainty, "xyv": xyv})


# -------------------------------------------------------------------------------------- NABirds
def nabirds(tmp: pathlib.Path, per_class: int = 3) -> Layout:
    base = tmp / "nabirds"
    # classes.txt holds the hierarchy's inner nodes too; only 295, 313 and 1010 have images
    classes = {0: "Birds", 1: "Ducks, Geese, and Swans", 22: "Albatrosses",
               295: "Black-footed Albatross", 313: "Laysan Albatross",
               1010: "Mallard (Female/Eclipse)"}
    used = [1010, 295, 313]  # listed out of numeric order on purpose
    images, labels, split, boxes, rows = [], [], [], [], []
    for c in used:
        for k in range(per_class):
            uid = f"{c:04d}a1b2-{k:04d}-4c5d-8e9f-{c * 10 + k:012d}"
            rel = f"{c:04d}/{uid.replace('-', '')}.jpg"
            image(base / "images" / rel, c + k)
            images.append(f"{uid} {rel}")
            labels.append(f"{uid} {c}")
            split.append(f"{uid} {int(k != 1)}")
            boxes.append(f"{uid} {k} 1 6 5")
            rows.append({"path": f"images/{rel}", "label": sorted(used).index(c),
                         "split": "database" if k != 1 else "query",
                         "bbox_x": float(k), "bbox_y": 1.0, "bbox_w": 6.0, "bbox_h": 5.0,
                         "source_id": uid})
    write_lines(base / "images.txt", images)
    write_lines(base / "image_class_labels.txt", labels)
    write_lines(base / "train_test_split.txt", split)
    write_lines(base / "bounding_boxes.txt", boxes)
    write_lines(base / "classes.txt", [f"{k} {v}" for k, v in classes.items()])
    write_lines(base / "hierarchy.txt", ["1 0", "22 1", "295 22", "313 22", "1010 1"])
    return Layout(tmp, base, frame(rows), [classes[c] for c in sorted(used)])


# ------------------------------------------------------------------------------------- Aircraft
AIRCRAFT = ["707-320", "A300B4", "Cessna 172"]


def aircraft(tmp: pathlib.Path, per_class: int = 3) -> Layout:
    data = tmp / "fgvc-aircraft-2013b" / "data"
    write_lines(data / "variants.txt", AIRCRAFT)
    trainval, test, rows = [], [], []
    for c, name in enumerate(AIRCRAFT):
        for k in range(per_class):
            image_id = f"{1000000 + c * 100 + k:07d}"
            image(data / "images" / f"{image_id}.jpg", c * 10 + k, size=(12, 9))
            is_test = k == 0
            (test if is_test else trainval).append((f"{image_id} {name}", {
                "path": f"images/{image_id}.jpg", "label": c,
                "split": "query" if is_test else "database", "source_id": image_id}))
    write_lines(data / "images_variant_trainval.txt", [t for t, _ in trainval])
    write_lines(data / "images_variant_test.txt", [t for t, _ in test])
    rows = [r for _, r in trainval] + [r for _, r in test]
    return Layout(tmp, data, frame(rows), list(AIRCRAFT))


# ------------------------------------------------------------------------------------- Food-101
FOOD = ["apple_pie", "baby_back_ribs", "waffles"]


def food101(tmp: pathlib.Path, per_class: int = 3) -> Layout:
    base = tmp / "food-101"
    write_lines(base / "meta" / "classes.txt", FOOD)
    write_lines(base / "meta" / "labels.txt", [f.replace("_", " ").capitalize() for f in FOOD])
    train, test = [], []
    for c, cls in enumerate(FOOD):
        for k in range(per_class):
            entry = f"{cls}/{100000 + c * 10 + k}"
            image(base / "images" / f"{entry}.jpg", c * 7 + k)
            split = "query" if k == per_class - 1 else "database"
            (test if split == "query" else train).append(
                {"path": f"images/{entry}.jpg", "label": c, "split": split, "source_id": entry})
    write_lines(base / "meta" / "train.txt", [r["source_id"] for r in train])
    write_lines(base / "meta" / "test.txt", [r["source_id"] for r in test])
    return Layout(tmp, base, frame(train + test),
                  [f.replace("_", " ").capitalize() for f in FOOD])


# --------------------------------------------------------------------------------------- VegFru
def vegfru(tmp: pathlib.Path) -> Layout:
    base = tmp / "vegfru"
    classes = {0: "veg200_images/cabbage", 1: "veg200_images/carrot", 200: "fru92_images/banana"}
    lists = {"train": [], "val": [], "test": []}
    for label, folder in classes.items():
        for k, part in enumerate(("train", "train", "val", "test", "test")):
            rel = f"{folder}/{folder[0]}_{label:03d}_{k:04d}.jpg"
            image(base / rel, label + k)
            lists[part].append((f"{rel} {label}", {
                "path": rel, "label": label,
                "split": {"train": "database", "val": "val", "test": "query"}[part],
                "source_id": rel}))
    for part, entries in lists.items():
        write_lines(base / "vegfru_list" / f"vegfru_{part}.txt", [t for t, _ in entries])
    rows = [r for part in ("train", "val", "test") for _, r in lists[part]]
    names = [f"class_{k}" for k in range(292)]
    for label, folder in classes.items():
        names[label] = folder.split("/")[1]
    return Layout(base, base, frame(rows), names)


# -------------------------------------------------------------------------------- Stanford Dogs
DOGS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02116738-African_hunting_dog"]


def _save_list(path: pathlib.Path, files: list[str], labels: list[int]) -> None:
    import scipy.io
    cell = np.empty((len(files), 1), dtype=object)
    ann = np.empty((len(files), 1), dtype=object)
    for k, f in enumerate(files):
        cell[k, 0] = np.array([f])
        ann[k, 0] = np.array([f[:-4]])
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"file_list": cell, "annotation_list": ann,
                            "labels": np.array(labels, dtype=np.float64).reshape(-1, 1)})


def stanford_dogs(tmp: pathlib.Path, per_class: int = 3) -> Layout:
    base = tmp / "dogs"
    train, test = [], []
    for c, folder in enumerate(DOGS):
        for k in range(per_class):
            rel = f"{folder}/{folder.split('-')[0]}_{1000 + k}.jpg"
            image(base / "Images" / rel, c * 5 + k)
            split = "query" if k == 0 else "database"
            (test if k == 0 else train).append(
                {"path": f"Images/{rel}", "label": c, "split": split, "source_id": rel})
    _save_list(base / "lists" / "train_list.mat", [r["source_id"] for r in train],
               [r["label"] + 1 for r in train])
    _save_list(base / "lists" / "test_list.mat", [r["source_id"] for r in test],
               [r["label"] + 1 for r in test])
    return Layout(base, base, frame(train + test), [d.split("-", 1)[1] for d in DOGS])


# ------------------------------------------------------------------------------------- CIFAR-10
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_BATCHES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch"]


def cifar_pickle(obj, protocol: int | None = None) -> bytes:
    """`obj` pickled; protocol 2 names numpy's array rebuilder `numpy.core.multiarray` as the
    official (Python 2, numpy 1) batches do, whatever numpy writes the file."""
    data = pickle.dumps(obj, protocol=protocol)
    if protocol == 2:
        data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    return data


def cifar10(tmp: pathlib.Path, per_class_per_batch: int = 1) -> Layout:
    """Real pickle format: dicts with b'batch_label', b'labels', b'data' (N×3072), b'filenames'.
    data_batch_1 is written at protocol 2 with numpy 1's module names (as the official files),
    data_batch_2 at protocol 5 (numpy's out-of-band buffers), the others at the default."""
    base = tmp / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels, labels, ids = [], [], []
    for b, name in enumerate(CIFAR_BATCHES):
        lab = [c for c in range(10) for _ in range(per_class_per_batch)]
        rng.shuffle(lab)
        data = rng.integers(0, 256, (len(lab), 3072), dtype=np.uint8)
        files = [f"{CIFAR[c]}_s_{b:02d}{k:04d}.png".encode() for k, c in enumerate(lab)]
        (base / name).write_bytes(cifar_pickle(
            {b"batch_label": f"batch {b}".encode(), b"labels": lab, b"data": data,
             b"filenames": files}, {0: 2, 1: 5}.get(b)))
        pixels.append(data)
        labels += lab
        ids += [f"{name}/{f.decode()}" for f in files]
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR], b"num_cases_per_batch": 10,
                     b"num_vis": 3072}, fh)
    rows = [{"path": f"images/{g:05d}.png", "label": labels[g], "source_id": ids[g]}
            for g in range(len(labels))]
    return Layout(tmp, base, frame(rows), list(CIFAR),
                  {"pixels": np.concatenate(pixels).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)})


# ------------------------------------------------------------------------------------- NUS-WIDE
def nuswide(tmp: pathlib.Path) -> Layout:
    base = tmp / "NUS-WIDE"
    label_sets = {"database": [(0, 3), (5,), (3, 20), (1, 2, 7)], "query": [(20,), (0, 5)]}
    rows = []
    for split, sets in label_sets.items():
        prefix = "database" if split == "database" else "test"
        paths, onehot = [], []
        for k, labels in enumerate(sets):
            rel = f"images/{prefix}_{k:03d}.jpg"
            image(base / rel, k + len(prefix))
            paths.append(("./" + rel) if k == 0 else rel)  # the lineage lists sometimes use ./
            onehot.append(" ".join("1" if j in labels else "0" for j in range(21)))
            rows.append({"path": rel, "labels": " ".join(map(str, labels)), "split": split,
                         "source_id": rel})
        write_lines(base / f"{prefix}_img.txt", paths)
        write_lines(base / f"{prefix}_label_onehot.txt", onehot)
    return Layout(tmp, base, frame(rows), [f"concept_{k:02d}" for k in range(21)])


# -------------------------------------------------------------------------------- Fashion-MNIST
def write_idx(path: pathlib.Path, array: np.ndarray, gz: bool = True) -> None:
    header = (2049 if array.ndim == 1 else 2051).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def fashion_mnist(tmp: pathlib.Path, n_train: int = 12, n_test: int = 5, gz: bool = True) -> Layout:
    base = tmp / "fashion"
    rng = np.random.default_rng(1)
    rows, pixels = [], {}
    for stem, n, split in (("train", n_train, "database"), ("t10k", n_test, "query")):
        img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lab = np.arange(n) % 10
        suffix = ".gz" if gz else ""
        write_idx(base / f"{stem}-images-idx3-ubyte{suffix}", img, gz)
        write_idx(base / f"{stem}-labels-idx1-ubyte{suffix}", lab, gz)
        pixels[stem] = img
        rows += [{"path": f"images/{stem}/{k:05d}.png", "label": int(lab[k]), "split": split,
                  "source_id": f"{stem}:{k}"} for k in range(n)]
    return Layout(base, base, frame(rows), [], {"pixels": pixels})


# ------------------------------------------------------------------------------- damage
def append_lines(path: pathlib.Path, *lines: str) -> int:
    """Append lines to a list file; return the line number of the first one."""
    old = path.read_text().splitlines()
    path.write_text("\n".join([*old, *lines]) + "\n")
    return len(old) + 1


def list_an_image_twice(name: str, lay: Layout) -> tuple[pathlib.Path, int, pathlib.Path, int]:
    """List a database image of `lay` a second time, as a query (test list) entry. Returns (the
    new entry's file, its line, the original entry's file, its line)."""
    b = lay.base
    if name in ("aircraft", "food101", "vegfru"):
        train, test = {"aircraft": ("images_variant_trainval.txt", "images_variant_test.txt"),
                       "food101": ("meta/train.txt", "meta/test.txt"),
                       "vegfru": ("vegfru_list/vegfru_train.txt",
                                  "vegfru_list/vegfru_test.txt")}[name]
        first = (b / train).read_text().splitlines()[0]
        return b / test, append_lines(b / test, first), b / train, 1
    if name == "nuswide":
        path = (b / "database_img.txt").read_text().splitlines()[1]
        row = (b / "database_label_onehot.txt").read_text().splitlines()[1]
        append_lines(b / "test_label_onehot.txt", row)
        return b / "test_img.txt", append_lines(b / "test_img.txt", path), b / "database_img.txt", 2
    if name == "stanford_dogs":
        test = lay.expected[lay.expected.split == "query"]
        train = lay.expected[lay.expected.split == "database"]
        _save_list(b / "lists" / "test_list.mat", [*test.source_id, train.source_id.iloc[0]],
                   [*(test.label + 1), train.label.iloc[0] + 1])
        return b / "lists" / "test_list.mat", len(test) + 1, b / "lists" / "train_list.mat", 1
    # cub200, nabirds: a new image id whose file is that of the first database image
    row = lay.expected[lay.expected.split == "database"].iloc[0]
    first_id = row.source_id
    line = next(k for k, t in enumerate((b / "images.txt").read_text().splitlines(), 1)
                if t.split()[0] == first_id)
    new_id = "999"
    for f in ("image_class_labels.txt", "bounding_boxes.txt"):
        text = next(t for t in (b / f).read_text().splitlines() if t.split()[0] == first_id)
        append_lines(b / f, new_id + text[len(first_id):])
    append_lines(b / "train_test_split.txt", f"{new_id} 0")
    new_line = append_lines(b / "images.txt", f"{new_id} {row.path[len('images/'):]}")
    return b / "images.txt", new_line, b / "images.txt", line


BUILDERS = {"cub200": cub, "nabirds": nabirds, "aircraft": aircraft, "food101": food101,
            "vegfru": vegfru, "stanford_dogs": stanford_dogs, "cifar10": cifar10,
            "nuswide": nuswide, "fashion_mnist": fashion_mnist}
