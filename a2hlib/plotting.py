"""Every figure of the workbook. Each builder returns `(fig, ax)` (or `(fig, axes)`) and most accept
an existing `ax` (Captum's convention), so notebooks can compose them; `save_figure` writes PNGs
atomically into one or more folders. Figures show inline wherever a notebook runs.

One colour per model everywhere (`MODEL_COLORS`): ADSH blue, A²-Net orange, A²-Net++ green.
Sections follow the notebooks: general helpers; 00 overview; 01 data; 02 training; 03 retrieval;
04 simplicity bias (attribution maps, deletion, randomisation, planted shortcut); 05 bit ↔
attribute; 06 results.
"""
from __future__ import annotations

import os
import pathlib
import textwrap
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
import torch

from a2hlib.datasets import denormalize
from a2hlib.fileio import atomic_write
from a2hlib.losses import TERMS

MODEL_COLORS = {"adsh": "#1f77b4", "a2net": "#ff7f0e", "a2netpp": "#2ca02c"}
MODEL_LABELS = {"adsh": "ADSH", "a2net": "A²-Net", "a2netpp": "A²-Net++"}
_OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def model_color(model: str, fallback: int = 0) -> str:
    """The colour of `model` in every figure (models outside MODEL_COLORS get a fixed other colour)."""
    return MODEL_COLORS.get(model, _OTHER_COLORS[fallback % len(_OTHER_COLORS)])


# ---------------------------------------------------------------------------------------- general
def _axes(ax=None, figsize=(6, 4)):
    import matplotlib.pyplot as plt
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def save_figure(fig, name: str, *folders: str | os.PathLike | None, dpi: int = 120) -> list[pathlib.Path]:
    """Save `fig` as `<folder>/<name>.png` in every non-empty folder (atomically). The figure stays
    open, so a notebook still shows it inline."""
    written = []
    for folder in folders:
        if not folder:
            continue
        path = pathlib.Path(folder) / f"{name}.png"
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight",
                                                 metadata={"Software": None}))
        written.append(path)
    return written


def to_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """H×W×3 float image in [0, 1] from a normalised 3×H×W tensor or a uint8 H×W×3 array."""
    if isinstance(x, torch.Tensor):
        return denormalize(x.detach().cpu().float()).permute(1, 2, 0).clamp(0, 1).numpy()
    x = np.asarray(x)
    return x.astype(np.float32) / 255 if x.dtype == np.uint8 else x


def plot_curve(x, ys: dict[str, np.ndarray], xlabel: str, ylabel: str, ax=None, marker: str | None = None,
               colors: Mapping[str, str] | None = None, **line_kwargs):
    """One line per label (precision@N, precision–recall, mAP vs code length, …); `x` is shared or
    a dict label → x. Labels that are model names get their model colour unless `colors` says."""
    fig, ax = _axes(ax)
    for i, (label, y) in enumerate(ys.items()):
        xs = x[label] if isinstance(x, dict) else x
        color = (colors or {}).get(label) or (MODEL_COLORS.get(label) if label in MODEL_COLORS else None)
        ax.plot(xs, y, label=label, marker=marker, color=color, **line_kwargs)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig, ax


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 8,
               borders: Sequence[str | None] | None = None, size: float = 1.3, axes=None,
               row_labels: Sequence[str] | None = None, title_size: float = 7):
    """Images in a grid with optional titles, coloured borders (e.g. green = correct, red = wrong)
    and row labels written left of each row (long names wrap instead of overlapping)."""
    import matplotlib.pyplot as plt
    n = len(images)
    nrows = max(1, -(-n // ncols))
    if axes is None:
        extra = 0.35 if titles is not None else 0.1
        fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + (1.6 if row_labels else 0),
                                                        (size + extra) * nrows), squeeze=False)
    else:
        axes = np.atleast_2d(axes)
        fig = axes.flat[0].figure
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(to_image(images[i]), interpolation="nearest")
        if titles is not None and titles[i]:
            ax.set_title(textwrap.fill(titles[i].replace("_", " "), 18), fontsize=title_size)
        colour = borders[i] if borders is not None else None
        for spine in ax.spines.values():
            spine.set_visible(colour is not None)
            if colour is not None:
                spine.set_edgecolor(colour), spine.set_linewidth(3)
    for r, label in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(textwrap.fill(label.replace("_", " "), 20), rotation=0, ha="right", va="center",
                              fontsize=8)
    return fig, axes


def heatmap_overlay(image, heat: np.ndarray, ax=None, alpha: float = 0.5, cmap: str = "jet", title: str = ""):
    """A map (any size; resized to the image) over an image, scaled to its own range."""
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


def plot_by_model(values: Mapping[str, Sequence[float]], ax=None, ylabel: str = "", title: str = ""):
    """One column per model: a bar at the mean, an error bar of ± sd and a dot per seed."""
    fig, ax = _axes(ax, (3.2, 3))
    for i, (name, v) in enumerate(values.items()):
        v = np.asarray(v, float)
        color = model_color(name, i)
        ax.bar(i, np.nanmean(v), color=color, alpha=0.45, width=0.6)
        if len(v) > 1:
            ax.errorbar(i, np.nanmean(v), yerr=np.nanstd(v, ddof=1), color="k", capsize=4, lw=1)
        ax.scatter(np.full(len(v), i) + np.linspace(-0.12, 0.12, len(v)), v, color=color, s=14, zorder=3,
                   edgecolor="k", linewidth=0.4)
    ax.set_xticks(range(len(values)), [MODEL_LABELS.get(m, m) for m in values])
    ax.set(ylabel=ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


# ----------------------------------------------------------------------------------- 00 overview
def plot_attention_maps(images: torch.Tensor, attention: torch.Tensor, size: float = 1.5):
    """Rows = images; the image, then each of the M attention maps over it (own range each)."""
    import matplotlib.pyplot as plt
    n, m = attention.shape[:2]
    fig, axes = plt.subplots(n, m + 1, figsize=(size * (m + 1), size * n + 0.3), squeeze=False,
                             layout="constrained")
    for i in range(n):
        axes[i, 0].imshow(to_image(images[i]))
        axes[i, 0].set_xticks([]), axes[i, 0].set_yticks([])
        for j in range(m):
            heatmap_overlay(images[i], attention[i, j].detach().cpu().numpy(), ax=axes[i, j + 1],
                            title=f"part {j + 1}" if i == 0 else "")
    axes[0, 0].set_title("input", fontsize=8)
    return fig, axes


# --------------------------------------------------------------------------------------- 01 data
def plot_class_counts(counts, ax=None):
    """Stacked bars of images per class and split (`counts`: DataFrame, classes × splits)."""
    fig, ax = _axes(ax, (8, 2.5))
    counts.plot.bar(ax=ax, width=0.9, stacked=True)
    ax.set(xlabel="class id", ylabel="images")
    ax.set_xticks([])
    return fig, ax


def plot_part_masks(images: Sequence[np.ndarray], part_masks: np.ndarray, part_names: Sequence[str],
                    titles: Sequence[str]):
    """Each image beside a copy painted with its part masks (P×H×W each), one colour per part."""
    import matplotlib.pyplot as plt
    colours = plt.get_cmap("tab10")(np.arange(len(part_names)))[:, :3]
    shown, labels = [], []
    for img, masks, title in zip(images, part_masks, titles):
        img = np.asarray(img, dtype=np.float32) / 255 if np.asarray(img).dtype == np.uint8 else np.asarray(img)
        painted = img.copy()
        for p in range(len(part_names)):
            painted[masks[p]] = colours[p]
        shown += [img, painted]
        labels += [title, "parts"]
    fig, axes = image_grid(shown, labels, ncols=4, size=1.6)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[p]) for p in range(len(part_names))]
    fig.legend(handles, part_names, loc="lower center", ncol=len(handles), fontsize=7, bbox_to_anchor=(0.5, -0.04))
    return fig, axes


# ----------------------------------------------------------------------------------- 02 training
def plot_loss_terms(history: Sequence[dict[str, float]], ax=None, smooth: int = 5, phase2_from: int | None = None):
    """Every loss term over training steps (log scale); thin grey lines at outer iterations, a dashed
    line where phase 2 starts (`phase2_from`: first outer iteration of phase 2). Curves are a moving
    average over `smooth` steps, shortened for short histories so every term shows."""
    fig, ax = _axes(ax, (7, 4))
    steps = np.arange(len(history))
    window = max(1, min(smooth, len(history) // 4 or 1))
    kernel = np.ones(window) / window
    for name in (*TERMS, "total"):
        values = np.array([h[name] for h in history if name in h], dtype=float)
        if len(values) != len(history) or not np.any(values):
            continue
        smoothed = np.convolve(values, kernel, "valid")
        ax.plot(steps[window - 1:window - 1 + len(smoothed)], smoothed, label=name, lw=2 if name == "total" else 1,
                marker="." if len(smoothed) < 20 else None)
    iterations = np.array([h["iteration"] for h in history])
    for s in np.flatnonzero(np.diff(iterations)) + 1:
        ax.axvline(s, color="0.85", lw=0.5, zorder=0)
    if phase2_from is not None and (iterations >= phase2_from).any():
        first = int(np.argmax(iterations >= phase2_from))
        ax.axvline(first, color="0.3", ls="--", lw=1)
        ax.annotate("phase 2: + rec, dec", (first, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", fontsize=8)
    ax.set(xlabel="training step (grey: outer iterations)", ylabel="loss", yscale="log")
    ax.legend(fontsize=8, ncol=3)
    return fig, ax


# ---------------------------------------------------------------------------------- 03 retrieval
def plot_retrieval_curves(reports: Mapping[str, Any], title: str = ""):
    """precision@N and precision–recall over Hamming radius, one line per protocol
    (`reports`: protocol → `a2hlib.evaluation.RetrievalReport`)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    plot_curve({n: r.precision_at_n[0] for n, r in reports.items()},
               {n: r.precision_at_n[1] for n, r in reports.items()}, "N (top-N retrieved)", "precision@N", ax=axes[0])
    plot_curve({n: r.pr_by_radius[1] for n, r in reports.items()}, {n: r.pr_by_radius[0] for n, r in reports.items()},
               "recall", "precision", ax=axes[1], marker=".")
    axes[1].set_title("precision–recall over Hamming radius 0..k", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig, axes


def plot_retrieval_examples(query_images: Sequence, retrieved: Sequence[Sequence], relevant: np.ndarray,
                            title: str = ""):
    """Rows: a query (black border) and its nearest database images (green: relevant, red: not)."""
    shown = len(retrieved[0])
    images, titles, borders = [], [], []
    for q, row, rel in zip(query_images, retrieved, relevant):
        images += [q, *row]
        titles += ["query"] + [""] * shown
        borders += ["black"] + ["tab:green" if r else "tab:red" for r in rel]
    fig, axes = image_grid(images, titles, ncols=shown + 1, borders=borders)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig, axes


# ------------------------------------------------------------------------------ 04 attributions
def plot_attribution(image, attr, ax=None, mask=None, title: str = "", cmap: str = "inferno",
                     alpha: float = 0.6, clip: float = 99.0, box=None):
    """One map over its image, clipped at the `clip` percentile of |attr| so a few extreme pixels
    do not wash it out; `mask` (H×W bool) is outlined in cyan and `box` ((x, y, w, h) in pixels,
    e.g. the shortcut patch) in lime."""
    heat = np.abs(np.asarray(attr.detach().cpu() if isinstance(attr, torch.Tensor) else attr, dtype=float))
    if clip is not None and heat.size and np.percentile(heat, clip) > 0:
        heat = np.minimum(heat, np.percentile(heat, clip))
    fig, ax = heatmap_overlay(image, heat, ax=ax, alpha=alpha, cmap=cmap, title=title)
    if mask is not None:
        ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="cyan", linewidths=0.8)
    if box is not None:
        _draw_box(ax, box)
    return fig, ax


def _draw_box(ax, box) -> None:
    import matplotlib.patches as patches
    x, y, w, h = box
    ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="lime", lw=1.2))


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the bounding box of a boolean mask, or None when it is empty."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def plot_attribution_grid(images: Sequence, maps: Mapping[str, Sequence], masks: Sequence | None = None,
                          size: float = 1.6, axes=None, boxes: Sequence | None = None, title: str = "", **kwargs):
    """Rows = images; columns = the image, then one map per entry of `maps` (name → B maps), so
    models or methods sit side by side on the same images."""
    import matplotlib.pyplot as plt
    n, names = len(images), list(maps)
    if axes is None:
        fig, axes = plt.subplots(n, len(names) + 1, figsize=(size * (len(names) + 1), size * n + 0.4),
                                 squeeze=False, layout="constrained")
    else:
        axes = np.atleast_2d(axes)
        fig = axes.flat[0].figure
    for r in range(n):
        ax = axes[r, 0]
        ax.imshow(to_image(images[r]))
        ax.set_xticks([]), ax.set_yticks([])
        if masks is not None:
            ax.contour(np.asarray(masks[r], dtype=float), levels=[0.5], colors="cyan", linewidths=0.8)
        if boxes is not None and boxes[r] is not None:
            _draw_box(ax, boxes[r])
        for c, name in enumerate(names, start=1):
            plot_attribution(images[r], maps[name][r], ax=axes[r, c], mask=None if masks is None else masks[r],
                             title=name if r == 0 else "", box=None if boxes is None else boxes[r], **kwargs)
    axes[0, 0].set_title("image", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, axes


def plot_deletion_curves(curves: Mapping[str, Mapping[str, Any]], baselines: Mapping[str, Mapping[str, Any]],
                         labels: Mapping[str, str]):
    """One panel per score (`curves[score][model]`: `a2hlib.evidence.DeletionCurve`); solid: most
    attributed pixels first, dashed: random order (`baselines`, same keys)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False, layout="constrained")
    for ax, (score, by_model) in zip(axes[0], curves.items()):
        for i, (model, curve) in enumerate(by_model.items()):
            color = model_color(model, i)
            ax.plot(curve.fractions, curve.scores, marker=".", color=color, label=MODEL_LABELS.get(model, model))
            base = baselines[score][model]
            ax.plot(base.fractions, base.scores, ls="--", lw=0.8, color=color)
        ax.set(xlabel="share of pixels deleted (most attributed first)", ylabel=labels.get(score, score))
        ax.set_title("dashed: random deletion order", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig, axes


def plot_cascade(cascade: Mapping[str, Sequence[tuple[str, float]]], model: str, ax=None,
                 names: Mapping[str, str] | None = None):
    """Spearman correlation between trained and randomised maps as the weights are re-initialised
    from the code layer down (`cascade`: method → [(stage, correlation)])."""
    fig, ax = _axes(ax, (6.5, 3.4))
    stages: list[str] = []
    for method, steps in cascade.items():
        stages = [s for s, _ in steps]
        ax.plot(range(len(steps)), [v for _, v in steps], marker="o", label=(names or {}).get(method, method))
    ax.set_xticks(range(len(stages)), stages, rotation=45, fontsize=8)
    ax.axhline(0, color="0.7", lw=0.8)
    lowest = min([v for steps in cascade.values() for _, v in steps] or [0.0])
    ax.set(ylabel="Spearman vs trained maps", xlabel="re-initialised from the code layer down to",
           ylim=(min(-0.2, lowest - 0.05), 1.05), title=f"cascading randomisation, {MODEL_LABELS.get(model, model)}")
    ax.legend(fontsize=8)
    return fig, ax


def plot_shortcut(table, models: Sequence[str], share_column: str, share_label: str, cue_area: float):
    """The planted-shortcut experiment: query mAP by cue mode (same / random / absent), mAP lost
    when the cue is removed, and the attribution share on the cue, per model over seeds
    (`table`: one row per (model, seed) with columns map_same, map_random, map_absent, map_drop,
    `share_column`)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), layout="constrained")
    width = 0.25
    for i, mode in enumerate(["same", "random", "absent"]):
        for j, m in enumerate(models):
            v = table.loc[table.model == m, f"map_{mode}"].to_numpy()
            axes[0].bar(j + (i - 1) * width, v.mean(), width, color=model_color(m, j), alpha=(0.9, 0.6, 0.3)[i],
                        label=mode if j == 0 else None, yerr=v.std(ddof=1) if len(v) > 1 else None, capsize=3,
                        edgecolor="k", linewidth=0.4)
    axes[0].set_xticks(range(len(models)), [MODEL_LABELS.get(m, m) for m in models])
    axes[0].set(ylabel="query mAP", title="mAP by cue at query time (dark → light: same, random, absent)")
    axes[0].title.set_fontsize(9)
    plot_by_model({m: table.loc[table.model == m, "map_drop"] for m in models}, ax=axes[1],
                  ylabel="mAP(same) − mAP(absent)", title="mAP lost when the cue is removed")
    plot_by_model({m: table.loc[table.model == m, share_column] for m in models}, ax=axes[2],
                  ylabel="share of attribution on the cue", title=share_label)
    axes[2].axhline(cue_area, color="0.4", ls=":", lw=1)
    axes[2].annotate("cue's share of the image", (0, cue_area), xytext=(2, 3), textcoords="offset points", fontsize=7)
    return fig, axes


# --------------------------------------------------------------------------- 05 bit ↔ attribute
def plot_association_heatmap(matrix: np.ndarray, names: Sequence[str], ax=None, title: str = "",
                             vmin: float | None = 0.0, vmax: float | None = None, cmap: str = "viridis",
                             label: str = "MI above chance (bits)", cbar: bool = True):
    """Heatmap of a bits × attributes matrix (bit 0 on top; NaN cells blank). Drawn with `imshow`:
    seaborn's heatmap draws the whole figure once per call to check its labels, seconds per panel."""
    import matplotlib.pyplot as plt

    from a2hlib.bit_attributes import short_name
    matrix = np.asarray(matrix, float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.22 * matrix.shape[1] + 2), max(2.5, 0.22 * matrix.shape[0] + 1)))
    fig = ax.figure
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(matrix.shape[1]), [short_name(n) for n in names], fontsize=7, rotation=90)
    ax.set_yticks(range(matrix.shape[0]), [str(b) for b in range(matrix.shape[0])], fontsize=7)
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    if cbar:
        fig.colorbar(image, ax=ax, label=label)
    ax.set(xlabel="attribute", ylabel="bit", title=title)
    return fig, ax


def plot_association_panels(panels: Sequence[tuple[str, Mapping[str, np.ndarray], np.ndarray]],
                            names: Sequence[str], code_length: int, title: str = ""):
    """Rows = models, columns = panels: each panel is (title, model → bits × attributes matrix,
    attribute columns to show); one colour scale for all."""
    import matplotlib.pyplot as plt
    models = list(panels[0][1])
    vmax = max(float(np.nanmax(np.r_[m[:, cols].ravel(), 1e-9])) for _, mats, cols in panels for m in mats.values())
    fig, axes = plt.subplots(len(models), len(panels), squeeze=False, layout="constrained",
                             figsize=(0.2 * sum(len(c) for _, _, c in panels) + 3,
                                      (0.16 * code_length + 1.2) * len(models)),
                             gridspec_kw={"width_ratios": [max(len(c), 4) for _, _, c in panels]})
    for r, model in enumerate(models):
        for c, (panel_title, mats, cols) in enumerate(panels):
            plot_association_heatmap(mats[model][:, cols], [names[i] for i in cols], ax=axes[r, c], vmin=0,
                                     vmax=vmax, title=f"{MODEL_LABELS.get(model, model)}: {panel_title}",
                                     cbar=c == len(panels) - 1)
            if r < len(models) - 1:
                axes[r, c].set_xticklabels([]), axes[r, c].set_xlabel("")
    if title:
        fig.suptitle(title)
    return fig, axes


def plot_alignment_summary(summaries, models: Sequence[str], quantile: float, title: str = ""):
    """Best-attribute MI above chance and the share of attributes captured, per scope and model:
    bars at the mean over seeds, error bars spanning the seeds' range (`summaries`: one row per
    model, seed and scope)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    palette = {m: model_color(m, i) for i, m in enumerate(models)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
    sns.barplot(data=summaries, x="scope", y="mi_best_above_chance", hue="model", hue_order=models,
                palette=palette, errorbar=("pi", 100), ax=axes[0])
    axes[0].set(ylabel="best-attribute MI above chance (bits)", xlabel="", title="mean over bits")
    shares = summaries.assign(captured=summaries.attributes_captured / summaries.attributes)
    sns.barplot(data=shares, x="scope", y="captured", hue="model", hue_order=models, palette=palette,
                errorbar=("pi", 100), ax=axes[1])
    axes[1].axhline(1 - quantile, color="0.3", ls="--", lw=1, label="chance")
    axes[1].set(ylabel="share of attributes captured by some bit", xlabel="", title=f"{quantile:.0%} null level")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8, rotation=15)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig, axes


def plot_bit_gallery(gallery: Mapping[str, Any], size: float = 1.2, title: str = ""):
    """A bit's gallery from `a2hlib.bit_attributes.gallery`: the images with the highest and the
    lowest relaxed value (green border: the attribute is present; title: u and the class number)
    and, for A²-Net models, the attention map of every part on them (each map scaled to its own
    range)."""
    import matplotlib.pyplot as plt

    from a2hlib.bit_attributes import short_name
    images, maps, count = gallery["images"], gallery["attention"], len(gallery["high"])
    parts = 0 if maps is None else maps.shape[1]
    fig, axes = plt.subplots(1 + parts, 2 * count + 1, squeeze=False,
                             figsize=(size * (2 * count + 1), size * (1.3 + parts) + 0.9),
                             gridspec_kw={"height_ratios": [1.3] + [1.0] * parts, "hspace": 0.08, "wspace": 0.06})
    for r in range(1 + parts):
        axes[r, count].axis("off")  # a blank column between the two halves
    for half in range(2):
        first, rows = half * (count + 1), slice(half * count, (half + 1) * count)
        classes = [c.split(".", 1)[0] if "." in c else c for c in gallery["classes"][rows]]
        titles = [f"u {u:+.2f}\nclass {c}" for u, c in zip(gallery["u"][rows], classes)]
        borders = ["tab:green" if p else "tab:red" for p in gallery["present"][rows]]
        image_grid(list(images[rows]), titles, ncols=count, borders=borders, axes=axes[0:1, first:first + count],
                   title_size=7)
        for p in range(parts):
            for c in range(count):
                heatmap_overlay(images[half * count + c], maps[half * count + c, p], ax=axes[p + 1, first + c])
            axes[p + 1, first].set_ylabel(f"part {p + 1}", fontsize=8)
        axes[0, first].set_ylabel("image", fontsize=8)
        axes[0, first].annotate("highest u" if half == 0 else "lowest u", (0, 1.42), xycoords="axes fraction",
                                fontsize=9, weight="bold")
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.01, top=1 - 0.95 / fig.get_figheight())
    fig.suptitle(f"{title}bit {gallery['bit']} ↔ {short_name(gallery['attribute'])}: present in "
                 f"{gallery['present'][:count].mean():.0%} of the highest, {gallery['present'][count:].mean():.0%} "
                 f"of the lowest; {gallery['classes_high']} and {gallery['classes_low']} classes on the two sides",
                 fontsize=9, y=1 - 0.12 / fig.get_figheight())
    return fig, axes


# ------------------------------------------------------------------------------------ 06 results
def plot_map_vs_code_length(frame, metric: str, models: Sequence[str] | None = None):
    """mAP (%) against code length, one panel per dataset, one line per model (mean over seeds,
    error bars ± sd where there are several seeds)."""
    import matplotlib.pyplot as plt
    datasets = sorted(frame["dataset"].unique()) if len(frame) else []
    fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(5 * max(len(datasets), 1), 3.5), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes[0], datasets):
        sub = frame[frame["dataset"] == name]
        present = list(sub["model"].unique())
        order = [m for m in (models or MODEL_COLORS) if m in present] + sorted(set(present) - set(models or MODEL_COLORS))
        for i, model in enumerate(order):
            g = sub[sub["model"] == model].groupby("bits")[metric].agg(["mean", "std"]).reset_index()
            ax.errorbar(g["bits"], 100 * g["mean"], yerr=100 * g["std"].fillna(0), marker="o", capsize=3,
                        color=model_color(model, i), label=MODEL_LABELS.get(model, model))
        ax.set(xlabel="code length (bits)", ylabel="mAP@all (%)", title=name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig, axes
