"""Mask geometry (a2hlib.datasets): masks, boxes and part locations go through the same test
transform as the images, checked against torchvision's transform of drawn images."""
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from a2hlib.datasets import box_mask, dataset_masks, point_masks, transform_mask
from a2hlib.datasets import test_transform as eval_transform


def _box_image(size, box, colour=(255, 255, 255)):
    img = Image.new("RGB", size)
    x, y, w, h = box
    ImageDraw.Draw(img).rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
    return img


@pytest.mark.parametrize("size,box", [((200, 100), (60, 20, 50, 40)), ((90, 150), (10, 70, 30, 60)),
                                      ((64, 64), (8, 8, 20, 30))])
def test_box_and_transform_masks_follow_the_test_transform(size, box):
    s = 32
    seen = eval_transform(s)(_box_image(size, box))[0] > 0  # white (normalised > 0) where the box is
    mask = box_mask(box, size, s)[0]
    assert (mask & seen.numpy()).sum() / (mask | seen.numpy()).sum() > 0.85
    stored = np.zeros(size[::-1], bool)
    stored[box[1]:box[1] + box[3], box[0]:box[0] + box[2]] = True
    moved = transform_mask(stored[None], s)[0]
    assert (moved & mask).sum() / (moved | mask).sum() > 0.85


def test_point_masks_are_disks_around_visible_parts():
    size, s = (200, 100), 32
    xyv = np.array([[[100.0, 50.0, 1.0], [10.0, 10.0, 0.0]]])
    masks = point_masks(xyv, [size], s, radius=3)
    assert masks.shape == (1, 2, s, s) and not masks[0, 1].any()
    ys, xs = np.nonzero(masks[0, 0])
    # (100, 50) of a 200×100 image is its centre: the centre of the crop
    assert xs.mean() == pytest.approx(s / 2 - 0.5, abs=0.6) and ys.mean() == pytest.approx(s / 2 - 0.5, abs=0.6)
    assert len(xs) == pytest.approx(math.pi * 9, rel=0.25)


def test_dataset_masks_from_masks_npz_and_from_boxes(tmp_path):
    import pandas as pd

    from a2hlib import manifest, synthetic
    data = synthetic.load("smoke", num_classes=2, database_per_class=2, query_per_class=1)
    prepared = manifest.read_dataset(synthetic.write_to_disk(data, tmp_path / "syn"))
    rows = prepared.indices("query")
    out = dataset_masks(prepared, rows, 32)
    assert out["source"] == "masks.npz" and out["object"].shape == (2, 32, 32)
    assert out["parts"].shape == (2, len(synthetic.PART_NAMES), 32, 32)
    # CUB style: bounding boxes in the manifest, part locations in parts.npz
    root = tmp_path / "cub"
    with manifest.staging_dir(root) as tmp:
        for i in range(2):
            _box_image((60, 40), (10, 5, 20, 20)).save(tmp / f"{i}.png")
        frame = pd.DataFrame({"index": [0, 1], "path": ["images/0.png", "images/1.png"], "label": [0, 1],
                              "split": ["database", "query"], "bbox_x": [10.0] * 2, "bbox_y": [5.0] * 2,
                              "bbox_w": [20.0] * 2, "bbox_h": [20.0] * 2})
        info = {"name": "cubish", "format_version": 1, "image_root": ".", "num_classes": 2,
                "class_names": ["a", "b"], "multi_label": False, "official_counts": None,
                "count_differences": [], "attribute_names": None, "part_names": ["beak", "tail"],
                "skipped": [], "created_by": "test", "seed": 0}
        xyv = np.array([[[20, 15, 1], [0, 0, 0]]] * 2, np.float32)
        manifest.write_dataset(root, frame, info, {"parts": {"xyv": xyv}}, image_dir=tmp)
    cub = manifest.read_dataset(root)
    out = dataset_masks(cub, [1], 32, part_radius=0.1)
    assert out["source"] == "bounding boxes + part locations" and out["shortcut"] is None
    seen = eval_transform(32)(_box_image((60, 40), (10, 5, 20, 20)))[0] > 0
    assert (out["object"][0] & seen.numpy()).sum() / (out["object"][0] | seen.numpy()).sum() > 0.85
    assert out["parts"].shape == (1, 2, 32, 32) and out["parts"][0, 0].any() and not out["parts"][0, 1].any()
