"""a2hlib.datasets: transforms, ManifestDataset, ArrayDataset, build_dataset."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from a2hlib.datasets import (IMAGENET_MEAN, IMAGENET_STD, ArrayDataset, ManifestDataset,
                             build_dataset, decode_image, denormalize, resize_size, train_transform)
from a2hlib.datasets import test_transform as eval_transform  # not collected as a test
from a2hlib.manifest import DatasetError, read_dataset, write_dataset
try:
    from tests.layouts import truncate
except ImportError:  # pytest run from elsewhere: tests/ itself is on sys.path
    from layouts import truncate


@pytest.fixture
def prepared(tmp_path):
    """6 images of mixed formats and modes: RGB JPEG, grayscale PNG, palette PNG, RGBA PNG."""
    root = tmp_path / "ds"
    (root / "im").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for k in range(6):
        arr = rng.integers(0, 256, (20 + k, 30, 3), dtype=np.uint8)
        img = Image.fromarray(arr)
        name, img = [("a.jpg", img), ("g.png", img.convert("L")), ("p.png", img.convert("P")),
                     ("t.png", img.convert("RGBA"))][k % 4]
        img.save(root / "im" / f"{k}{name}")
        rows.append({"path": f"im/{k}{name}", "label": k % 2,
                     "split": ["database", "query", "database"][k % 3]})
    info = {"name": "mix", "num_classes": 2, "class_names": ["x", "y"], "multi_label": False}
    return read_dataset(write_dataset(root, pd.DataFrame(rows), info))


def test_transforms_shapes_and_sizes():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 80, 3), dtype=np.uint8))
    t = eval_transform(32)
    x = t(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and t.image_size == 32
    assert torch.equal(x, t(img))  # deterministic
    assert resize_size(224) == 256 and resize_size(112) == 128 and resize_size(64) == 73
    tt = train_transform(24, scale=(0.5, 1.0))
    assert tt.image_size == 24 and tt(img).shape == (3, 24, 24)
    torch.manual_seed(0)
    assert not torch.equal(tt(img), tt(img))  # random crops and flips
    # centre crop of a resized image: resize short side 50 -> 37 (round(32*256/224)), crop 32
    ref = np.asarray(img.resize((59, 37), Image.Resampling.BILINEAR), dtype=np.float32)[2:34, 14:46]
    ref = (ref / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.abs(x.permute(1, 2, 0).numpy() - ref).mean() < 0.05


def test_denormalize_inverts_the_normalisation():
    raw = torch.rand(2, 3, 5, 5)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(denormalize((raw - mean) / std), raw, atol=1e-6)
    assert denormalize(torch.full((3, 2, 2), 10.0)).max() == 1.0


def test_manifest_dataset_protocol(prepared):
    ds = ManifestDataset(prepared, "database", eval_transform(16))
    np.testing.assert_array_equal(ds.indices, [0, 2, 3, 5])
    assert len(ds) == 4 and ds.num_classes == 2 and ds.image_size == 16
    assert ds.targets.dtype == torch.int64 and ds.targets.tolist() == [0, 0, 1, 1]
    assert ds.frame["path"].tolist() == ["im/0a.jpg", "im/2p.png", "im/3t.png", "im/5g.png"]
    for i in range(len(ds)):
        x, j = ds[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and j == i
    assert {ds.load_image(i).mode for i in range(4)} == {"RGB"}
    assert ds[-1][1] == 3
    with pytest.raises(IndexError):
        ds[4]
    xb, ib = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert xb.shape == (3, 3, 16, 16) and ib.tolist() == [0, 1, 2]
    both = ManifestDataset(prepared.root, ["database", "query"], image_size=8)
    assert len(both) == 6 and both[0][0].shape == (3, 8, 8)  # default: the test transform
    gray = ManifestDataset(prepared, "database", grayscale_to_rgb=False, image_size=8)
    assert gray.load_image(3).mode == "L" and gray.load_image(1).mode == "RGB"
    with pytest.raises(ValueError, match="image_size"):
        ManifestDataset(prepared, "query", lambda im: im)


def test_cache_keeps_shrunken_uint8_images(prepared, tmp_path):
    big = Image.fromarray(np.full((300, 400, 3), 128, np.uint8))
    big.save(prepared.image_path(0), quality=90)
    ds = ManifestDataset(prepared, "database", train_transform(32), cache=True)
    first = ds.load_image(0)
    assert min(first.size) == resize_size(32) and first.size == (49, 37)
    assert ds._cache[0].dtype == np.uint8 and ds._cache[0].shape == (37, 49, 3)
    small = ds.load_image(1)  # never enlarged
    assert small.size == (30, 22)
    prepared.image_path(0).unlink()
    assert ds[0][0].shape == (3, 32, 32)  # served from the cache
    with pytest.raises(DatasetError):
        ManifestDataset(prepared, "database", image_size=32)[0]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_bad_image_at_load_time_names_the_file(prepared, damage):
    path = prepared.image_path(0)
    {"truncate": lambda: truncate(path, 0.4), "garbage": lambda: path.write_bytes(b"\0" * 50),
     "missing": path.unlink}[damage]()
    ds = build_dataset(prepared, "database", 16, train=False)
    with pytest.raises(DatasetError) as err:
        ds[0]
    assert str(err.value).startswith(str(path) + ": ")
    assert "--skip-bad" in str(err.value)
    assert ds[1][0].shape == (3, 16, 16)
    with pytest.raises(DatasetError):
        decode_image(path)


def test_multi_label_targets(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    f = pd.DataFrame({"path": ["a.png"] * 3, "labels": ["0 2", "1", "2"],
                      "split": ["database", "query", "database"]})
    info = {"name": "m", "num_classes": 3, "class_names": list("abc"), "multi_label": True}
    ds = build_dataset(write_dataset(tmp_path, f, info), "database", 8, train=True)
    assert ds.targets.dtype == torch.float32 and ds.targets.tolist() == [[1, 0, 1], [0, 0, 1]]
    assert ds.num_classes == 3 and ds[1][0].shape == (3, 8, 8)


def test_array_dataset():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 12, 10, 3), dtype=np.uint8)
    ds = ArrayDataset(rgb, [0, 1, 2, 1, 0], eval_transform(8))
    assert len(ds) == 5 and ds.num_classes == 3 and ds.image_size == 8
    x, i = ds[4]
    assert x.shape == (3, 8, 8) and i == 4 and ds.targets.dtype == torch.int64
    np.testing.assert_array_equal(np.asarray(ds.load_image(2)), rgb[2])
    gray = ArrayDataset(torch.from_numpy(rgb[..., 0]), torch.tensor([0, 1, 0, 1, 0]),
                        train_transform(6), num_classes=4)
    assert gray.load_image(0).mode == "RGB" and gray[0][0].shape == (3, 6, 6)
    assert gray.num_classes == 4
    multi = ArrayDataset(rgb[..., :1], np.eye(5, 7), image_size=4)
    assert multi.targets.dtype == torch.float32 and multi.num_classes == 7
    with pytest.raises(ValueError, match="uint8"):
        ArrayDataset(rgb.astype(np.float32), [0] * 5, image_size=4)
    with pytest.raises(ValueError, match="targets"):
        ArrayDataset(rgb, [0] * 4, image_size=4)
