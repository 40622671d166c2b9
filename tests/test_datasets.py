"""a2hlib.datasets: transforms, ManifestDataset, ArrayDataset, build_dataset."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from a2hlib.datasets import (IMAGENET_MEAN, IMAGENET_STD, ArrayDataset, BatchFeed, ImageDataset,
                             ManifestDataset, build_dataset, decode_image, denormalize,
                             faithful_short_side, normalize, resize_size, train_transform)
from a2hlib.datasets import test_transform as eval_transform  # not collected as a test
from a2hlib import datasets
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


def test_faithful_short_side():
    assert faithful_short_side(224) == 915 and faithful_short_side(32) == 131
    assert faithful_short_side(64, 0.6) == 96
    # the smallest crop RandomResizedCrop may take from a 915-px square covers 224 px on each side
    assert int(round(math.sqrt(0.08 * 915 ** 2 * 3 / 4))) >= 224


def test_cache_decodes_once_into_one_shared_file(prepared, monkeypatch):
    big = Image.fromarray(np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    big.save(prepared.image_path(0), quality=90)
    ds = ManifestDataset(prepared, "database", train_transform(32), cache=True)
    cache = ds.ensure_cache()
    assert cache.data_path.parent == prepared.root / "cache" and cache.index_path.exists()
    # short side capped at faithful_short_side(32) = 131; smaller images kept as they are
    assert cache[0].shape == (131, 175, 3) and cache[1].shape == (22, 30, 3)
    assert ds.load_image(0).size == (175, 131)
    np.testing.assert_array_equal(cache[1], np.asarray(decode_image(prepared.image_path(2)).convert("RGB")))
    assert cache[3].shape == (25, 30, 3)  # grayscale PNG converted to RGB before caching
    assert cache.nbytes == sum(cache[i].nbytes for i in range(4))
    assert len(pickle.dumps(ds)) < cache.nbytes / 2  # workers map the file, pixels never travel
    # a second dataset (another run, a worker) opens the file without decoding anything
    monkeypatch.setattr(datasets, "decode_image", lambda *a, **k: pytest.fail("decoded again"))
    again = ManifestDataset(prepared, "database", eval_transform(32), cache=True)
    assert again.ensure_cache().stem == cache.stem and again[0][0].shape == (3, 32, 32)
    monkeypatch.undo()
    # a changed image file gives a new cache; the stale one is removed
    big.save(prepared.image_path(0), quality=50)
    fresh = ManifestDataset(prepared, "database", train_transform(32), cache=True).ensure_cache()
    assert fresh.stem != cache.stem and not cache.data_path.exists() and not cache.index_path.exists()


def test_cache_built_by_workers_is_the_same(prepared, tmp_path):
    one = ManifestDataset(prepared, ["database", "query"], eval_transform(16), cache=tmp_path / "a").ensure_cache()
    two = ManifestDataset(prepared, ["database", "query"], eval_transform(16),
                          cache=tmp_path / "b").ensure_cache(num_workers=2)
    assert one.data_path.read_bytes() == two.data_path.read_bytes()
    np.testing.assert_array_equal(np.load(one.index_path), np.load(two.index_path))


def test_failed_cache_build_names_the_file_and_leaves_nothing(prepared):
    truncate(prepared.image_path(2), 0.4)
    ds = ManifestDataset(prepared, "database", image_size=16, cache=True)
    with pytest.raises(DatasetError, match=str(prepared.image_path(2))):
        ds.ensure_cache()
    assert list((prepared.root / "cache").iterdir()) == []


def test_array_dataset_refuses_a_file_cache():
    with pytest.raises(ValueError, match="cache=False"):
        ImageDataset(np.zeros(2), None, image_size=8, cache=True)


@pytest.mark.parametrize("train", [True, False])
def test_uint8_path_gives_the_same_pixels_as_the_pil_path(prepared, device, train):
    """Same random state -> same crop and flip; normalising the uint8 crop (on `device`) gives the
    item path's tensor exactly: both run ToImage's pixels through the same torchvision steps, then
    the same float32 operations (x·(1/255) − mean) / std, each correctly rounded on CPU and CUDA."""
    big = Image.fromarray(np.random.default_rng(3).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    big.save(prepared.image_path(0), quality=90)
    make = (lambda: train_transform(24, scale=(0.08, 1.0))) if train else (lambda: eval_transform(24))
    plain = ManifestDataset(prepared, ["database", "query"], make())
    cached = ManifestDataset(prepared, ["database", "query"], make(), cache=True)
    for seed in range(8):
        for i in range(len(plain)):
            torch.manual_seed(seed)
            expected = plain[i][0]
            torch.manual_seed(seed)
            image, j = cached.uint8_item(i)
            assert image.dtype == torch.uint8 and j == i
            assert torch.equal(normalize(image.to(device)).cpu(), expected), (seed, i)
    with pytest.raises(ValueError, match="train_transform"):
        ManifestDataset(prepared, "query", lambda im: im, image_size=8).uint8_item(0)


def test_batch_feed_seeds_each_batch_and_leaves_the_caller_rng_alone(prepared):
    ds = ManifestDataset(prepared, ["database", "query"], train_transform(16))
    feed = BatchFeed(ds)
    assert feed.uint8 and not BatchFeed(ds, uint8=False).uint8
    state = torch.get_rng_state()
    images, indices = feed[(7, [4, 0, 2])]
    assert torch.equal(torch.get_rng_state(), state)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.uint8 and indices.tolist() == [4, 0, 2]
    torch.manual_seed(7)
    assert all(torch.equal(images[k], ds.uint8_item(i)[0]) for k, i in enumerate([4, 0, 2]))
    floats, _ = BatchFeed(ds, uint8=False)[(7, [4, 0, 2])]
    assert torch.equal(normalize(images), floats)
    assert not torch.equal(feed[(8, [4, 0, 2])][0], images)
    with pytest.raises(ValueError, match="no uint8 items"):
        BatchFeed(torch.utils.data.TensorDataset(torch.zeros(2)), uint8=True)


def test_encode_uses_uint8_items_with_the_same_codes(prepared):
    from a2hlib.models import build_model, encode
    torch.manual_seed(0)
    model = build_model("a2net", 6, num_parts=2, image_size=16).eval()
    ds = ManifestDataset(prepared, ["database", "query"], eval_transform(16), cache=True)
    reference = torch.cat([model(torch.stack([ds[i][0] for i in range(s, min(s + 4, len(ds)))]))
                           for s in range(0, len(ds), 4)])
    assert torch.equal(encode(model, ds, batch_size=4), reference)


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
