"""a2hlib.evidence on hand-made masks and maps with known answers, the deletion curve of a linear
scorer against its closed form, and the randomisation sanity check."""
import math

import numpy as np
import pytest
import torch

from a2hlib import evidence as E
from a2hlib.models import build_model

H = W = 8
N = H * W


def test_mask_share_known_answers():
    attr = np.zeros((3, H, W))
    attr[0, 2:4, 2:4] = 1.0                # all inside
    attr[1] = 1.0                          # uniform: share = mask area
    attr[2, 0, 0], attr[2, 3, 3] = -3.0, 1.0  # signed: abs vs positive mass
    mask = np.zeros((H, W), bool)
    mask[2:6, 2:6] = True
    assert E.mask_share(attr, mask) == pytest.approx([1.0, 16 / 64, 0.25])
    assert E.mask_share(attr, mask, mode="positive") == pytest.approx([1.0, 16 / 64, 1.0])
    assert np.isnan(E.mask_share(np.zeros((H, W)), mask)[0])
    per_image = np.stack([mask, ~mask, mask])
    assert E.mask_share(attr, per_image) == pytest.approx([1.0, 48 / 64, 0.25])


def test_part_shares_of_disjoint_parts_add_up_to_the_object_share():
    rng = np.random.default_rng(0)
    attr = rng.random((2, H, W))
    parts = np.zeros((2, 3, H, W), bool)
    parts[:, 0, :2], parts[:, 1, 2:4], parts[:, 2, 4:5] = True, True, True
    shares = E.part_shares(attr, parts)
    assert shares.shape == (2, 3)
    assert shares.sum(1) == pytest.approx(E.mask_share(attr, parts.any(1)))
    m = E.measures(attr, parts.any(1), parts, ["a", "b", "c"], shortcut_mask=parts[:, 2])
    assert set(m) == {"object_share", "part:a", "part:b", "part:c", "shortcut_share", "entropy", "gini", "area50"}
    assert m["shortcut_share"] == pytest.approx(shares[:, 2])


def test_concentration_of_uniform_and_one_hot_maps():
    uniform, one_hot = np.ones((H, W)), np.zeros((H, W))
    one_hot[3, 5] = -2.0
    assert E.entropy(uniform)[0] == pytest.approx(math.log(N))
    assert E.entropy(uniform, normalized=True)[0] == pytest.approx(1.0)
    assert E.gini(uniform)[0] == pytest.approx(0.0, abs=1e-12)
    assert E.area_for_mass(uniform, 0.5)[0] == pytest.approx(0.5)
    assert E.entropy(one_hot)[0] == pytest.approx(0.0)
    assert E.gini(one_hot)[0] == pytest.approx((N - 1) / N)
    assert E.area_for_mass(one_hot, 0.5)[0] == pytest.approx(1 / N)
    # half the pixels hold all the mass, evenly: area for 50 % = a quarter of the image
    half = np.zeros((H, W))
    half[:4] = 1.0
    assert E.area_for_mass(half, 0.5)[0] == pytest.approx(0.25)
    assert E.gini(half)[0] == pytest.approx(0.5)
    assert E.entropy(half)[0] == pytest.approx(math.log(N / 2))
    c = E.concentration(np.stack([uniform, one_hot]))
    assert c["area50"] == pytest.approx([0.5, 1 / N])


def test_deletion_curve_of_a_linear_scorer_matches_closed_form():
    weights = torch.arange(1, N + 1, dtype=torch.float64).view(1, 1, H, W)  # pixel values 1..n
    images = torch.ones(2, 3, H, W, dtype=torch.float64)

    def score(x):  # per image: Σ w·x over channels and pixels
        return (x * weights).flatten(1).sum(1)

    fractions = np.linspace(0, 1, N + 1)
    curve = E.deletion_curve(score, images, weights.expand(2, 1, H, W)[:, 0], fractions)
    m = np.arange(N + 1)  # deleting the top m pixels leaves 1 + … + (n − m), times 3 channels
    expected = 3 * (N - m) * (N - m + 1) / 2
    assert curve.scores == pytest.approx(expected)
    assert curve.per_example.shape == (N + 1, 2)
    auc = np.sum((expected[1:] + expected[:-1]) / 2) / N  # trapezoid on the grid, range 1
    assert curve.auc == pytest.approx(auc)
    assert curve.auc_relative == pytest.approx(auc / expected[0])
    # the reversed order (least attributed first) keeps the score higher: larger area
    worst = E.deletion_curve(score, images, (N + 1 - weights[:, 0]).expand(2, H, W), fractions)
    assert worst.auc > curve.auc
    # a batch score (one number) and a non-zero fill
    batch = E.deletion_curve(lambda x: float(score(x).sum()), images, weights[:, 0], [0, 0.5], fill=1.0)
    assert batch.per_example is None and batch.scores == pytest.approx([2 * expected[0]] * 2)


def test_bit_agreement_and_map_scores():
    torch.manual_seed(0)
    model = build_model("adsh", 4, image_size=16).eval()
    x = torch.randn(4, 3, 16, 16)
    agree = E.bit_agreement_score(model, x)
    assert torch.equal(agree(x), torch.ones(4))
    from a2hlib.codes import binarize
    codes = binarize(model(x).detach())
    from a2hlib import metrics
    labels, db = torch.tensor([0, 1, 0, 1]), torch.sign(torch.randn(6, 4)) + 0
    db[db == 0] = 1
    db_labels = torch.tensor([0, 0, 1, 1, 0, 1])
    assert E.map_score(model, db, labels, db_labels)(x) == pytest.approx(
        metrics.mean_average_precision(codes, db, labels, db_labels))


def test_randomization_check_identical_vs_randomised():
    from a2hlib.attribution import BitTarget
    torch.manual_seed(0)
    model = build_model("a2net", 4, num_parts=2, image_size=16).eval()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))

    def make(m):
        return BitTarget.for_images(m, 0, x)

    names = [s for s, _ in E.model_stages(model)]
    assert names[:3] == ["head", "layer4", "attention"] and names[-1] == "stem.0" and "stem.2" not in names
    same = E.randomize_model(model, stages=[])  # nothing re-initialised: an identical copy
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))
    from a2hlib.attribution import attribute
    maps = attribute("gradcam", make(model), x)
    identical = E.spearman_maps(maps, attribute("gradcam", make(same), x))
    assert identical == pytest.approx(np.ones(3))
    check = E.randomization_check(model, make, x, "gradcam", cascade=True, seed=1)
    assert check["spearman"] < 0.9 * np.mean(identical)
    assert [s for s, _ in check["cascade"]] == names
    head = E.randomize_model(model, ["head"], seed=1)
    assert not torch.equal(head.W, model.W) and torch.equal(head.stem[0].weight, model.stem[0].weight)


def test_deletion_curve_accepts_a_fill_value_per_channel():
    images = torch.zeros(2, 3, 4, 4)
    attr = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(0))
    fill = torch.tensor([1.0, 2.0, 3.0])
    seen = []

    def score(x):
        seen.append(x.clone())
        return x.mean(dim=(1, 2, 3))

    E.deletion_curve(score, images, attr, [0.0, 1.0], fill=fill)
    assert torch.equal(seen[-1][:, :, 0, 0], fill.expand(2, 3))
