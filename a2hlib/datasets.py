"""Torch datasets over a prepared manifest or over in-memory arrays, the image transforms, the
decode-once image cache and the batch feed of the training loop.

Introduced in `notebooks/01_data_preparation.ipynb`. Every dataset follows the item protocol of
docs/ARCHITECTURE.md: `ds[i] -> (FloatTensor 3×S×S normalised with ImageNet mean/std, i)`,
`ds.targets` (LongTensor (N,) or multi-hot FloatTensor (N, C)), `ds.num_classes`, `ds.image_size`.
`i` is the position inside the dataset (what the ADSH loop uses to index its code matrices);
`ds.indices[i]` is the row of the manifest.

Transforms follow docs/METHOD.md §4, scaled to the configured input size S: training uses
RandomResizedCrop(S) + horizontal flip, testing Resize(round(S·256/224)) + CenterCrop(S).
Images are decoded with PIL (torchvision.io cannot decode on the CPU-only install).

The fast path beside the item protocol (used by `a2hlib.training.train` and `a2hlib.models.encode`):
`ds.uint8_item(i) -> (uint8 tensor C×S×S, i)` runs the same geometric steps on the uint8 image
and leaves the conversion to float and the normalisation to the consumer's device (`normalize`,
bit-identical to the transform's own `ToDtype` + `Normalize`); `BatchFeed` serves whole batches
of such items to one DataLoader.

Decode-once cache (`cache=True`): every image is decoded once into one uint8 file that is
memory-mapped by every process (DataLoader workers, later outer iterations, later runs), see
`ImageCache`. Images are stored at their original size unless their short side exceeds
`faithful_short_side(S)` = ceil(S / sqrt(0.08 · 3/4)) (915 px for S = 224): below that bound a
RandomResizedCrop of scale ≥ 0.08 and ratio in [3/4, 4/3] covers at least S pixels of the stored copy
on each side, so crops from a shrunken copy equal crops from the original in distribution (they
differ only by the resampling filter), and an image stored at its original size gives
pixel-identical crops. At S = 224 that keeps every CUB-200-2011 image (at most 500 px) and every
Food-101 image (at most 512 px) at its original size: CUB, 11,788 images of about 470×380 px,
takes about 11,788 · 470 · 380 · 3 B ≈ 6.3 GB (the training split, 5,994 images, ≈ 3.2 GB);
Food-101, 101,000 images of at most 512×512, takes at most 79 GB (≈ 60 GB at a typical 512×384;
its training split of 75,750 images ≈ 45 GB). `cache_short_side=` trades fidelity for space.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pathlib
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from a2hlib._compat import torchvision  # noqa: F401  (must precede the torchvision imports)
from a2hlib.fileio import atomic_write, save_array
from a2hlib.manifest import DatasetError, PreparedDataset, read_dataset
from torchvision.transforms import v2  # noqa: E402

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MIN_SCALE = 0.08   # RandomResizedCrop's default smallest area fraction (the paper's)
_MAX_RATIO = 4 / 3         # RandomResizedCrop's default aspect-ratio range is [3/4, 4/3]
CACHE_FORMAT = 1
_DECODE_TODO = ("restore or re-download the file, or re-run `python -m data_prep` with --skip-bad "
                "to leave it out")


# ------------------------------------------------------------------------------------ transforms
def resize_size(image_size: int) -> int:
    """Short side before the centre crop: 256 for 224, scaled for other input sizes."""
    return int(round(image_size * 256 / 224))


def _finish(steps: list, image_size: int, crop_scale: tuple[float, float] | None = None) -> v2.Compose:
    uint8_steps = v2.Compose(steps)
    t = v2.Compose([v2.ToImage(), uint8_steps, v2.ToDtype(torch.float32, scale=True),
                    v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    t.image_size = int(image_size)  # read by the datasets, so callers need not repeat it
    t.uint8_steps = uint8_steps     # the geometric part alone, for uint8 tensors (`uint8_item`)
    t.crop_scale = crop_scale       # sizes the decode-once cache (`faithful_short_side`)
    return t


def train_transform(image_size: int, scale: tuple[float, float] = (0.08, 1.0)) -> v2.Compose:
    """RandomResizedCrop(image_size, scale) + RandomHorizontalFlip + ImageNet normalisation."""
    return _finish([v2.RandomResizedCrop(image_size, scale=scale, antialias=True),
                    v2.RandomHorizontalFlip()], image_size, tuple(scale))


def test_transform(image_size: int) -> v2.Compose:
    """Resize(round(image_size·256/224)) + CenterCrop(image_size) + ImageNet normalisation."""
    return _finish([v2.Resize(resize_size(image_size), antialias=True),
                    v2.CenterCrop(image_size)], image_size)


_STATS: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def imagenet_stats(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet (mean, std) as 3×1×1 tensors on `device`, made once per device and dtype (so a
    training step copies nothing from the host)."""
    key = (torch.device(device), dtype)
    if key not in _STATS:
        _STATS[key] = tuple(torch.tensor(v, dtype=dtype).view(3, 1, 1).to(key[0])
                            for v in (IMAGENET_MEAN, IMAGENET_STD))
    return _STATS[key]


def normalize(images: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 (..., 3, H, W) images to float32 normalised with ImageNet mean/std, on their device.

    The same operations in the same order as `ToDtype(float32, scale=True)` + `Normalize` of the
    transforms, so the result is bit-identical to the item path. `stats`: `imagenet_stats(device)`."""
    mean, std = stats if stats is not None else imagenet_stats(images.device)
    return images.to(torch.float32).mul_(1.0 / 255).sub_(mean).div_(std)


def model_input(images: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                channels_last: bool = False) -> torch.Tensor:
    """A `BatchFeed` batch, already on its device, as the model's input: uint8 images normalised
    there (`normalize`), float images as they are; `channels_last` memory format on request (CUDA)."""
    if images.dtype == torch.uint8:
        images = normalize(images, stats)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def denormalize(x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Undo the ImageNet normalisation of (..., 3, H, W) images; result clamped to [0, 1]."""
    mean, std = stats if stats is not None else imagenet_stats(x.device, x.dtype)
    return (x * std + mean).clamp(0.0, 1.0)


def faithful_short_side(image_size: int, min_scale: float = DEFAULT_MIN_SCALE) -> int:
    """The smallest stored short side L at which every RandomResizedCrop(image_size, scale ≥
    min_scale, ratio in [3/4, 4/3]) still covers ≥ image_size stored pixels on each side:
    a crop of area fraction s and ratio r has sides ≥ sqrt(s·L²·3/4), hence
    L = ceil(image_size / sqrt(min_scale · 3/4)) (915 for 224 px and scale 0.08)."""
    return math.ceil(image_size / math.sqrt(min_scale / _MAX_RATIO))


# ---------------------------------------------------------------------------- decode-once cache
class ImageCache:
    """Decoded images as uint8 in one memory-mapped file: `<stem>.u8` holds the pixels (H×W×C
    each, back to back) and `<stem>.index.npy` one row (offset, height, width, channels) per image.

    `ImageCache.write` writes the pixels first and the index last, each atomically, so an index
    exists only for a complete file. Readers map the file copy-on-write when they open it; a
    pickled cache (a DataLoader worker) maps it again, so all processes share the operating
    system's page cache. `ImageDataset(cache=True)` makes and uses one (`notebooks/01_data_preparation.ipynb`).
    """

    def __init__(self, stem: str | os.PathLike):
        self.stem = pathlib.Path(stem)
        self.index = np.load(self.index_path)  # FileNotFoundError when not (fully) written
        end = int(self.index[-1, 0] + self.index[-1, 1:].prod()) if len(self.index) else 0
        size = self.data_path.stat().st_size
        if size != end:
            raise ValueError(f"{self.data_path} has {size} bytes, its index says {end}; "
                             "delete both files and build the cache again")
        self._data: np.memmap | None = self._map()

    def _map(self) -> np.memmap | None:
        return np.memmap(self.data_path, dtype=np.uint8, mode="c") if len(self.index) else None

    @property
    def data_path(self) -> pathlib.Path:
        return self.stem.with_name(self.stem.name + ".u8")

    @property
    def index_path(self) -> pathlib.Path:
        return self.stem.with_name(self.stem.name + ".index.npy")

    @property
    def nbytes(self) -> int:
        return self.data_path.stat().st_size

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        """Image `i` as an H×W×C uint8 view of the mapped file (writes stay in this process)."""
        if self._data is None:
            self._data = self._map()
        offset, h, w, c = (int(v) for v in self.index[i])
        return self._data[offset:offset + h * w * c].reshape(h, w, c)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": None}  # never pickle the pixels; map them again

    @classmethod
    def write(cls, stem: str | os.PathLike, images: Iterable[np.ndarray], count: int) -> "ImageCache":
        """Store `count` uint8 images (H×W×C or H×W, in order) under `stem`; returns the cache."""
        stem = pathlib.Path(stem)
        index = np.zeros((count, 4), dtype=np.int64)

        def write_pixels(f) -> None:
            offset, i = 0, -1
            for i, arr in enumerate(images):
                arr = np.ascontiguousarray(arr, dtype=np.uint8)
                arr = arr[..., None] if arr.ndim == 2 else arr
                index[i] = (offset, *arr.shape)
                f.write(memoryview(arr).cast("B"))
                offset += arr.nbytes
            if i + 1 != count:
                raise ValueError(f"{stem}: expected {count} images, got {i + 1}")

        data = atomic_write(stem.with_name(stem.name + ".u8"), write_pixels)
        save_array(stem.with_name(stem.name + ".index.npy"), index)
        for old in stem.parent.glob(stem.name.rsplit("-", 1)[0] + "-*.index.npy"):
            if old.name != stem.name + ".index.npy":  # an earlier cache of changed images
                old.unlink(missing_ok=True)
                old.with_name(old.name[:-len(".index.npy")] + ".u8").unlink(missing_ok=True)
        log.info("wrote the image cache %s (%d images, %.1f MB)", data, count, data.stat().st_size / 1e6)
        return cls(stem)


class _CacheSource(torch.utils.data.Dataset):
    """Item i = the decoded, converted and (if needed) shrunken image i as uint8 (H×W[×C])."""

    def __init__(self, dataset: "ImageDataset"):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.dataset._decode_for_cache(i)


# --------------------------------------------------------------------------------------- datasets
class ImageDataset(torch.utils.data.Dataset):
    """Shared logic: targets, transform, RGB conversion, the uint8 fast path and the cache.

    Subclasses implement `_decode(i, draft) -> PIL.Image`; a subclass with files also implements
    `_cache_stem(folder)` (ManifestDataset). `cache`: False, True (a `cache/` folder inside the
    prepared dataset) or a folder; the decode-once file is built on first use, or explicitly with
    `ensure_cache(num_workers)` (what `train` and `encode` do, in parallel). `cache_short_side`:
    stored short side cap (default `faithful_short_side(image_size, min(0.08, crop scale))`).
    """

    def __init__(self, targets, num_classes: int | None, transform: Callable | None = None, *,
                 image_size: int | None = None, cache: bool | str | os.PathLike = False,
                 cache_short_side: int | None = None, grayscale_to_rgb: bool = True):
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
        if cache_short_side is None:
            scale = getattr(self.transform, "crop_scale", None) or (DEFAULT_MIN_SCALE,)
            cache_short_side = faithful_short_side(self.image_size, min(DEFAULT_MIN_SCALE, scale[0]))
        if cache_short_side < 1:
            raise ValueError(f"cache_short_side must be ≥ 1, got {cache_short_side}")
        self.cache_short_side = int(cache_short_side)
        self.cache_dir = None if cache is False else self._default_cache_dir() if cache is True \
            else pathlib.Path(cache)
        self._image_cache: ImageCache | None = None
        self._cache_in_worker_missing = False

    def __len__(self) -> int:
        return len(self.targets)

    def _decode(self, i: int, draft: int | None = None) -> Image.Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def _default_cache_dir(self) -> pathlib.Path:
        raise ValueError(f"{type(self).__name__} keeps no image files to cache; use cache=False")

    def _cache_stem(self, folder: pathlib.Path) -> pathlib.Path:  # pragma: no cover - abstract
        raise NotImplementedError

    def _convert(self, img: Image.Image) -> Image.Image:
        if img.mode == "RGB" or (img.mode == "L" and not self.grayscale_to_rgb):
            return img
        if img.mode in ("P", "PA", "LA", "RGBa"):
            img = img.convert("RGBA")
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F") and not self.grayscale_to_rgb:
            return img.convert("L")
        return img.convert("RGB")

    # ---- the decode-once cache
    def _decode_for_cache(self, i: int) -> np.ndarray:
        short = self.cache_short_side
        img = self._convert(self._decode(i, draft=short))
        w, h = img.size
        if min(w, h) > short:
            f = short / min(w, h)
            img = img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR,
                             reducing_gap=3.0)
        return np.array(img, dtype=np.uint8)

    def ensure_cache(self, num_workers: int = 0) -> ImageCache | None:
        """The decode-once cache (None without `cache`), built now if missing, decoding with
        `num_workers` DataLoader processes. Inside a DataLoader worker a missing cache is not
        built (each worker would decode everything): images are then decoded one by one."""
        if self.cache_dir is None or self._cache_in_worker_missing:
            return None
        if self._image_cache is None:
            stem = self._cache_stem(self.cache_dir)
            try:
                self._image_cache = ImageCache(stem)
            except (FileNotFoundError, ValueError) as err:
                if torch.utils.data.get_worker_info() is not None:
                    log.warning("image cache %s is not built; decoding in the worker (call "
                                "ensure_cache() before starting workers)", stem)
                    self._cache_in_worker_missing = True
                    return None
                if isinstance(err, ValueError):
                    log.warning("%s; rebuilding", err)
                start = time.perf_counter()
                loader = torch.utils.data.DataLoader(_CacheSource(self), batch_size=None,
                                                     num_workers=num_workers, generator=torch.Generator())
                self._image_cache = ImageCache.write(stem, loader, len(self))
                log.info("decoded %d images in %.1f s", len(self), time.perf_counter() - start)
        return self._image_cache

    def _hwc(self, i: int) -> np.ndarray:
        cache = self.ensure_cache()
        if cache is not None:
            return cache[i]
        arr = np.array(self._convert(self._decode(i)), dtype=np.uint8)
        return arr[..., None] if arr.ndim == 2 else arr

    # ---- the item protocol and the uint8 fast path
    def load_image(self, i: int) -> Image.Image:
        """The image of item `i` as a PIL image (RGB unless grayscale_to_rgb=False), before the transform."""
        i = int(i)
        if self.cache_dir is None:
            return self._convert(self._decode(i))
        arr = self._hwc(i)
        return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)

    def uint8_image(self, i: int) -> torch.Tensor:
        """Image `i` as a uint8 C×H×W tensor, the same pixels and memory layout as the transform's
        `ToImage` gives (from the cache when there is one)."""
        return torch.from_numpy(self._hwc(self._check_index(i))).permute(2, 0, 1)

    @property
    def uint8_steps(self) -> Callable | None:
        """The transform's geometric steps for uint8 tensors (transforms made by
        `train_transform` / `test_transform`), or None for other transforms."""
        return getattr(self.transform, "uint8_steps", None)

    def uint8_item(self, i: int) -> tuple[torch.Tensor, int]:
        """`(uint8 C×S×S, i)`: item `i` before conversion to float and normalisation;
        `normalize(image)` equals `self[i][0]` for the same random state."""
        if self.uint8_steps is None:
            raise ValueError("uint8 items need a transform made by train_transform or test_transform, "
                             f"got {type(self.transform).__name__}; use ds[i]")
        i = self._check_index(i)
        return self.uint8_steps(self.uint8_image(i)), i

    def _check_index(self, i: int) -> int:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        return i % len(self)

    def __getitem__(self, i: int):
        i = self._check_index(i)
        return self.transform(self.load_image(i)), i


class ManifestDataset(ImageDataset):
    """The images of one or more splits of a prepared dataset (`a2hlib.manifest.read_dataset`).

    `prepared`: a PreparedDataset or its folder; `split`: 'database', 'query', 'val' or several.
    Extra attributes: `indices` (manifest rows, int64), `frame` (those rows of the manifest),
    `prepared`, `split`, `image_path(i)`. `cache=True` keeps the decode-once file under
    `<dataset folder>/cache/`; it is rebuilt when an image file changes (size or time).
    """

    def __init__(self, prepared: PreparedDataset | str | os.PathLike, split: str | Iterable[str],
                 transform: Callable | None = None, *, image_size: int | None = None,
                 cache: bool | str | os.PathLike = False, cache_short_side: int | None = None,
                 grayscale_to_rgb: bool = True):
        if not isinstance(prepared, PreparedDataset):
            prepared = read_dataset(prepared)
        self.prepared = prepared
        self.split = split if isinstance(split, str) else tuple(split)
        self.indices = prepared.indices(self.split)
        self.frame = prepared.frame.iloc[self.indices].reset_index(drop=True)
        self._paths = self.frame["path"].tolist()
        super().__init__(prepared.targets(self.indices), prepared.num_classes, transform,
                         image_size=image_size, cache=cache, cache_short_side=cache_short_side,
                         grayscale_to_rgb=grayscale_to_rgb)

    def image_path(self, i: int) -> pathlib.Path:
        return self.prepared.image_root / self._paths[int(i)]

    def _default_cache_dir(self) -> pathlib.Path:
        return self.prepared.root / "cache"

    def _cache_stem(self, folder: pathlib.Path) -> pathlib.Path:
        """`<folder>/<name>-<split>-<short side>px-<digest>`; the digest covers the format, the
        settings, and every image's path, size and modification time."""
        h = hashlib.sha1(json.dumps([CACHE_FORMAT, self.cache_short_side, self.grayscale_to_rgb,
                                     str(self.prepared.image_root)]).encode())
        for i, p in enumerate(self._paths):
            try:
                st = os.stat(self.image_path(i))
                h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:  # missing: decoding names the file when the cache is built
                h.update(f"{p}\0missing\n".encode())
        split = self.split if isinstance(self.split, str) else "+".join(self.split)
        return folder / f"{self.prepared.name}-{split}-{self.cache_short_side}px-{h.hexdigest()[:16]}"

    def _decode(self, i: int, draft: int | None = None) -> Image.Image:
        if not self._paths[i]:
            raise DatasetError(f"manifest row {int(self.indices[i])} has no image path",
                               "this dataset stores no image files; use its in-memory arrays",
                               file=self.prepared.root / "manifest.csv",
                               line=int(self.indices[i]) + 2)
        return decode_image(self.image_path(i), draft=draft)


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

    def _decode(self, i: int, draft: int | None = None) -> Image.Image:
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
                  cache: bool | str | os.PathLike = False, cache_short_side: int | None = None,
                  grayscale_to_rgb: bool = True) -> ManifestDataset:
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


    return ManifestDataset(source, split, t, cache=cache, cache_short_side=cache_short_side,
                           grayscale_to_rgb=grayscale_to_rgb)


# ------------------------------------------------------------------------------ the batch feed
def has_uint8_items(dataset) -> bool:
    """True when `dataset` offers the uint8 fast path (`uint8_item`, a transform of ours)."""
    return getattr(dataset, "uint8_steps", None) is not None and hasattr(dataset, "uint8_item")


class BatchFeed(torch.utils.data.Dataset):
    """Whole batches for a DataLoader with `batch_size=None`: `feed[(seed, indices)] -> (images,
    indices)` with `indices` a LongTensor.

    `uint8` (default: when the dataset has uint8 items): images are the uint8 crops B×C×S×S and
    the consumer converts them on its device with `normalize`; otherwise the dataset's float items
    stacked. The random draws of the augmentation come from `torch.manual_seed(seed)` inside
    `torch.random.fork_rng`: a batch is the same in whichever process it is made, and the
    caller's random state is left as it was. Used by `a2hlib.training.train` (02_training) and
    `a2hlib.models.encode`.
    """

    def __init__(self, dataset, uint8: bool | None = None):
        self.dataset = dataset
        self.uint8 = has_uint8_items(dataset) if uint8 is None else bool(uint8)
        if self.uint8 and not has_uint8_items(dataset):
            raise ValueError(f"{type(dataset).__name__} has no uint8 items; use uint8=False")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        seed, indices = key
        item = self.dataset.uint8_item if self.uint8 else self.dataset.__getitem__
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            images = torch.utils.data.default_collate([item(i)[0] for i in indices])  # shared memory in workers
        return images, torch.as_tensor(indices, dtype=torch.long)


def sequential_keys(n: int, batch_size: int, seed: int = 0) -> list[tuple[int, list[int]]]:
    """`BatchFeed` keys for items 0..n-1 in order, `batch_size` at a time (evaluation)."""
    return [(seed, list(range(start, min(start + batch_size, n)))) for start in range(0, n, batch_size)]
