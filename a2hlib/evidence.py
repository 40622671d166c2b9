"""Numbers from attribution maps: where the evidence lies and how concentrated it is.

Introduced in `notebooks/04_simplicity_bias.ipynb` (docs/METHOD.md §9, claim 2). Every measure takes
maps of shape B×H×W (or one H×W map) from `a2hlib.attribution.attribute` and returns one value
per map (a numpy array of length B):

- where: `mask_share` (share of the attribution *mass* inside a mask), `part_shares`;
- how concentrated: `entropy` of the normalised mass, `gini` coefficient, `area_for_mass` (the
  smallest share of pixels that holds a given share of the mass);
- does the map point at what the model uses: `deletion_curve` (a score as the most-attributed
  pixels are replaced by a fill value, and its area under the curve);
- does the map depend on the model at all: `randomization_check` (Adebayo et al., "Sanity checks
  for saliency maps", NeurIPS 2018: re-initialise the weights and compare the maps).

The *mass* of a map is |attr| (`mode="abs"`, the default: evidence for and against both count as
"the code looks here") or its positive part (`mode="positive"`: only evidence for the target).
Masks come from `a2hlib.datasets.dataset_masks` (the built-in dataset's part masks, or CUB's boxes
and part locations, through the same test transform as the images).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["mass", "mask_share", "part_shares", "entropy", "gini", "area_for_mass", "concentration",
           "measures", "DeletionCurve", "deletion_curve", "bit_agreement_score", "map_score",
           "model_stages", "randomize_model", "spearman_maps", "randomization_check"]


# ------------------------------------------------------------------------------ mass and masks
def _maps(attr) -> np.ndarray:
    a = attr.detach().cpu().double().numpy() if isinstance(attr, torch.Tensor) else np.asarray(attr, dtype=float)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"attribution maps must be B×H×W or H×W, got shape {a.shape}")
    return a


def mass(attr, mode: str = "abs") -> np.ndarray:
    """B×(H·W) non-negative mass: |attr| ("abs") or max(attr, 0) ("positive")."""
    a = _maps(attr)
    if mode == "abs":
        m = np.abs(a)
    elif mode == "positive":
        m = np.clip(a, 0, None)
    else:
        raise ValueError(f"mode must be 'abs' or 'positive', got {mode!r}")
    return m.reshape(len(m), -1)


def _masks(mask, like: np.ndarray) -> np.ndarray:
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    m = m.astype(bool)
    if m.ndim == 2:
        m = np.broadcast_to(m, (like.shape[0], *m.shape))
    return m.reshape(like.shape[0], -1)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def mask_share(attr, mask, mode: str = "abs") -> np.ndarray:
    """Share of each map's mass inside `mask` (B×H×W or one H×W mask for all); NaN for an all-zero map."""
    m = mass(attr, mode)
    inside = _masks(mask, m)
    return _safe_ratio((m * inside).sum(1), m.sum(1))


def part_shares(attr, part_masks, mode: str = "abs") -> np.ndarray:
    """B×P shares of mass inside each part mask (B×P×H×W). Disjoint masks (the built-in dataset)
    give shares that add up to the object share; overlapping ones (CUB disks) may add up to more."""
    pm = part_masks.detach().cpu().numpy() if isinstance(part_masks, torch.Tensor) else np.asarray(part_masks)
    return np.stack([mask_share(attr, pm[:, p], mode) for p in range(pm.shape[1])], 1)


def entropy(attr, mode: str = "abs", normalized: bool = False) -> np.ndarray:
    """Shannon entropy (nats) of the mass distribution p = mass / Σ mass: log(H·W) when uniform,
    0 when all mass is on one pixel; `normalized` divides by log(H·W)."""
    m = mass(attr, mode)
    p = m / np.where(m.sum(1, keepdims=True) > 0, m.sum(1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0).sum(1)
    h = np.where(m.sum(1) > 0, h, np.nan)
    return h / math.log(m.shape[1]) if normalized else h


def gini(attr, mode: str = "abs") -> np.ndarray:
    """Gini coefficient of the mass over pixels: 0 when uniform, (n−1)/n when one pixel has it all."""
    m = np.sort(mass(attr, mode), axis=1)
    n = m.shape[1]
    i = np.arange(1, n + 1)
    return _safe_ratio(((2 * i - n - 1) * m).sum(1), n * m.sum(1))


def area_for_mass(attr, share: float = 0.5, mode: str = "abs") -> np.ndarray:
    """Smallest share of pixels (the most attributed first) that holds `share` of the mass:
    `share` for a uniform map, 1/(H·W) for a one-hot map."""
    m = -np.sort(-mass(attr, mode), axis=1)
    total = m.sum(1, keepdims=True)
    cum = np.cumsum(m, axis=1)
    need = share * total * (1 - 1e-9)  # tolerance for rounding in the cumulative sum
    count = (cum < need).sum(1) + 1
    return np.where(total[:, 0] > 0, count / m.shape[1], np.nan)


def concentration(attr, mode: str = "abs") -> dict[str, np.ndarray]:
    """entropy (normalised to [0, 1]), gini and area_for_mass(0.5) of each map."""
    return {"entropy": entropy(attr, mode, normalized=True), "gini": gini(attr, mode),
            "area50": area_for_mass(attr, 0.5, mode)}


# ------------------------------------------------------------------------------- deletion curve
@dataclasses.dataclass
class DeletionCurve:
    """Score after deleting the top `fractions` of pixels. `scores` (F,) is the batch mean (or the
    batch score, e.g. mAP); `per_example` (F×B) when the score is per image. `auc` = area under
    the curve / fraction range (the mean height; lower = the map found the evidence sooner);
    `auc_relative` = auc / scores[0]."""

    fractions: np.ndarray
    scores: np.ndarray
    per_example: np.ndarray | None
    auc: float
    auc_relative: float

    def to_dict(self) -> dict[str, Any]:
        return {"fractions": self.fractions, "scores": self.scores, "auc": self.auc,
                "auc_relative": self.auc_relative}


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


@torch.no_grad()
def deletion_curve(score_fn: Callable[[torch.Tensor], Any], images: torch.Tensor, attr,
                   fractions: Sequence[float] = tuple(np.linspace(0, 1, 11)),
                   fill: torch.Tensor | float = 0.0,
                   mode: str = "abs") -> DeletionCurve:
    """Delete each image's most attributed pixels (all channels set to `fill`; 0 = the ImageNet
    mean colour in normalised space), round(f·H·W) of them for each f in `fractions`, and score
    the batch with `score_fn(images) -> (B,) scores or one number`. Ties: lower pixel index first.
    One map (H×W) applies to every image."""
    images = images.detach()
    b, c, h, w = images.shape
    m = torch.as_tensor(mass(attr, mode), dtype=torch.float64)
    if m.shape == (1, h * w):  # one map for every image
        m = m.expand(b, -1)
    if m.shape != (b, h * w):
        raise ValueError(f"maps {tuple(m.shape)} do not match images {tuple(images.shape)}")
    order = torch.sort(-m, dim=1, stable=True).indices.to(images.device)
    fill_t = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    if fill_t.ndim == 1:  # one value per channel
        fill_t = fill_t.view(1, -1, 1, 1)
    fill_t = fill_t.expand_as(images) if fill_t.ndim < 4 else fill_t
    fractions = np.asarray(fractions, dtype=float)
    per, batch = [], []
    for f in fractions:
        k = int(round(f * h * w))
        keep = torch.ones(b, h * w, dtype=torch.bool, device=images.device)
        if k:
            keep.scatter_(1, order[:, :k], False)
        keep = keep.view(b, 1, h, w)
        x = torch.where(keep, images, fill_t)
        s = score_fn(x)
        s = s.detach().cpu().double().numpy() if isinstance(s, torch.Tensor) else np.asarray(s, dtype=float)
        if s.ndim == 0:
            batch.append(float(s))
        else:
            per.append(s)
            batch.append(float(s.mean()))
    scores = np.array(batch)
    auc = _trapezoid(scores, fractions) / max(fractions[-1] - fractions[0], 1e-12)
    rel = auc / scores[0] if scores[0] != 0 else float("nan")
    return DeletionCurve(fractions, scores, np.stack(per) if per else None, auc, rel)


def bit_agreement_score(model: nn.Module, images: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """score_fn for `deletion_curve`: per image, the share of bits of sign(u(x')) equal to those
    of the unmodified images (1 at fraction 0)."""
    from a2hlib.codes import binarize
    from a2hlib.models import eval_mode
    with torch.no_grad(), eval_mode(model):
        ref = binarize(model(images))

    def score(x: torch.Tensor) -> torch.Tensor:
        with eval_mode(model):
            return (binarize(model(x)) == ref).float().mean(1)
    return score


def map_score(model: nn.Module, db_codes, query_labels, db_labels) -> Callable[[torch.Tensor], float]:
    """score_fn for `deletion_curve`: mAP@all (stable ties) of the batch as queries against
    `db_codes` (e.g. the learned B, asymmetric protocol)."""
    from a2hlib import metrics
    from a2hlib.codes import binarize
    from a2hlib.models import eval_mode

    def score(x: torch.Tensor) -> float:
        with eval_mode(model):
            codes = binarize(model(x)).cpu()
        return metrics.mean_average_precision(codes, db_codes, query_labels, db_labels)
    return score


# -------------------------------------------------------------------------- randomisation check
def model_stages(model: nn.Module) -> list[tuple[str, list[str]]]:
    """Weight groups from the output towards the input, as (stage name, parameter-name prefixes),
    the order of Adebayo et al.'s cascading randomisation. HashingNet: head (W or hash_layer),
    layer4 (global and part copies), attention, then the stem's blocks from last to first."""
    names = dict(model.named_children())
    if "stem" in names and "global_layer4" in names:
        stages = [("head", ["W", "hash_layer"]), ("layer4", ["global_layer4", "part_layer4"])]
        if "attention" in names:
            stages.append(("attention", ["attention"]))
        stages += [(f"stem.{n}", [f"stem.{n}"]) for n, m in reversed(list(model.stem.named_children()))
                   if any(True for _ in m.parameters())]
        return stages
    params = [n for n, _ in model.named_parameters()]
    return [(n, [n]) for n in reversed(list(names))] or [(p, [p]) for p in reversed(params)]


def _matches(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def randomize_model(model: nn.Module, stages: Sequence[str] | None = None, seed: int = 0) -> nn.Module:
    """A deep copy with the weights of `stages` (names from `model_stages`; None = every stage)
    re-initialised: modules by their `reset_parameters` (BatchNorm: also its running statistics),
    bare parameters (A²-Net's W) by nn.Linear's default init. The copy is in eval mode."""
    out = copy.deepcopy(model).eval()
    table = dict(model_stages(out))
    prefixes = [p for s in (table if stages is None else stages) for p in table[s]]
    cuda = sorted({p.device.index or 0 for p in out.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda):  # the caller's random streams stay untouched
        torch.manual_seed(seed)
        for name, module in out.named_modules():
            if name and _matches(name, prefixes) and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for name, p in out.named_parameters(recurse=False):
            if _matches(name, prefixes):
                with torch.no_grad():
                    if p.ndim > 1:
                        nn.init.kaiming_uniform_(p, a=5 ** 0.5)
                    else:
                        nn.init.zeros_(p)
    return out


def spearman_maps(a, b) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (B values; NaN where a map is constant)."""
    from scipy.stats import rankdata
    x, y = _maps(a), _maps(b)
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    return _safe_ratio((rx * ry).sum(1), den)


def randomization_check(model: nn.Module, make_target: Callable[[nn.Module], nn.Module], images: torch.Tensor,
                        method: str = "ig", cascade: bool = False, seed: int = 0, maps=None,
                        **attribute_kwargs) -> dict[str, Any]:
    """Maps of the trained model vs. the same model with re-initialised weights.

    make_target(model) builds the target (e.g. `lambda m: BitTarget.for_images(m, 0, images)`);
    maps: the trained model's maps if already computed (mode "abs"). Returns `spearman` (mean over
    images, full randomisation), `per_image`, and with `cascade` a list of (stage, mean Spearman)
    after randomising the stages from the output down to that one. A map that survives
    randomisation (high correlation) shows the image, not what the model learned.
    """
    from a2hlib.attribution import attribute
    if maps is None:
        maps = attribute(method, make_target(model), images, **attribute_kwargs)
    full = attribute(method, make_target(randomize_model(model, None, seed)), images, **attribute_kwargs)
    per = spearman_maps(maps, full)
    out: dict[str, Any] = {"method": method, "spearman": float(np.nanmean(per)), "per_image": per}
    if cascade:
        names = [s for s, _ in model_stages(model)]
        out["cascade"] = []
        for i in range(len(names)):
            r = attribute(method, make_target(randomize_model(model, names[:i + 1], seed)), images, **attribute_kwargs)
            out["cascade"].append((names[i], float(np.nanmean(spearman_maps(maps, r)))))
    return out


def measures(attr, object_mask=None, part_masks=None, part_names: Sequence[str] | None = None,
             shortcut_mask=None, mode: str = "abs") -> dict[str, np.ndarray]:
    """Every per-map measure at once (name → B values): object_share, part:<name> shares,
    shortcut_share, and the `concentration` measures; masks that are None are skipped."""
    out: dict[str, np.ndarray] = {}
    if object_mask is not None:
        out["object_share"] = mask_share(attr, object_mask, mode)
    if part_masks is not None:
        shares = part_shares(attr, part_masks, mode)
        names = list(part_names) if part_names else [str(p) for p in range(shares.shape[1])]
        out.update({f"part:{n}": shares[:, p] for p, n in enumerate(names)})
    if shortcut_mask is not None:
        out["shortcut_share"] = mask_share(attr, shortcut_mask, mode)
    out.update(concentration(attr, mode))
    return out
