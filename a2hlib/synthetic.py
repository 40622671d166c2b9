"""The built-in fine-grained dataset: "synthetic birds" (introduced in `notebooks/01_data_preparation.ipynb`).

Every image shows one bird drawn from named parts (body, head, wing, tail, beak, crest, legs, eye)
on a random textured background, in a random pose. A class is a combination of part attributes
(colours, wing pattern, tail shape, beak length, crest). Classes come in groups of `group_size`
"species of one genus": the group fixes the coarse attributes (body/head/wing/beak colour) and its
classes walk a Gray code over two or three small-part attributes, so class `c` and `c + 1` of one
group differ in exactly one small part (see `SyntheticData.differences`).

Ground truth carried by every image: its attribute vector (CUB-style one-hot names such as
`has_wing_color::red`), an object mask, one mask per part (visible pixels, disjoint, their union is
the object mask) and, when a shortcut is planted, the mask of the cue.

Two attribute groups are *nuisance* attributes, drawn per image independently of the class
(`wing_posture`: folded/raised, `legs`: tucked/visible). Hashing codes trained on class labels have
no reason to encode them: they are the negative control of the bit x attribute study.

Planted shortcut (`shortcut_strength` p > 0): a small square near the top-left corner (inset by
`shortcut_inset`, so Resize + CenterCrop keeps it) whose colour encodes a class. On the database
(and val) side it shows the image's own class with probability p, otherwise a uniformly drawn
*other* class, so the cue agrees with the label at rate p. On the query side `shortcut_query`
chooses: "random" (a uniformly drawn class, independent of the label), "absent" (no patch) or
"same" (the database rule). The patch is drawn last, clean (no lighting or noise); object and part
masks are cleared under it, so the shortcut mask is disjoint from them (the bird's placement keeps
clear of it in practice). The cue has its own random stream: images with and without it are
identical outside the patch.

Everything is generated with numpy from `seed` (images) and `class_seed` (class definitions);
the same config gives identical bytes. Each split has its own random stream, so changing
`query_per_class` does not change the database images. Default set (20 classes, 1,300 images of
64 px): about 1.6 s on one core.

Training hint: keep RandomResizedCrop scale >= 0.6 at 64 px (99.5 % of crops keep >= 90 % of the
bird; the torchvision default 0.08 keeps it in only 66 %).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
import pathlib
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "SyntheticConfig", "SyntheticData", "PRESETS", "PART_NAMES", "ATTRIBUTE_VALUES",
    "NUISANCE_GROUPS", "FINE_GROUPS", "COARSE_GROUPS", "class_definitions", "attribute_names",
    "generate", "load", "write_to_disk", "shortcut_colors", "SHORTCUT_QUERIES", "ShortcutData",
    "shortcut_datasets", "shortcut_tag",
]

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.12), "orange": (0.97, 0.55, 0.08), "yellow": (0.97, 0.88, 0.15),
    "green": (0.18, 0.62, 0.18), "blue": (0.15, 0.32, 0.88), "brown": (0.50, 0.30, 0.14),
    "grey": (0.58, 0.58, 0.58), "white": (0.96, 0.96, 0.96), "black": (0.08, 0.08, 0.08),
}
BEAK_PALETTE: dict[str, tuple[float, float, float]] = {
    "black": (0.08, 0.08, 0.08), "yellow": (0.97, 0.85, 0.10), "red": (0.85, 0.10, 0.10),
}
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "body_color": tuple(PALETTE),
    "head_color": tuple(PALETTE),
    "wing_color": tuple(PALETTE),
    "beak_color": tuple(BEAK_PALETTE),
    "wing_pattern": ("plain", "striped", "spotted"),
    "tail_shape": ("short", "long", "forked"),
    "beak_length": ("short", "long"),
    "crest": ("absent", "present"),
    "wing_posture": ("folded", "raised"),
    "legs": ("tucked", "visible"),
}
COARSE_GROUPS = ("body_color", "head_color", "wing_color", "beak_color")  # fixed per group of classes
FINE_GROUPS = ("wing_pattern", "tail_shape", "beak_length", "crest")  # small parts varied inside a group
NUISANCE_GROUPS = ("wing_posture", "legs")  # drawn per image, independent of the class
CLASS_GROUPS = COARSE_GROUPS + FINE_GROUPS
PART_NAMES = ("body", "head", "wing", "tail", "beak", "crest", "legs", "eye")
_PAINT_ORDER = ("legs", "tail", "body", "wing", "crest", "head", "beak", "eye")
_GENUS = ("Finch", "Warbler", "Sparrow", "Tanager", "Wren", "Thrush", "Bunting", "Vireo",
          "Oriole", "Flycatcher", "Grosbeak", "Kinglet")


def attribute_names() -> list[str]:
    """CUB-style binary attribute names, e.g. `has_wing_color::red`, in column order."""
    return [f"has_{g}::{v}" for g, vals in ATTRIBUTE_VALUES.items() for v in vals]


def _attribute_groups() -> dict[str, list[int]]:
    out, k = {}, 0
    for g, vals in ATTRIBUTE_VALUES.items():
        out[g] = list(range(k, k + len(vals)))
        k += len(vals)
    return out


# --------------------------------------------------------------------------------------------
# Config and result
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic birds (defaults: the CPU demo set, 20 classes, 1,300 images)."""

    num_classes: int = 20  # any C >= 1; the last group is smaller when C % group_size != 0
    group_size: int = 4  # classes per group ("genus"), 1..8
    database_per_class: int = 50
    query_per_class: int = 15
    val_per_class: int = 0
    image_size: int = 64  # output side S in pixels (any S >= 16)
    seed: int = 0  # images (pose, background, lighting, noise, nuisance attributes, shortcut)
    class_seed: int = 0  # class definitions
    shortcut_strength: float = 0.0  # p in [0, 1]; 0 = no shortcut patch at all
    shortcut_query: str = "random"  # "random" | "absent" | "same"
    shortcut_size: float = 0.125  # patch side as a fraction of S (at least 2 px)
    shortcut_inset: float = 0.08  # patch offset from the top-left corner / S (survives centre crops)
    supersample: int = 2  # render at supersample*S, then average (antialiasing)
    rotation_deg: float = 30.0  # pose: uniform in +-rotation_deg
    flip: bool = True  # pose: horizontal flip with probability 1/2
    object_size: tuple[float, float] = (0.6, 0.9)  # bird length (tail to beak) / S, uniform
    margin: float = 0.06  # keep the bird's bounding box this far (/ S) from the border when it fits
    background: str = "mixed"  # "mixed" (noise or stripes) | "noise" | "stripes" | "plain"
    color_jitter: float = 0.05  # per part, per image, std of RGB offsets (0..1 scale)
    lighting: float = 0.2  # brightness and contrast factors uniform in 1 +- lighting
    pixel_noise: float = 0.03  # std of Gaussian pixel noise (0..1 scale)
    nuisance_prob: float = 0.5  # P(wing raised) = P(legs visible)

    def __post_init__(self) -> None:
        if self.num_classes < 1 or not 1 <= self.group_size <= 8:
            raise ValueError("need num_classes >= 1 and 1 <= group_size <= 8")
        if min(self.database_per_class, self.query_per_class, self.val_per_class) < 0:
            raise ValueError("per-class counts must be >= 0")
        if self.image_size < 16 or self.supersample < 1:
            raise ValueError("need image_size >= 16 and supersample >= 1")
        if not 0.0 <= self.shortcut_strength <= 1.0:
            raise ValueError("shortcut_strength must lie in [0, 1]")
        if self.shortcut_query not in ("random", "absent", "same"):
            raise ValueError("shortcut_query must be 'random', 'absent' or 'same'")
        if self.background not in ("mixed", "noise", "stripes", "plain"):
            raise ValueError("background must be 'mixed', 'noise', 'stripes' or 'plain'")
        lo, hi = self.object_size
        if not 0.05 <= lo <= hi <= 2.0:
            raise ValueError("object_size must be (lo, hi) with 0.05 <= lo <= hi <= 2")
        if not (0 < self.shortcut_size and 0 <= self.shortcut_inset
                and self.shortcut_size + self.shortcut_inset <= 1 and 0 <= self.margin < 0.5):
            raise ValueError("need shortcut_size > 0, shortcut_inset >= 0, their sum <= 1 and "
                             "0 <= margin < 0.5")

    @property
    def num_groups(self) -> int:
        return -(-self.num_classes // self.group_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, SyntheticConfig] = {
    "default": SyntheticConfig(),
    "smoke": SyntheticConfig(num_classes=8, database_per_class=8, query_per_class=4, image_size=32),
    "large": SyntheticConfig(image_size=128),  # the same birds at 128 px (for pretrained backbones)
}


@dataclasses.dataclass
class SyntheticData:
    """In-memory synthetic birds. Row order is database, query, val; class-major inside a split."""

    images: np.ndarray  # uint8 (N, S, S, 3)
    labels: np.ndarray  # int64 (N,)
    split: np.ndarray  # str (N,): 'database' | 'query' | 'val'
    attributes: np.ndarray  # uint8 (N, A), one-hot inside each attribute group
    attribute_names: list[str]
    attribute_groups: dict[str, list[int]]  # group -> column indices
    nuisance_groups: list[str]  # groups not determined by the class
    part_names: list[str]
    part_masks: np.ndarray  # bool (N, P, S, S): visible pixels of each part, disjoint
    object_masks: np.ndarray  # bool (N, S, S): union of part masks
    shortcut_masks: np.ndarray  # bool (N, S, S): the cue patch (disjoint from the object)
    shortcut_classes: np.ndarray  # int64 (N,): class shown by the cue, -1 when absent
    class_names: list[str]
    class_groups: np.ndarray  # int64 (C,): group ("genus") of each class
    class_attributes: np.ndarray  # uint8 (C, A): the class-determined columns (nuisance columns 0)
    image_params: dict[str, np.ndarray]  # per-image pose etc.: rotation_deg, flip, scale, background
    config: SyntheticConfig

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, split: str | np.ndarray) -> "SyntheticData":
        """Rows of one split ('database', 'query', 'val'), or of a boolean / index array."""
        sel = self.split == split if isinstance(split, str) else np.asarray(split)

        def take(a: np.ndarray) -> np.ndarray:
            return a[sel]

        return dataclasses.replace(
            self, images=take(self.images), labels=take(self.labels), split=take(self.split),
            attributes=take(self.attributes), part_masks=take(self.part_masks),
            object_masks=take(self.object_masks), shortcut_masks=take(self.shortcut_masks),
            shortcut_classes=take(self.shortcut_classes),
            image_params={k: take(v) for k, v in self.image_params.items()})

    def class_values(self, c: int) -> dict[str, str]:
        """The class-determined attribute values of class c, e.g. {'wing_pattern': 'striped', ...}."""
        row = self.class_attributes[c]
        return {g: ATTRIBUTE_VALUES[g][int(np.argmax(row[idx]))]
                for g, idx in self.attribute_groups.items() if g not in self.nuisance_groups}

    def describe_class(self, c: int) -> str:
        """One line naming the class and its part attributes."""
        v = self.class_values(c)
        return (f"{self.class_names[c]} (group {int(self.class_groups[c])}): body {v['body_color']}, "
                f"head {v['head_color']}, wing {v['wing_color']} {v['wing_pattern']}, "
                f"tail {v['tail_shape']}, beak {v['beak_length']} {v['beak_color']}, "
                f"crest {v['crest']}")

    def differences(self, c1: int, c2: int) -> dict[str, tuple[str, str]]:
        """Attribute groups in which classes c1 and c2 differ: {group: (value of c1, value of c2)}."""
        a, b = self.class_values(c1), self.class_values(c2)
        return {g: (a[g], b[g]) for g in a if a[g] != b[g]}


# --------------------------------------------------------------------------------------------
# Class definitions
# --------------------------------------------------------------------------------------------
def _gray(k: int) -> int:
    return k ^ (k >> 1)


def class_definitions(num_classes: int = 20, group_size: int = 4,
                      class_seed: int = 0) -> list[dict[str, str]]:
    """Class-determined attribute values of every class: C dicts, plus keys 'name' and 'group'.

    Groups differ from each other in at least two of body/head/wing colour. Inside a group, class
    k takes Gray code k over the group's m = ceil(log2(group_size)) varied small-part attributes
    (two values each), so consecutive classes of a group differ in exactly one attribute.
    """
    rng = np.random.default_rng([class_seed, 7919])
    num_groups = -(-num_classes // group_size)
    m = max(1, int(np.ceil(np.log2(group_size)))) if group_size > 1 else 0
    colors = list(PALETTE)
    coarse: list[tuple[str, str, str, str]] = []
    tries = 0
    while len(coarse) < num_groups:
        tries += 1
        body, head, wing = (colors[i] for i in rng.integers(0, len(colors), 3))
        beak = list(BEAK_PALETTE)[int(rng.integers(0, len(BEAK_PALETTE)))]
        if wing == body:
            continue
        need = 2 if tries < 20000 else 1
        if all(sum(x != y for x, y in zip((body, head, wing), t[:3])) >= need for t in coarse):
            coarse.append((body, head, wing, beak))
    combos = list(itertools.combinations(FINE_GROUPS, m)) if m else [()]
    order = rng.permutation(len(combos))
    classes: list[dict[str, str]] = []
    for g in range(num_groups):
        varied = combos[int(order[g % len(combos)])]
        base = {f: ATTRIBUTE_VALUES[f][int(rng.integers(0, len(ATTRIBUTE_VALUES[f])))]
                for f in FINE_GROUPS}
        alt = {}
        for f in varied:  # two distinct values per varied attribute
            vals = ATTRIBUTE_VALUES[f]
            i, j = rng.choice(len(vals), 2, replace=False)
            base[f], alt[f] = vals[int(i)], vals[int(j)]
        genus = _GENUS[g % len(_GENUS)] + ("" if g < len(_GENUS) else str(g // len(_GENUS) + 1))
        body, head, wing, beak = coarse[g]
        for k in range(min(group_size, num_classes - g * group_size)):
            code = _gray(k)
            vals = dict(base)
            for bit, f in enumerate(varied):
                if code >> bit & 1:
                    vals[f] = alt[f]
            c = len(classes)
            words = [_fine_word(f, vals[f]) for f in varied] if varied else []
            name = f"{c + 1:03d}." + "_".join(
                words + [head.capitalize() + "-headed", body.capitalize(), genus])
            classes.append({"name": name, "group": str(g), "body_color": body, "head_color": head,
                            "wing_color": wing, "beak_color": beak, **vals})
    return classes


def _fine_word(group: str, value: str) -> str:
    return {"wing_pattern": value.capitalize() + "-winged", "tail_shape": value.capitalize() + "-tailed",
            "beak_length": value.capitalize() + "-billed",
            "crest": "Crested" if value == "present" else "Smooth"}[group]


def shortcut_colors(num_classes: int) -> np.ndarray:
    """RGB (C, 3) in [0, 1] of the cue of each class.

    Hues are evenly spaced and assigned with a stride near 0.38*C, so classes c and c+1 get very
    different hues; beyond 24 classes brightness and saturation vary too.
    """
    stride = max(1, int(round(0.382 * num_classes)))
    while np.gcd(stride, num_classes) != 1:
        stride += 1
    c = np.arange(num_classes) * stride % max(num_classes, 1)
    hue = (c % 24) / min(num_classes, 24)
    val = 1.0 - 0.45 * (c // 24 % 2)
    sat = 1.0 - 0.5 * (c // 48 % 2)
    return _hsv_to_rgb(hue, sat * np.ones_like(hue), val * np.ones_like(hue))


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(x, -1) for x in
                      [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]], 0)
    return table[i, np.arange(len(h))]


# --------------------------------------------------------------------------------------------
# Geometry, in the bird's own frame (facing +u, v pointing down; body centre at the origin)
# --------------------------------------------------------------------------------------------
_BBOX = np.array([[-1.58, -1.0], [1.68, -1.0], [1.68, 0.85], [-1.58, 0.85]])
_BIRD_LENGTH = 3.2
_TAILS = {  # two convex quads per shape (the second equals the first when not forked)
    "short": [[(-0.6, -0.17), (-0.6, 0.10), (-1.05, 0.05), (-1.05, -0.26)]] * 2,
    "long": [[(-0.6, -0.14), (-0.6, 0.08), (-1.58, -0.08), (-1.58, -0.26)]] * 2,
    "forked": [[(-0.6, -0.16), (-0.6, -0.02), (-1.52, -0.44), (-1.5, -0.28)],
               [(-0.6, -0.08), (-0.6, 0.08), (-1.5, 0.20), (-1.52, 0.05)]],
}
_BEAK_LENGTH = {"short": 0.3, "long": 0.68}


def _convex(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Inside test for convex polygons. u, v: (B, R, R); poly: (B, K, 2) or (K, 2)."""
    poly = np.broadcast_to(poly, (u.shape[0],) + poly.shape[-2:]).astype(np.float32)
    pos = np.ones(u.shape, bool)
    neg = np.ones(u.shape, bool)
    k = poly.shape[1]
    for i in range(k):
        p0, p1 = poly[:, i], poly[:, (i + 1) % k]
        ex, ey = (p1 - p0).T
        cross = (ex[:, None, None] * (v - p0[:, 1, None, None])
                 - ey[:, None, None] * (u - p0[:, 0, None, None]))
        pos &= cross >= 0
        neg &= cross <= 0
    return pos | neg


def _ellipse(u, v, cx, cy, a, b, ang=None):
    du, dv = u - _col(cx), v - _col(cy)
    if ang is not None:
        c, s = _col(np.cos(ang)), _col(np.sin(ang))
        du, dv = c * du + s * dv, -s * du + c * dv
    return (du / _col(a)) ** 2 + (dv / _col(b)) ** 2 <= 1.0, du, dv


def _col(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != bool:
        x = x.astype(np.float32)
    return x.reshape(-1, 1, 1) if x.ndim else x


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------
_SPLITS = (("database", "database_per_class", 0), ("query", "query_per_class", 1),
           ("val", "val_per_class", 2))
_CHUNK_PIXELS = 2 ** 20  # rendered pixels per chunk (64 images at 64 px, supersample 2)


def generate(config: SyntheticConfig | None = None) -> SyntheticData:
    """Generate the dataset described by `config` (deterministic; see the module docstring)."""
    cfg = config or SyntheticConfig()
    t0 = time.perf_counter()
    defs = class_definitions(cfg.num_classes, cfg.group_size, cfg.class_seed)
    names = attribute_names()
    groups = _attribute_groups()
    class_attr = np.zeros((cfg.num_classes, len(names)), np.uint8)
    for c, d in enumerate(defs):
        for g in CLASS_GROUPS:
            class_attr[c, groups[g][ATTRIBUTE_VALUES[g].index(d[g])]] = 1
    parts: list[dict[str, np.ndarray]] = []
    for split, field, code in _SPLITS:
        per_class = getattr(cfg, field)
        if per_class == 0:
            continue
        rng = np.random.default_rng([cfg.seed, code, 104729])
        cue_rng = np.random.default_rng([cfg.seed, code, 1299709])  # shortcut draws only
        labels = np.repeat(np.arange(cfg.num_classes, dtype=np.int64), per_class)
        parts.append(_generate_split(cfg, defs, labels, split, rng, cue_rng))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else None
    n = 0 if out is None else len(out["labels"])
    S, P = cfg.image_size, len(PART_NAMES)
    if out is None:
        out = {"images": np.zeros((0, S, S, 3), np.uint8), "labels": np.zeros(0, np.int64),
               "split": np.zeros(0, "<U8"), "nuisance": np.zeros((0, 2), np.int64),
               "part_masks": np.zeros((0, P, S, S), bool), "object_masks": np.zeros((0, S, S), bool),
               "shortcut_masks": np.zeros((0, S, S), bool), "shortcut_classes": np.zeros(0, np.int64),
               "rotation_deg": np.zeros(0, np.float32), "flip": np.zeros(0, bool),
               "scale": np.zeros(0, np.float32), "background": np.zeros(0, "<U8")}
    attrs = class_attr[out["labels"]].copy()
    for j, g in enumerate(NUISANCE_GROUPS):
        attrs[np.arange(n), np.asarray(groups[g])[out["nuisance"][:, j]]] = 1
    data = SyntheticData(
        images=out["images"], labels=out["labels"], split=out["split"], attributes=attrs,
        attribute_names=names, attribute_groups=groups, nuisance_groups=list(NUISANCE_GROUPS),
        part_names=list(PART_NAMES), part_masks=out["part_masks"], object_masks=out["object_masks"],
        shortcut_masks=out["shortcut_masks"], shortcut_classes=out["shortcut_classes"],
        class_names=[d["name"] for d in defs],
        class_groups=np.array([int(d["group"]) for d in defs], np.int64),
        class_attributes=class_attr,
        image_params={k: out[k] for k in ("rotation_deg", "flip", "scale", "background")},
        config=cfg)
    log.info("synthetic birds: %d images of %d px in %.2f s", n, S, time.perf_counter() - t0)
    return data


def _generate_split(cfg: SyntheticConfig, defs: list[dict[str, str]], labels: np.ndarray,
                    split: str, rng: np.random.Generator, cue_rng: np.random.Generator
                    ) -> dict[str, np.ndarray]:
    n, S = len(labels), cfg.image_size
    C = cfg.num_classes
    # ---- per-image draws, all up front (so chunking cannot change them) ----
    rot = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg, n))
    flip = rng.random(n) < 0.5 if cfg.flip else np.zeros(n, bool)
    length = rng.uniform(*cfg.object_size, n) * S
    scale = length / _BIRD_LENGTH  # output pixels per bird unit
    wing_up = rng.random(n) < cfg.nuisance_prob
    legs = rng.random(n) < cfg.nuisance_prob
    shape_jit = rng.uniform(0.93, 1.07, (n, 4))  # body a, body b, head r, beak length
    part_col = rng.normal(0.0, cfg.color_jitter, (n, 6, 3))  # body, head, wing, beak, legs, pattern
    bg_kind = {"mixed": rng.random(n) < 0.5, "noise": np.zeros(n, bool),
               "stripes": np.ones(n, bool), "plain": np.zeros(n, bool)}[cfg.background]
    bg_cols = rng.random((n, 2, 3))
    bg_cols = 0.45 * bg_cols + 0.55 * bg_cols.mean(-1, keepdims=True)  # muted colours
    bg_cols = 0.15 + 0.75 * bg_cols
    grid = rng.random((n, 5, 5))
    stripe = np.stack([rng.uniform(0, np.pi, n), rng.uniform(0.1, 0.3, n) * S,
                       rng.uniform(0, 2 * np.pi, n)], 1)  # angle, period in output px, phase
    bright = rng.uniform(1 - cfg.lighting, 1 + cfg.lighting, n)
    contrast = rng.uniform(1 - cfg.lighting, 1 + cfg.lighting, n)
    cast = rng.uniform(0.94, 1.06, (n, 3))
    # pose: keep the rotated bounding box inside the image when it fits
    c, s = np.cos(rot), np.sin(rot)
    bx = _BBOX[:, 0][None] * np.where(flip, -1, 1)[:, None]
    by = _BBOX[:, 1][None]
    rx = (c[:, None] * bx - s[:, None] * by) * scale[:, None]
    ry = (s[:, None] * bx + c[:, None] * by) * scale[:, None]
    tx = np.empty(n)
    ty = np.empty(n)
    for out_t, r in ((tx, rx), (ty, ry)):
        lo, hi = -r.min(1) + cfg.margin * S, S - r.max(1) - cfg.margin * S
        mid = (-r.min(1) + S - r.max(1)) / 2
        ok = hi > lo
        out_t[:] = np.where(ok, lo + rng.random(n) * np.where(ok, hi - lo, 0), mid)
    # shortcut, from its own stream: the images with and without the cue are otherwise identical
    sc = np.full(n, -1, np.int64)
    p = cfg.shortcut_strength
    if p > 0:
        mode = "same" if split != "query" else cfg.shortcut_query
        other = (labels + cue_rng.integers(1, max(C, 2), n)) % C if C > 1 else labels
        if mode == "same":
            sc = np.where(cue_rng.random(n) < p, labels, other)
        elif mode == "random":
            sc = cue_rng.integers(0, C, n)
    chunk = max(1, _CHUNK_PIXELS // (S * cfg.supersample) ** 2)
    noise_seeds = rng.integers(0, 2**63 - 1, -(-n // chunk))
    # ---- class-level geometry and colours ----
    cls_tail = np.array([[_TAILS[d["tail_shape"]]] for d in defs], np.float32)[:, 0]  # (C,2,4,2)
    cls = {
        "body": np.array([PALETTE[d["body_color"]] for d in defs]),
        "head": np.array([PALETTE[d["head_color"]] for d in defs]),
        "wing": np.array([PALETTE[d["wing_color"]] for d in defs]),
        "beak": np.array([BEAK_PALETTE[d["beak_color"]] for d in defs]),
        "beak_len": np.array([_BEAK_LENGTH[d["beak_length"]] for d in defs]),
        "pattern": np.array([ATTRIBUTE_VALUES["wing_pattern"].index(d["wing_pattern"]) for d in defs]),
        "crest": np.array([d["crest"] == "present" for d in defs]),
    }
    draws = _Draws(rot=rot, flip=flip, scale=scale, tx=tx, ty=ty, wing_up=wing_up, legs=legs, jit=shape_jit,
                   pcol=part_col, bg_kind=bg_kind, bg_cols=bg_cols, grid=grid, stripe=stripe)
    out = {k: [] for k in ("images", "part_masks", "object_masks", "shortcut_masks")}
    for ci, start in enumerate(range(0, n, chunk)):
        sl = slice(start, min(n, start + chunk))
        lab = labels[sl]
        im, pm, om = _render(cfg, lab, cls, cls_tail, draws.rows(sl), plain=cfg.background == "plain")
        # lighting and noise at output resolution
        mean = im.mean((1, 2, 3), keepdims=True)
        im = ((im - mean) * _col(contrast[sl])[..., None] + mean) * _col(bright[sl])[..., None]
        im = im * cast[sl][:, None, None, :]
        noise_rng = np.random.default_rng(noise_seeds[ci])
        im = im + noise_rng.normal(0.0, cfg.pixel_noise, im.shape).astype(np.float32)
        sm = np.zeros(om.shape, bool)
        if p > 0:
            k = max(2, int(round(cfg.shortcut_size * S)))
            o = int(round(cfg.shortcut_inset * S))
            has = sc[sl] >= 0
            sm[has, o:o + k, o:o + k] = True
            colors = shortcut_colors(C).astype(np.float32)
            im[has, o:o + k, o:o + k, :] = colors[sc[sl][has]][:, None, None, :]
            om &= ~sm
            pm &= ~sm[:, None]
        out["images"].append(np.clip(np.round(im * 255.0), 0, 255).astype(np.uint8))
        out["part_masks"].append(pm)
        out["object_masks"].append(om)
        out["shortcut_masks"].append(sm)
    res = {k: np.concatenate(v) for k, v in out.items()}
    res.update(labels=labels, split=np.full(n, split, "<U8"),
               nuisance=np.stack([wing_up, legs], 1).astype(np.int64), shortcut_classes=sc,
               rotation_deg=np.rad2deg(rot).astype(np.float32), flip=flip,
               scale=(scale / S).astype(np.float32),
               background=np.where(bg_kind, "stripes", "noise" if cfg.background != "plain"
                                   else "plain").astype("<U8"))
    return res


@dataclasses.dataclass
class _Draws:
    """Per-image random draws of one split (arrays with one row per image): pose, nuisance parts,
    shape jitter, part colours and background."""

    rot: np.ndarray       # rotation (radians)
    flip: np.ndarray      # horizontal flip (bool)
    scale: np.ndarray     # bird length in output pixels
    tx: np.ndarray        # translation x (output pixels)
    ty: np.ndarray        # translation y
    wing_up: np.ndarray   # nuisance: wing raised
    legs: np.ndarray      # nuisance: legs visible
    jit: np.ndarray       # shape jitter factors
    pcol: np.ndarray      # per-part colour offsets
    bg_kind: np.ndarray   # background: stripes (True) or noise
    bg_cols: np.ndarray   # background colours
    grid: np.ndarray      # noise background grid
    stripe: np.ndarray    # stripe angle, period, phase

    def rows(self, sl: slice) -> "_Draws":
        return _Draws(**{f.name: getattr(self, f.name)[sl] for f in dataclasses.fields(self)})


def _render(cfg, lab, cls, cls_tail, draws: _Draws, *, plain: bool):
    """Render one chunk at supersample*S; return float image (B,S,S,3), part masks, object mask."""
    rot, flip, scale, tx, ty = draws.rot, draws.flip, draws.scale, draws.tx, draws.ty
    wing_up, legs, jit, pcol = draws.wing_up, draws.legs, draws.jit, draws.pcol
    bg_kind, bg_cols, grid, stripe = draws.bg_kind, draws.bg_cols, draws.grid, draws.stripe
    B, S, ss = len(lab), cfg.image_size, cfg.supersample
    R = S * ss
    xs = ((np.arange(R, dtype=np.float32) + 0.5) / ss)
    X, Y = xs[None, None, :], xs[None, :, None]
    dx, dy = X - _col(tx), Y - _col(ty)
    c, s = _col(np.cos(rot)), _col(np.sin(rot))
    inv = _col(1.0 / scale)
    u = (c * dx + s * dy) * inv * _col(np.where(flip, -1.0, 1.0))
    v = (-s * dx + c * dy) * inv
    # ---- part shapes ----
    shapes: dict[str, np.ndarray] = {}
    shapes["body"], _, _ = _ellipse(u, v, 0.0, 0.0, 0.78 * jit[:, 0], 0.42 * jit[:, 1])
    hr = 0.30 * jit[:, 2]
    shapes["head"], _, _ = _ellipse(u, v, 0.70, -0.38, hr, hr)
    shapes["eye"], eu, ev = _ellipse(u, v, 0.80, -0.44, 0.085, 0.085)
    blen = cls["beak_len"][lab] * jit[:, 3]
    beak = np.zeros((B, 3, 2), np.float32)
    beak[:, 0] = (0.92, -0.50)
    beak[:, 1] = (0.92, -0.26)
    beak[:, 2, 0] = 0.95 + blen
    beak[:, 2, 1] = -0.36
    shapes["beak"] = _convex(u, v, beak)
    crest = _convex(u, v, np.array([(0.50, -0.58), (0.82, -0.64), (0.36, -1.0)]))
    shapes["crest"] = crest & _col(cls["crest"][lab])
    tail = cls_tail[lab]  # (B, 2, 4, 2)
    shapes["tail"] = _convex(u, v, tail[:, 0]) | _convex(u, v, tail[:, 1])
    leg = _convex(u, v, np.array([(-0.06, 0.3), (0.02, 0.3), (-0.06, 0.82), (-0.14, 0.82)]))
    leg |= _convex(u, v, np.array([(0.16, 0.3), (0.24, 0.3), (0.22, 0.82), (0.14, 0.82)]))
    leg |= _convex(u, v, np.array([(-0.24, 0.78), (0.0, 0.78), (0.0, 0.85), (-0.24, 0.85)]))
    leg |= _convex(u, v, np.array([(0.06, 0.78), (0.30, 0.78), (0.30, 0.85), (0.06, 0.85)]))
    shapes["legs"] = leg & _col(legs)
    # wing: folded along the back, or raised about the shoulder (0.25, -0.12)
    lift = np.where(wing_up, np.deg2rad(40.0), 0.0) + np.deg2rad(8.0)
    sx, sy = 0.25, -0.12
    cx0, cy0 = -0.12 - sx, -0.06 - sy
    cxw = sx + np.cos(lift) * cx0 - np.sin(lift) * cy0
    cyw = sy + np.sin(lift) * cx0 + np.cos(lift) * cy0
    shapes["wing"], wu, wv = _ellipse(u, v, cxw, cyw, 0.56, 0.24, lift)
    # ---- painter's order -> label map (extra labels: wing pattern, eye ring) ----
    P = len(PART_NAMES)
    label = np.zeros((B, R, R), np.int8)
    for name in _PAINT_ORDER:
        label[shapes[name]] = PART_NAMES.index(name) + 1
    pat = cls["pattern"][lab]
    wing_id, eye_id = PART_NAMES.index("wing") + 1, PART_NAMES.index("eye") + 1
    if np.any(pat > 0):  # bars across the wing, or a grid of spots
        bars = np.sin((2 * np.pi / 0.3) * wu) > 0.25
        per = 0.26
        spots = (np.mod(wu, per) - per / 2) ** 2 + (np.mod(wv + 0.05, per) - per / 2) ** 2 < 0.075 ** 2
        pattern = np.where(_col(pat == 1), bars, _col(pat == 2) & spots)
        label[pattern & (label == wing_id)] = P + 1
    label[(eu ** 2 + ev ** 2 > 0.045 ** 2) & (label == eye_id)] = P + 2
    # ---- coverage of every label in each output pixel (exact box-filter antialiasing) ----
    L = P + 3
    cnt = np.zeros((B, S, S, L), np.uint8)
    for lv in range(1, L):
        eq = label == lv
        if not eq.any():
            continue
        acc = np.zeros((B, S, S), np.uint8)
        for i in range(ss):
            for j in range(ss):
                acc += eq[:, i::ss, j::ss]
        cnt[..., lv] = acc
    cnt[..., 0] = ss * ss - cnt[..., 1:].sum(-1, dtype=np.uint8)
    frac = cnt.astype(np.float32) * np.float32(1.0 / (ss * ss))
    # ---- colours per label ----
    jitc = pcol.astype(np.float32)
    col = np.zeros((B, L, 3), np.float32)
    col[:, 1] = cls["body"][lab] + jitc[:, 0]
    col[:, 2] = cls["head"][lab] + jitc[:, 1]
    col[:, 3] = cls["wing"][lab] + jitc[:, 2]
    col[:, 4] = cls["wing"][lab] + jitc[:, 2] * 0.5  # tail shares the wing colour
    col[:, 5] = cls["beak"][lab] + jitc[:, 3]
    col[:, 6] = col[:, 2]  # crest shares the head colour
    col[:, 7] = np.array([0.45, 0.35, 0.25]) + jitc[:, 4]  # legs
    col[:, 8] = 0.05  # pupil
    wcol = cls["wing"][lab]
    lum = wcol @ np.array([0.3, 0.55, 0.15])
    col[:, P + 1] = np.where(lum[:, None] > 0.4, wcol * 0.3, 0.55 + 0.45 * wcol) + jitc[:, 5]
    col[:, P + 2] = 0.95  # eye ring
    col = np.clip(col, 0.0, 1.0)
    img = np.matmul(frac.reshape(B, S * S, L), col).reshape(B, S, S, 3)
    # ---- background, at output resolution ----
    c0 = bg_cols[:, 0, None, None, :].astype(np.float32)
    if plain:
        bg = np.broadcast_to(c0, (B, S, S, 3))
    else:
        t = np.linspace(0, 4, S, dtype=np.float32)
        i0 = np.minimum(t.astype(int), 3)
        f = t - i0
        M = np.zeros((S, 5), np.float32)
        M[np.arange(S), i0] = 1 - f
        M[np.arange(S), i0 + 1] += f
        w_noise = np.einsum("ri,bij,sj->brs", M, grid.astype(np.float32), M)
        xo = np.arange(S, dtype=np.float32) + 0.5
        ang, period, phase = (_col(stripe[:, k]) for k in range(3))
        w_str = 0.5 + 0.5 * np.sin(2 * np.pi * (xo[None, None, :] * np.cos(ang)
                                                + xo[None, :, None] * np.sin(ang)) / period + phase)
        w = np.where(_col(bg_kind), w_str, w_noise)[..., None]
        c1 = bg_cols[:, 1, None, None, :].astype(np.float32)
        bg = c0 + (c1 - c0) * w
    img += frac[..., :1] * bg
    # ---- masks: majority of sub-pixels on the object, part = the most covered part ----
    pc = cnt[..., 1:P + 1].copy()
    pc[..., wing_id - 1] += cnt[..., P + 1]
    pc[..., eye_id - 1] += cnt[..., P + 2]
    obj = cnt[..., 0].astype(np.int32) * 2 <= ss * ss
    best = np.argmax(pc, -1)
    pm = (best[:, None] == np.arange(P)[None, :, None, None]) & obj[:, None]
    return img, pm, obj


# --------------------------------------------------------------------------------------------
# Convenience and disk
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _cached(cfg: SyntheticConfig) -> SyntheticData:
    data = generate(cfg)
    for a in (data.images, data.labels, data.split, data.attributes, data.part_masks,
              data.object_masks, data.shortcut_masks, data.shortcut_classes, data.class_attributes,
              *data.image_params.values()):
        a.setflags(write=False)  # shared between callers of load(); subset() returns copies
    return data


def load(preset: str = "default", **overrides: Any) -> SyntheticData:
    """In-memory data for notebooks: `load()`, `load("smoke")`, `load(image_size=32, seed=1)`.

    Results are cached per config; treat the arrays as read-only.
    """
    cfg = dataclasses.replace(PRESETS[preset], **overrides)
    return _cached(cfg)


def write_to_disk(data: SyntheticData, out_dir: str | os.PathLike, name: str = "synthetic_birds"
                  ) -> pathlib.Path:
    """Write `out_dir/images/<class>/<index>.png` plus manifest.csv, dataset.json, attributes.npz
    and masks.npz (`a2hlib.manifest` format); return the resolved folder.

    The PNGs go to a staging folder that `manifest.write_dataset` renames into place together with
    the other files, so a failed run leaves no half-written dataset. dataset.json also records
    `synthetic_config`, `attribute_groups` and `nuisance_groups`.
    """
    import pandas as pd
    from PIL import Image

    from a2hlib import manifest

    out = pathlib.Path(out_dir)
    paths = []
    with manifest.staging_dir(out) as tmp:
        for cname in data.class_names:
            (tmp / cname).mkdir()
        for i in range(len(data)):
            rel = f"{data.class_names[int(data.labels[i])]}/{i:06d}.png"
            Image.fromarray(data.images[i]).save(tmp / rel, compress_level=1)
            paths.append(f"{manifest.IMAGES_DIR}/{rel}")
        frame = pd.DataFrame({"index": np.arange(len(data)), "path": paths,
                              "label": data.labels.astype(np.int64), "split": data.split.astype(str)})
        cfg = data.config
        info = {"name": name, "format_version": 1, "image_root": ".", "num_classes": data.num_classes,
                "class_names": list(data.class_names), "multi_label": False,
                "official_counts": None, "count_differences": [],
                "attribute_names": list(data.attribute_names), "part_names": list(data.part_names),
                "skipped": [], "created_by": "a2hlib.synthetic.write_to_disk", "seed": cfg.seed,
                "synthetic_config": cfg.to_dict(), "attribute_groups": data.attribute_groups,
                "nuisance_groups": list(data.nuisance_groups)}
        arrays = {"attributes": {"present": data.attributes.astype(np.uint8),
                                 "certainty": np.full(data.attributes.shape, 4, np.uint8)},
                  "masks": {"object": data.object_masks, "parts": data.part_masks,
                            "shortcut": data.shortcut_masks}}
        return manifest.write_dataset(out, frame, info, arrays, image_dir=tmp)


# ------------------------------------------------------------------------ planted shortcut
SHORTCUT_QUERIES = ("same", "random", "absent")


@dataclasses.dataclass
class ShortcutData:
    """The built-in dataset with a planted shortcut (see `a2hlib.synthetic`): a training database
    whose cue agrees with the label at rate `strength`, and the *same* query images three times,
    identical outside the cue patch: cue showing the query's class ("same"), a random class
    ("random") or no cue ("absent"). Masks are after the test transform."""

    strength: float
    database: Any                        # a2hlib.datasets.ArrayDataset, train transform
    queries: dict[str, Any]              # mode → ArrayDataset, test transform
    shortcut_masks: dict[str, np.ndarray]  # mode → n×S×S
    object_masks: np.ndarray             # n×S×S (identical in every mode)
    part_masks: np.ndarray               # n×P×S×S
    part_names: list[str]


def shortcut_tag(strength: float, overrides: dict[str, Any] | None = None) -> str:
    """Run-folder tag of planted-shortcut runs: `shortcut-p90` for strength 0.9, plus a short hash of
    any training overrides (another schedule gets its own run folders)."""
    import hashlib
    import json
    tag = f"shortcut-p{round(100 * strength)}"
    if overrides:
        tag += "-" + hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:6]
    return tag


def shortcut_datasets(strength: float, image_size: int, preset: str = "default",
                      crop_scale: tuple[float, float] = (0.6, 1.0), **overrides) -> ShortcutData:
    """Generate (cached) the planted-shortcut data at `image_size` px (`load(preset, ...)`), as torch
    datasets; used by `notebooks/04_simplicity_bias.ipynb`."""
    import torch

    from a2hlib.datasets import ArrayDataset, test_transform, train_transform, transform_mask
    kw = dict(shortcut_strength=strength, image_size=image_size, **overrides)
    sets = {q: load(preset, shortcut_query=q, **kw) for q in SHORTCUT_QUERIES}
    db = sets["same"].subset("database")
    database = ArrayDataset(db.images, torch.as_tensor(db.labels), train_transform(image_size, crop_scale))
    queries, masks = {}, {}
    for q, data in sets.items():
        part = data.subset("query")
        queries[q] = ArrayDataset(part.images, torch.as_tensor(part.labels), test_transform(image_size),
                                  num_classes=data.num_classes)
        masks[q] = transform_mask(part.shortcut_masks, image_size)
    absent = sets["absent"].subset("query")
    return ShortcutData(strength, database, queries, masks, transform_mask(absent.object_masks, image_size),
                        transform_mask(absent.part_masks, image_size), list(absent.part_names))
