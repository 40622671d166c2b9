"""Figure builders (a2hlib.plotting): each returns (fig, ax/axes), accepts an existing ax where it
says so, uses one colour per model, and draws what its data says."""
import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from a2hlib import bit_attributes as ba
from a2hlib import plotting

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SIZE = 16


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_attribution_maps_return_figure_and_accept_axes():
    images, maps = torch.randn(3, 3, SIZE, SIZE), torch.rand(3, SIZE, SIZE)
    fig, ax = plotting.plot_attribution(images[0], maps[0], mask=maps[0] > 0.5, box=(2, 2, 4, 4), title="t")
    assert ax.figure is fig and len(ax.patches) == 1  # the lime box
    fig2, axes = plt.subplots(1, 2)
    f, a = plotting.plot_attribution(images[1], maps[1].numpy(), ax=axes[1])
    assert f is fig2 and a is axes[1]
    fig3, grid = plotting.plot_attribution_grid(images, {"a": maps, "b": maps}, masks=maps > 0.5, title="x")
    assert grid.shape == (3, 3) and grid[0, 1].get_title() == "a"


def test_mask_box():
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:7] = True
    assert plotting.mask_box(mask) == (3, 2, 4, 3)
    assert plotting.mask_box(np.zeros((4, 4), bool)) is None


def test_one_colour_per_model_everywhere():
    fig, ax = plotting.plot_by_model({"adsh": [0.1, 0.2], "a2netpp": [0.3]}, ylabel="share")
    bars = [p for p in ax.patches]
    assert matplotlib.colors.to_hex(bars[0].get_facecolor()) == plotting.MODEL_COLORS["adsh"]
    assert matplotlib.colors.to_hex(bars[1].get_facecolor()) == plotting.MODEL_COLORS["a2netpp"]
    frame = pd.DataFrame({"dataset": "toy", "model": ["a2netpp", "adsh", "adsh"], "bits": [12, 12, 24],
                          "seed": 0, "m": [0.5, 0.4, 0.45]})
    fig, axes = plotting.plot_map_vs_code_length(frame, "m")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    lines = {label: matplotlib.colors.to_hex(h.lines[0].get_color()) for h, label in zip(handles, labels)}
    assert lines == {"ADSH": plotting.MODEL_COLORS["adsh"], "A²-Net++": plotting.MODEL_COLORS["a2netpp"]}
    fig, ax = plotting.plot_curve([1, 2], {"adsh": [0.1, 0.2], "other": [0.3, 0.1]}, "x", "y")
    assert matplotlib.colors.to_hex(ax.get_lines()[0].get_color()) == plotting.MODEL_COLORS["adsh"]


def test_loss_terms_mark_phase_two_and_show_short_histories():
    history = [{"iteration": i // 2, "epoch": 0, "hash": 1.0 / (i + 1), "quant": 2.0, "rec": 0.5, "dec": 0.1,
                "total": 3.0} for i in range(4)]
    fig, ax = plotting.plot_loss_terms(history, phase2_from=1)
    labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert {"hash", "quant", "rec", "dec", "total"} <= set(labels)
    assert all(len(line.get_xdata()) >= 2 for line in ax.get_lines() if line.get_label() in labels)
    assert any(t.get_text().startswith("phase 2") for t in ax.texts)


def test_image_grid_row_labels_keep_full_class_names():
    images = [np.zeros((8, 8, 3), np.uint8)] * 4
    name = "Warbler with striped wings and a forked tail"
    fig, axes = plotting.image_grid(images, ncols=2, row_labels=[name, "b"])
    assert axes[0, 0].get_ylabel().replace("\n", " ") == name.replace("_", " ")


def test_bit_gallery_and_heatmaps(blob_dataset):
    from a2hlib.models import build_model, encode
    torch.manual_seed(0)
    model = build_model("a2net", 6, backbone="small", num_parts=2, image_size=32).eval()
    u = encode(model, blob_dataset)
    present = (blob_dataset.targets % 2).numpy()
    items = ba.gallery(blob_dataset, u, 1, present, "has_parity::odd", ["c0", "c1", "c2", "c3"], model=model,
                       count=3, per_class=1)
    assert items["classes_high"] == 3 and items["classes_low"] == 3  # one image per class on each side
    fig, axes = plotting.plot_bit_gallery(items)
    assert axes.shape == (3, 7)
    matrix = np.random.rand(6, 3)
    matrix[2, 1] = np.nan
    fig, ax = plotting.plot_association_heatmap(matrix, ["has_a::x", "has_b::y", "c"], title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a: x", "b: y", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2", "3", "4", "5"]  # bit 0 on top
    shown = ax.images[0].get_array()
    assert shown.mask.sum() == 1 and shown.mask[2, 1] and np.allclose(shown[0], matrix[0])  # NaN left blank
    mats = {"adsh": np.random.rand(6, 3), "a2net": np.random.rand(6, 3)}
    fig, axes = plotting.plot_association_panels([("all", mats, np.array([0, 2]))], ["a", "b", "c"], 6)
    assert axes.shape == (2, 1) and len(axes[0, 0].get_xticklabels()) == 2
