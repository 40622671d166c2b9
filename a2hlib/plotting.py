"""Figure helpers. Each returns `(fig, ax)` and accepts an existing `ax` (Captum's convention), so
notebooks can compose and save them; `save_figure` writes PNGs atomically under one or more folders.
"""
from __future__ import annotations

import os
import pathlib
from typing import Sequence

import matplotlib

import numpy as np
import torch

from a2hlib.datasets import denormalize
from a2hlib.fileio import atomic_write
from a2hlib.losses import TERMS


def _axes(ax=None, figsize=(6, 4)):
    import matplotlib.pyplot as plt
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def save_figure(fig, name: str, *folders: str | os.PathLike | None, dpi: int = 120) -> list[pathlib.Path]:
    """Save `fig` as `<folder>/<name>.png` in every non-empty folder (temporary file, then rename)."""
    written = []
    for folder in folders:
        if not folder:
            continue
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{name}.png",
                     lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None}))
        written.append(folder / f"{name}.png")
    return written


def to_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """H×W×3 float image in [0, 1] from a normalised 3×H×W tensor or a uint8 H×W×3 array."""
    if isinstance(x, torch.Tensor):
        return denormalize(x.detach().cpu().float()).permute(1, 2, 0).clamp(0, 1).numpy()
    x = np.asarray(x)
    return x.astype(np.float32) / 255 if x.dtype == np.uint8 else x


def plot_loss_terms(history: Sequence[dict[str, float]], ax=None, smooth: int = 5):
    """Every loss term over training steps (log scale), phase changes marked by iteration."""
    fig, ax = _axes(ax, (7, 4))
    steps = np.arange(len(history))
    for name in (*TERMS, "total"):
        values = np.array([h[name] for h in history if name in h], dtype=float)
        if len(values) != len(history) or not np.any(values):
            continue
        kernel = np.ones(min(smooth, len(values))) / min(smooth, len(values))
        ax.plot(steps[:len(np.convolve(values, kernel, "valid"))], np.convolve(values, kernel, "valid"),
                label=name, lw=2 if name == "total" else 1)
    iterations = np.array([h["iteration"] for h in history])
    for s in np.flatnonzero(np.diff(iterations)) + 1:
        ax.axvline(s, color="0.85", lw=0.5, zorder=0)
    ax.set(xlabel="training step (grey lines: outer iterations)", ylabel="loss", yscale="log")
    ax.legend(fontsize=8, ncol=3)
    return fig, ax


def plot_curve(x, ys: dict[str, np.ndarray], xlabel: str, ylabel: str, ax=None, marker: str | None = None):
    """One line per label (precision@N, precision–recall, mAP vs code length, ...)."""
    fig, ax = _axes(ax)
    for label, y in ys.items():
        xs = x[label] if isinstance(x, dict) else x
        ax.plot(xs, y, label=label, marker=marker)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig, ax


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 8,
               borders: Sequence[str | None] | None = None, size: float = 1.3, axes=None):
    """Images in a grid, optional titles and coloured borders (e.g. green = correct, red = wrong)."""
    import matplotlib.pyplot as plt
    n = len(images)
    nrows = max(1, -(-n // ncols))
    if axes is None:
        fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.1), squeeze=False)
    else:
        axes = np.atleast_2d(axes)
        fig = axes.flat[0].figure
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(to_image(images[i]), interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
        colour = borders[i] if borders is not None else None
        for spine in ax.spines.values():
            spine.set_visible(colour is not None)
            if colour is not None:
                spine.set_edgecolor(colour), spine.set_linewidth(3)
    return fig, axes


def heatmap_overlay(image, heat: np.ndarray, ax=None, alpha: float = 0.5, cmap: str = "jet", title: str = ""):
    """A map (any size; resized to the image) over an image."""
    fig, ax = _axes(ax, (3, 3))
    img = to_image(image)
    heat = np.asarray(heat, dtype=float)
    if heat.shape != img.shape[:2]:
        heat = torch.nn.functional.interpolate(torch.as_tensor(heat)[None, None].float(), size=img.shape[:2],
                                               mode="bilinear", align_corners=False)[0, 0].numpy()
    rng = heat.max() - heat.min()
    ax.imshow(img)
    ax.imshow((heat - heat.min()) / (rng if rng > 0 else 1), cmap=matplotlib.colormaps[cmap], alpha=alpha)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return fig, ax
