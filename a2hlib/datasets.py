"""Torch datasets over a prepared manifest or over in-memory arrays, and the image transforms.

Introduced in `notebooks/01_data_preparation.ipynb`. Every dataset follows the item protocol of
docs/ARCHITECTURE.md: `ds[i] -> (FloatTensor 3×S×S normalised with ImageNet mean/std, i)`,
`ds.targets` (LongTensor (N,) or multi-hot FloatTensor (N, C)), `ds.num_classes`, `ds.image_size`.
`i` is the position inside the dataset (what the ADSH loop uses to index its code matrices);
`ds.indices[i]` is the row of the manifest.

Transforms follow docs/METHOD.md §4, scaled to the configured input size S: training uses
RandomResizedCrop(S) + horizontal flip, testing Resize(round(S·256/224)) + CenterCrop(S).
Images are decoded with PIL (torchvision.io cannot decode on the CPU-only install).
"""
from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from a2hlib._compat import torchvision  # noqa: F401  (must precede the torchvision imports)
from a2hlib.manifest import DatasetError, PreparedDataset, read_dataset
from torchvision.transforms import v2  # noqa: E402

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DECODE_TODO = ("restore or re-download the file, or re-run `python -m data_prep` with --skip-bad "
                "to leave it out")


# ------------------------------------------------------------------------------------ transforms
def resize_size(image_size: int) -> int:
    """Short side before the centre crop: 256 for 224, scaled for other input sizes."""
    return int(round(image_size * 256 / 224))


def _finish(steps: list, image_size: int) -> v2.Compose:
    t = v2.Compose([v2.ToImage(), *steps, v2.ToDtype(torch.float32, scale=True),
                    v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    t.image_size = int(image_size)  # read by the datasets, so callers need not repeat it
    return t


def train_transform(image_size: int, scale: tuple[float, float] = (0.08, 1.0)) -> v2.Compose:
    """RandomResizedCrop(image_size, scale) + RandomHorizontalFlip + ImageNet normalisation."""
    return _finish([v2.RandomResizedCrop(image_size, scale=scale, antialias=True),
                    v2.RandomHorizontalFlip()], image_size)


def test_transform(image_size: int) -> v2.Compose:
    """Resize(round(image_size·256/224)) + CenterCrop(image_size) + ImageNet normalisation."""
    return _finish([v2.Resize(resize_size(image_size), antialias=True),
                    v2.CenterCrop(image_size)], image_size)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation of (..., 3, H, W) images; result clamped to [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------- datasets
class ImageDataset(torch.utils.data.Dataset):
    """Shared logic: targets, transform, RGB conversion and the optional decoded-image cache.

    Subclasses implement `_decode(i) -> PIL.Image`. `cache=True` keeps every decoded image in
    memory as uint8, shrunk so its short side is about round(image_size·256/224) (never enlarged);
    the transform then runs on the cached copy. With DataLoader workers each worker fills its own
    cache, so caching pays off with `num_workers=0` or persistent workers.
    """

    def __init__(self, targets, num_classes: int | None, transform: Callable | None = None, *,
                 image_size: int | None = None, cache: bool = False, grayscale_to_rgb: bool = True):
        if isinstance(targets, torch.Tensor):
            t = targets.detach().cpu().clone()
        else:  # a copy: arrays from the manifest may be read-only
            t = torch.as_tensor(np.array(targets))
        if t.ndim == 1:
            self.targets = t.long()
            inferred = int(self.targets.max()) + 1 if len(t) else 0
        elif t.ndim == 2:
            self.targets = t.float()
            inferred = t.shape[1]
        else:
            raise ValueError(f"targets must be (N,) class ids or (N, C) multi-hot, got {tuple(t.shape)}")
        self.num_classes = int(num_classes if num_classes is not None else inferred)
        if image_size is None:
            image_size = getattr(transform, "image_size", None)
        if image_size is None:
            raise ValueError("give image_size=..., or a transform made by train_transform/test_transform")
        self.image_size = int(image_size)
        self.transform = transform if transform is not None else test_transform(self.image_size)
        self.grayscale_to_rgb = grayscale_to_rgb
        self._cache: list[np.ndarray | None] | None = [None] * len(self.targets) if cache else None

    def __len__(self) -> int:
        return len(self.targets)

    def _decode(self, i: int) -> Image.Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def _convert(self, img: Image.Image) -> Image.Image:
        if img.mode == "RGB" or (img.mode == "L" and not self.grayscale_to_rgb):
            return img
        if img.mode in ("P", "PA", "LA", "RGBa"):
            img = img.convert("RGBA")
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F") and not self.grayscale_to_rgb:
            return img.convert("L")
        return img.convert("RGB")

    def load_image(self, i: int) -> Image.Image:
        """The image of item `i` as a PIL image (RGB unless grayscale_to_rgb=False), before the transform."""
        i = int(i)
        if self._cache is not None and self._cache[i] is not None:
            return Image.fromarray(self._cache[i])
        img = self._convert(self._decode(i))
        if self._cache is not None:
            short = resize_size(self.image_size)
            w, h = img.size
            if min(w, h) > short:
                f = short / min(w, h)
                img = img.resize((max(1, round(w * f)), max(1, round(h * f))),
                                 Image.Resampling.BILINEAR, reducing_gap=3.0)
            self._cache[i] = np.asarray(img, dtype=np.uint8).copy()
        return img

    def __getitem__(self, i: int):
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        i %= len(self)
        return self.transform(self.load_image(i)), i


class ManifestDataset(ImageDataset):
    """The images of one or more splits of a prepared dataset (`a2hlib.manifest.read_dataset`).

    `prepared`: a PreparedDataset or its folder; `split`: 'database', 'query', 'val' or several.
    Extra attributes: `indices` (manifest rows, int64), `frame` (those rows of the manifest),
    `prepared`, `split`, `image_path(i)`.
    """

    def __init__(self, prepared: PreparedDataset | str | os.PathLike, split: str | Iterable[str],
                 transform: Callable | None = None, *, image_size: int | None = None,
                 cache: bool = False, grayscale_to_rgb: bool = True):
        if not isinstance(prepared, PreparedDataset):
            prepared = read_dataset(prepared)
        self.prepared = prepared
        self.split = split if isinstance(split, str) else tuple(split)
        self.indices = prepared.indices(self.split)
        self.frame = prepared.frame.iloc[self.indices].reset_index(drop=True)
        self._paths = self.frame["path"].tolist()
        super().__init__(prepared.targets(self.indices), prepared.num_classes, transform,
                         image_size=image_size, cache=cache, grayscale_to_rgb=grayscale_to_rgb)

    def image_path(self, i: int) -> pathlib.Path:
        return self.prepared.image_root / self._paths[int(i)]

    def _decode(self, i: int) -> Image.Image:
        if not self._paths[i]:
            raise DatasetError(f"manifest row {int(self.indices[i])} has no image path",
                               "this dataset stores no image files; use its in-memory arrays",
                               file=self.prepared.root / "manifest.csv",
                               line=int(self.indices[i]) + 2)
        return decode_image(self.image_path(i),
                            draft=resize_size(self.image_size) if self._cache is not None else None)


class ArrayDataset(ImageDataset):
    """Images held in memory: uint8 array (N, H, W, 3) or grayscale (N, H, W) / (N, H, W, 1)."""

    def __init__(self, images, targets, transform: Callable | None = None, *,
                 num_classes: int | None = None, image_size: int | None = None,
                 grayscale_to_rgb: bool = True):
        images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {images.dtype}")
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
            raise ValueError(f"images must be (N, H, W, 3) or (N, H, W), got {images.shape}")
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.indices = np.arange(len(images), dtype=np.int64)
        super().__init__(targets, num_classes, transform, image_size=image_size, cache=False,
                         grayscale_to_rgb=grayscale_to_rgb)

    def _decode(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i])


def decode_image(path: str | os.PathLike, draft: int | None = None) -> Image.Image:
    """Open and fully decode an image with PIL; a missing, corrupt or truncated file raises
    `DatasetError` naming it. `draft`: let JPEG decode at a reduced scale with short side >= draft."""
    try:
        with Image.open(path) as im:
            if draft is not None and im.format == "JPEG":
                im.draft("RGB", (draft, draft))
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise DatasetError("image file not found", _DECODE_TODO, file=path) from None
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        raise DatasetError(f"cannot decode image, corrupt or truncated ({type(err).__name__}: {err})",
                           _DECODE_TODO, file=path) from None


def build_dataset(source: PreparedDataset | str | os.PathLike, split: str | Sequence[str],
                  image_size: int, train: bool, *, scale: tuple[float, float] = (0.08, 1.0),
                  cache: bool = False, grayscale_to_rgb: bool = True) -> ManifestDataset:
    """A ManifestDataset over a prepared dataset folder with the train or the test transform."""
    t = train_transform(image_size, scale) if train else test_transform(image_size)
    return ManifestDataset(source, split, t, cache=cache, grayscale_to_rgb=grayscale_to_rgb)


# ---------------------------------------------------------------------------------- mask geometry
# Masks and boxes go through the same geometry as the images (the test transform), so that
# attribution maps can be scored against them (`notebooks/04_simplicity_bias.ipynb`).
def _test_geometry(width: float, height: float, image_size: int) -> tuple[float, float, int, int]:
    """(x scale, y scale, crop left, crop top) of the test transform (Resize short side, CenterCrop),
    computed as torchvision does."""
    r = resize_size(image_size)
    w, h = int(width), int(height)
    short, long = min(w, h), max(w, h)
    if short == r:
        nw, nh = w, h
    else:
        ns, nl = r, int(r * long / short)
        nw, nh = (ns, nl) if w <= h else (nl, ns)
    left, top = int(round((nw - image_size) / 2.0)), int(round((nh - image_size) / 2.0))
    return nw / w, nh / h, left, top


def transform_mask(masks, image_size: int) -> np.ndarray:
    """Masks (…×H×W, at the stored image's resolution) through the test transform: bilinear
    (antialiased) resize of the short side to round(S·256/224), centre crop S, threshold 0.5."""
    m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    lead, (h, w) = m.shape[:-2], m.shape[-2:]
    sx, sy, left, top = _test_geometry(w, h, image_size)
    nw, nh = int(round(w * sx)), int(round(h * sy))
    t = torch.as_tensor(m.reshape(-1, 1, h, w).astype(np.float32))
    if (nh, nw) != (h, w):
        t = torch.nn.functional.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    t = t[..., top:top + image_size, left:left + image_size]
    return (t >= 0.5).numpy().reshape(*lead, image_size, image_size)


def box_mask(boxes, sizes, image_size: int) -> np.ndarray:
    """N×S×S masks of bounding boxes (N×4: x, y, w, h in original pixels, CUB's bounding_boxes.txt)
    of images of original `sizes` (N×2: width, height), after the test transform."""
    boxes, sizes = np.atleast_2d(np.asarray(boxes, float)), np.atleast_2d(np.asarray(sizes, float))
    c = np.arange(image_size) + 0.5
    out = np.zeros((len(boxes), image_size, image_size), bool)
    for i, ((x, y, bw, bh), (w, h)) in enumerate(zip(boxes, sizes)):
        sx, sy, left, top = _test_geometry(w, h, image_size)
        cols = (c >= x * sx - left) & (c < (x + bw) * sx - left)
        rows = (c >= y * sy - top) & (c < (y + bh) * sy - top)
        out[i] = rows[:, None] & cols[None, :]
    return out


def point_masks(xyv, sizes, image_size: int, radius: float) -> np.ndarray:
    """N×P×S×S disks of `radius` output pixels around part locations (N×P×3: x, y, visible, in
    original pixels; CUB's part_locs.txt) after the test transform; invisible parts are empty."""
    xyv, sizes = np.asarray(xyv, float), np.atleast_2d(np.asarray(sizes, float))
    c = np.arange(image_size) + 0.5
    out = np.zeros((xyv.shape[0], xyv.shape[1], image_size, image_size), bool)
    for i, (w, h) in enumerate(sizes):
        sx, sy, left, top = _test_geometry(w, h, image_size)
        for p, (x, y, v) in enumerate(xyv[i]):
            if v > 0:
                px, py = x * sx - left, y * sy - top
                out[i, p] = (c[:, None] - py) ** 2 + (c[None, :] - px) ** 2 <= radius ** 2
    return out


def dataset_masks(prepared, rows, image_size: int, part_radius: float = 0.08) -> dict[str, Any] | None:
    """Object, part and shortcut masks (after the test transform) of manifest `rows`:
    from masks.npz (the built-in dataset) or else from the bounding boxes and part locations
    (CUB; disks of radius part_radius·S). None when the dataset has neither.
    Keys: object (n×S×S), parts (n×P×S×S) or None, part_names, shortcut or None, source."""
    rows = np.asarray(rows)
    names = prepared.info.get("part_names") or []
    stored = prepared.masks()
    if stored is not None and "object" in stored:
        return {"object": transform_mask(stored["object"][rows], image_size),
                "parts": transform_mask(stored["parts"][rows], image_size) if "parts" in stored else None,
                "part_names": list(names),
                "shortcut": transform_mask(stored["shortcut"][rows], image_size) if "shortcut" in stored else None,
                "source": "masks.npz"}
    frame = prepared.frame.iloc[rows]
    if not {"bbox_x", "bbox_y", "bbox_w", "bbox_h"} <= set(frame.columns):
        return None
    from PIL import Image
    sizes = []
    for r in rows:
        with Image.open(prepared.image_path(int(r))) as im:  # reads the header only
            sizes.append(im.size)
    out = {"object": box_mask(frame[["bbox_x", "bbox_y", "bbox_w", "bbox_h"]].to_numpy(float), sizes, image_size),
           "parts": None, "part_names": list(names), "shortcut": None, "source": "bounding boxes"}
    parts = prepared.parts()
    if parts is not None:
        out["parts"] = point_masks(parts["xyv"][rows], sizes, image_size, part_radius * image_size)
        out["source"] = "bounding boxes + part locations"
    return out
