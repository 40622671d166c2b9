"""Attributions of hash codes with Captum: which pixels a bit, or a query-to-database similarity,
rests on. Introduced in `notebooks/04_simplicity_bias.ipynb` (docs/METHOD.md §9, claim 2).

Captum attributes **one scalar per example**, so a hashing network (k outputs) is wrapped in a
*target* module that maps a batch of images (B×3×H×W) to B scalars:

- `BitTarget(model, bit, sign)`: f(x) = s · u_j(x), the relaxed value of bit j, multiplied by the
  sign s of the bit the model *emits* on the unperturbed image (s = sign(u_j(x)), sign(0) = +1).
  So f(x) = |u_j(x)| at the image itself, and positive attribution is evidence *for* the emitted
  bit. s is computed once, before Captum perturbs anything (`BitTarget.for_images`), because
  inside Integrated Gradients the path images would otherwise flip it.
- `CodeSimilarityTarget(model, target_codes)`: f(x) = u(x)·t / k, the relaxed version of the
  asymmetric retrieval score (for ±1 codes, q·b / k = 1 − 2·Hamming / k), with t a database item's
  learned code (a row of B) or its class's mean code (`class_mean_codes`); `cosine=True` uses
  u·t / (‖u‖‖t‖) instead.

Per-example values (signs, target codes) are stored in the module and selected by a row index
that `attribute` passes as Captum's `additional_forward_args`; Captum repeats that index along
with the inputs (Integrated Gradients' path steps, Occlusion's perturbation batches), so every
perturbed copy is scored against its own example's sign or target.

Methods (`attribute(method, target, images, ...)`):

- `"ig"`  Integrated Gradients (Sundararajan et al. 2017); baseline 0 in normalised space, i.e.
  the ImageNet-mean colour image, unless `baseline` is given.
- `"gradcam"`  Grad-CAM (Selvaraju et al. 2017) on `layer` (default: `model.stem`, the feature map
  T shared by the global branch, the attention and the part branch, so the maps of adsh, a2net
  and a2netpp are comparable), ReLU'd and upsampled bilinearly to the image with Captum's
  `LayerAttribution.interpolate`.
- `"occlusion"`  Occlusion (Zeiler & Fergus 2014): a square window (all channels) set to the
  baseline, slid with a stride; a pixel's value is the mean drop of f over the windows covering it.

Maps come back as B×H×W: `reduce="abs"` (default) sums |attribution| over the colour channels
(a *mass* for the measures of `a2hlib.evidence`); `"sum"` keeps the sign (sum over channels);
`"positive"` sums the positive part; `None` returns Captum's raw output (B×3×H×W for IG and
Occlusion, B×1×H×W for Grad-CAM), e.g. to check IG's completeness.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from torch import nn

from a2hlib.codes import binarize
from a2hlib.models import eval_mode

log = logging.getLogger(__name__)

__all__ = ["relaxed_codes", "BitTarget", "CodeSimilarityTarget", "class_mean_codes", "relevant_mean_codes",
           "default_layer", "attribute", "METHODS"]

METHODS = ("ig", "gradcam", "occlusion")
OPTIONS = {"ig": {"n_steps", "internal_batch_size"}, "gradcam": {"relu_attributions", "interpolate_mode"},
           "occlusion": {"window", "stride", "perturbations_per_eval"}}
REDUCTIONS = ("abs", "sum", "positive", None)


def relaxed_codes(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """u = tanh(v) (B×k) of any HashingNet variant, differentiable w.r.t. the images."""
    return model.forward_all(images)["u"]


class _Target(nn.Module):
    """Shared logic: one stored row per example, selected by `rows` (None: all, in order)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def _rows(self, values: torch.Tensor, rows: torch.Tensor | None, batch: int) -> torch.Tensor:
        if values.ndim == 0 or values.shape[0] == 1:
            return values.expand(batch, *values.shape[1:]) if values.ndim else values.expand(batch)
        if rows is None:
            if values.shape[0] != batch:
                raise ValueError(f"{values.shape[0]} stored rows for a batch of {batch} images; "
                                 "pass rows= (what `attribute` does)")
            return values
        return values[rows.to(values.device).long()]


class BitTarget(_Target):
    """f(x) = s · u_j(x): the relaxed value of bit `bit`, sign-corrected by `sign` (see module doc).

    sign: ±1 per example (B,) or one value; `BitTarget.for_images` computes the emitted signs.
    """

    def __init__(self, model: nn.Module, bit: int, sign: torch.Tensor | float = 1.0):
        super().__init__(model)
        self.bit = int(bit)
        self.register_buffer("sign", torch.as_tensor(sign, dtype=torch.float32), persistent=False)

    @classmethod
    @torch.no_grad()
    def for_images(cls, model: nn.Module, bit: int, images: torch.Tensor) -> "BitTarget":
        """The target with s = sign(u_j(x)) of each unperturbed image (sign(0) = +1)."""
        with eval_mode(model):
            return cls(model, bit, binarize(relaxed_codes(model, images)[:, int(bit)]).cpu())

    def forward(self, images: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        u = relaxed_codes(self.model, images)[:, self.bit]
        return self._rows(self.sign.to(u.device), rows, len(images)) * u


class CodeSimilarityTarget(_Target):
    """f(x) = u(x)·t / k (default) or cos(u(x), t) (`cosine=True`), t = `target_codes` (B×k or k)."""

    def __init__(self, model: nn.Module, target_codes: torch.Tensor, cosine: bool = False):
        super().__init__(model)
        t = torch.as_tensor(target_codes, dtype=torch.float32)
        self.register_buffer("target_codes", t if t.ndim == 2 else t[None], persistent=False)
        self.cosine = cosine

    def forward(self, images: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        u = relaxed_codes(self.model, images)
        t = self._rows(self.target_codes.to(u.device), rows, len(images))
        if self.cosine:
            return nn.functional.cosine_similarity(u, t, dim=1, eps=1e-8)
        return (u * t).sum(1) / u.shape[1]


def class_mean_codes(codes: torch.Tensor, labels, num_classes: int | None = None) -> torch.Tensor:
    """Mean code of each class (C×k) from database codes (n×k, e.g. the learned B) and class ids."""
    codes = torch.as_tensor(codes, dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    c = int(num_classes if num_classes is not None else int(labels.max()) + 1)
    sums = torch.zeros(c, codes.shape[1]).index_add_(0, labels, codes)
    counts = torch.bincount(labels, minlength=c).clamp(min=1).float()
    return sums / counts[:, None]


def relevant_mean_codes(query_labels, db_codes: torch.Tensor, db_labels) -> torch.Tensor:
    """Per query (q×k): the mean code of the database items relevant to it (`metrics.relevance`:
    same class, or a shared label); for single-label data that is its class's mean code."""
    from a2hlib.metrics import relevance
    relevant = torch.as_tensor(relevance(np.asarray(query_labels), np.asarray(db_labels)), dtype=torch.float32)
    codes = torch.as_tensor(db_codes, dtype=torch.float32)
    return relevant @ codes / relevant.sum(1, keepdim=True).clamp(min=1)


def default_layer(model: nn.Module) -> nn.Module:
    """The Grad-CAM layer used when none is given: the stem (conv1…layer3), shared by all branches."""
    return model.stem


def _target_of(target: nn.Module) -> nn.Module:
    return target.model if isinstance(target, _Target) else target


def _reduce(attr: torch.Tensor, reduce: str | None) -> torch.Tensor:
    if reduce is None:
        return attr
    if reduce == "abs":
        return attr.abs().sum(1)
    if reduce == "sum":
        return attr.sum(1)
    if reduce == "positive":
        return attr.clamp(min=0).sum(1)
    raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")


def attribute(method: str, target: nn.Module, images: torch.Tensor, layer: nn.Module | None = None,
              baseline: torch.Tensor | float | None = None, reduce: str | None = "abs",
              batch_size: int | None = None, **kwargs) -> torch.Tensor:
    """Attribution maps (B×H×W, see `reduce`) of `target` (one scalar per image) for `images`.

    method: "ig" (kwargs: n_steps=32, internal_batch_size), "gradcam" (layer; kwargs:
    relu_attributions=True, interpolate_mode="bilinear"), "occlusion" (kwargs: window=8, stride=4,
    perturbations_per_eval=16). baseline: IG's baseline and Occlusion's fill (default 0 = the
    ImageNet-mean colour in normalised space). batch_size: images per Captum call (None: all).
    The target runs in eval mode (BatchNorm statistics); its model's mode is restored afterwards.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    unknown = sorted(set(kwargs) - OPTIONS[method])
    if unknown:
        raise TypeError(f"{method} takes no option(s) {unknown}; its options: {sorted(OPTIONS[method])}")
    with eval_mode(target):
        return _attribute(method, target, images.detach(), layer, baseline, reduce, batch_size, kwargs)


def _attribute(method, target, images, layer, baseline, reduce, batch_size, kwargs) -> torch.Tensor:
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion

    n = len(images)
    step = n if batch_size is None else max(1, int(batch_size))
    base = 0.0 if baseline is None else baseline
    outs = []
    for start in range(0, n, step):
        x = images[start:start + step]
        rows = torch.arange(start, start + len(x), device=x.device)
        b = base[start:start + step] if isinstance(base, torch.Tensor) and base.ndim == 4 and len(base) == n else base
        if method == "ig":
            ig = IntegratedGradients(target)
            a = ig.attribute(x, baselines=b, additional_forward_args=(rows,),
                             n_steps=kwargs.get("n_steps", 32),
                             internal_batch_size=kwargs.get("internal_batch_size"))
        elif method == "gradcam":
            cam = LayerGradCam(target, layer if layer is not None else default_layer(_target_of(target)))
            a = cam.attribute(x, additional_forward_args=(rows,),
                              relu_attributions=kwargs.get("relu_attributions", True))
            a = LayerAttribution.interpolate(a, tuple(x.shape[-2:]), kwargs.get("interpolate_mode", "bilinear"))
        else:
            w, s = int(kwargs.get("window", 8)), int(kwargs.get("stride", 4))
            occ = Occlusion(target)
            a = occ.attribute(x, sliding_window_shapes=(x.shape[1], w, w), strides=(x.shape[1], s, s),
                              baselines=b, additional_forward_args=(rows,),
                              perturbations_per_eval=kwargs.get("perturbations_per_eval", 16))
        outs.append(_reduce(a.detach(), reduce))
    return torch.cat(outs)
