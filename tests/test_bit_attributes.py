"""Bit × attribute measures (a2hlib.bit_attributes, notebooks/05_bit_attributes.ipynb): reference
implementations, a planted bit↔attribute relation that must be found, independent codes at chance."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from a2hlib import bit_attributes as ba


def _ref_mi(b: np.ndarray, a: np.ndarray) -> float:
    """Plug-in MI in bits of two 0/1 vectors, plain loops."""
    n = len(b)
    mi = 0.0
    for x in (0, 1):
        for y in (0, 1):
            nxy = sum(1 for i in range(n) if b[i] == x and a[i] == y)
            nx = sum(1 for i in range(n) if b[i] == x)
            ny = sum(1 for i in range(n) if a[i] == y)
            if nxy:
                mi += nxy / n * math.log2(nxy * n / (nx * ny))
    return mi


@pytest.fixture
def random_data():
    rng = np.random.default_rng(0)
    n, k, A = 90, 5, 7
    u = np.round(rng.uniform(-1, 1, (n, k)), 1)  # rounding makes many ties
    attrs = (rng.random((n, A)) < rng.uniform(0.1, 0.6, A)).astype(np.uint8)
    valid = rng.random((n, A)) < 0.8
    strata = rng.integers(0, 4, n)
    return u, attrs, valid, strata


def test_auc_matches_sklearn_with_ties_and_mask(random_data):
    u, attrs, valid, _ = random_data
    auc = ba.auc_matrix(torch.as_tensor(u), attrs)
    masked = ba.auc_matrix(u, attrs, valid)
    for j in range(u.shape[1]):
        for a in range(attrs.shape[1]):
            assert auc[j, a] == pytest.approx(roc_auc_score(attrs[:, a], u[:, j]))
            m = valid[:, a]
            assert masked[j, a] == pytest.approx(roc_auc_score(attrs[m, a], u[m, j]))


@pytest.mark.parametrize("masked", [False, True])
def test_stratified_auc_is_pooled_within_class_auc(random_data, masked):
    u, attrs, valid, strata = random_data
    valid = valid if masked else np.ones_like(valid)
    auc = ba.auc_matrix(u, attrs, valid if masked else None, strata=strata)
    for j in range(u.shape[1]):
        for a in range(attrs.shape[1]):
            num = den = 0.0
            for c in np.unique(strata):
                rows = (strata == c) & valid[:, a]
                y, s = attrs[rows, a], u[rows, j]
                p, n = y.sum(), len(y) - y.sum()
                if p and n:
                    num += roc_auc_score(y, s) * p * n
                    den += p * n
            assert auc[j, a] == pytest.approx(num / den)


def test_degenerate_attributes_are_nan():
    u = np.array([[0.1], [0.5], [-0.2], [0.3]])
    attrs = np.array([[1, 0, 1], [1, 0, 0], [1, 0, 1], [1, 0, 0]])
    assert np.isnan(ba.auc_matrix(u, attrs)[0, :2]).all()
    assert np.isnan(ba.mutual_information(u, attrs)[0, :2]).all()
    assert not np.isnan(ba.mutual_information(u, attrs)[0, 2])
    # constant inside every stratum: no within-class measure
    strata = np.array([0, 0, 1, 1])
    same = np.array([[1], [1], [0], [0]])
    assert np.isnan(ba.auc_matrix(u, same, strata=strata)).all()
    assert np.isnan(ba.mutual_information(u, same, strata=strata)).all()


def test_mi_matches_loop_reference(random_data):
    u, attrs, valid, strata = random_data
    bits = np.where(u >= 0, 1, -1)
    mi = ba.mutual_information(bits, attrs)
    masked = ba.mutual_information(u, attrs, valid)  # relaxed input, sign(0) = +1
    cond = ba.mutual_information(u, attrs, valid, strata=strata)
    b01 = (u >= 0).astype(int)
    for j in range(u.shape[1]):
        for a in range(attrs.shape[1]):
            assert mi[j, a] == pytest.approx(_ref_mi(b01[:, j], attrs[:, a]), abs=1e-12)
            m = valid[:, a]
            assert masked[j, a] == pytest.approx(_ref_mi(b01[m, j], attrs[m, a]), abs=1e-12)
            ref = sum(((strata == c) & m).sum() / m.sum()
                      * _ref_mi(b01[(strata == c) & m, j], attrs[(strata == c) & m, a])
                      for c in np.unique(strata) if ((strata == c) & m).any())
            assert cond[j, a] == pytest.approx(ref, abs=1e-12)


def test_mi_known_values():
    a = np.array([[1], [0], [1], [0]])
    assert ba.mutual_information(np.array([[1], [-1], [1], [-1]]), a)[0, 0] == pytest.approx(1.0)
    assert ba.mutual_information(np.array([[1], [1], [-1], [-1]]), a)[0, 0] == pytest.approx(0.0)
    assert ba.mutual_information(np.array([[0.0], [-1], [0.0], [-1]]), a)[0, 0] == pytest.approx(1.0)


def _planted(n=600, k=8, A=12, seed=1):
    rng = np.random.default_rng(seed)
    attrs = (rng.random((n, A)) < 0.4).astype(np.uint8)
    u = np.tanh(rng.normal(0, 1, (n, k)))
    flips = rng.random(n) < 0.1
    sign = np.where(attrs[:, 5] == 1, 1.0, -1.0) * np.where(flips, -1.0, 1.0)
    u[:, 3] = sign * rng.uniform(0.05, 1.0, n)  # bit 3 = attribute 5 with 10 % flips
    return u, attrs


def test_planted_relation_is_found():
    u, attrs = _planted()
    names = [f"has_attr{i}::x" for i in range(attrs.shape[1])]
    res = ba.analyse(u, attrs, names, n_permutations=200, seed=0)
    top = res.top_attributes(top=1)
    assert top.loc[top.bit == 3, "column"].item() == 5
    assert res.best_bit() == (3, 5)
    assert res.best_attribute(3) == 5
    q = res.null.cell_quantile("mi", 0.99)
    assert res.mi[3, 5] > 0.4 and res.mi[3, 5] > 10 * q[3, 5]   # 1 − H(0.1) ≈ 0.53 bits
    assert res.auc[3, 5] > 0.85
    summary = res.summary()
    assert summary["attributes_captured"] >= 1 and summary["bits_aligned"] >= 1
    assert summary["mi_best_above_chance"] > 0.04  # one strong bit among 8
    # flipping the bit's sign keeps MI and mirrors AUC
    flipped = ba.auc_matrix(-u, attrs)
    assert flipped[3, 5] == pytest.approx(1 - res.auc[3, 5])
    assert top.loc[top.bit == 3, "direction"].item() == "+1 ↔ present"


def test_independent_codes_are_at_chance():
    rng = np.random.default_rng(2)
    n, k, A = 400, 16, 30
    u = np.tanh(rng.normal(0, 1, (n, k)))
    attrs = (rng.random((n, A)) < rng.uniform(0.2, 0.6, A)).astype(np.uint8)
    res = ba.analyse(u, attrs, [str(i) for i in range(A)], n_permutations=200, seed=1)
    s = res.summary(quantile=0.99)
    assert abs(s["mi_best_above_chance"]) < 0.004
    assert abs(s["auc_best_above_chance"]) < 0.02
    assert s["attributes_captured"] <= 2 and s["bits_aligned"] <= 2   # about 0.3 and 0.16 expected
    assert s["attributes_captured_by_chance"] == pytest.approx(0.3)
    null_mean = res.null.cell_mean("auc")
    assert np.abs(null_mean - 0.5).max() < 0.02


def test_within_class_measure_removes_class_confound():
    """A code that only encodes the class looks aligned with class-determined attributes, but
    within classes (and for a nuisance attribute) it is at chance."""
    rng = np.random.default_rng(3)
    classes = np.repeat(np.arange(8), 40)
    class_attr = (np.arange(8) % 2)[classes]  # class-determined
    nuisance = rng.integers(0, 2, len(classes))
    attrs = np.stack([class_attr, nuisance], 1)
    u = np.tanh(np.where(np.arange(8) % 2 == 1, 1.0, -1.0)[classes][:, None] + rng.normal(0, 0.3, (len(classes), 4)))
    marginal = ba.analyse(u, attrs, ["c", "n"], n_permutations=100)
    within = ba.analyse(u, attrs, ["c", "n"], strata=classes, n_permutations=100)
    assert marginal.summary([0])["mi_best_above_chance"] > 0.5
    assert np.isnan(within.mi[:, 0]).all()
    s = within.summary([1])
    assert s["attributes"] == 1 and abs(s["mi_best_above_chance"]) < 0.03 and s["bits_aligned"] <= 1
    assert within.null.within_strata


def test_strata_permutation_stays_inside_strata():
    rng = np.random.default_rng(0)
    strata = rng.integers(0, 5, 50)
    perm = ba._permutation(strata, rng)
    assert sorted(perm) == list(range(50))
    assert (strata[perm] == strata).all()
    assert not (perm == np.arange(50)).all()


def test_null_is_reproducible():
    u, attrs = _planted(n=100, k=4, A=6)
    a = ba.permutation_null(u, attrs, n_permutations=5, seed=7)
    b = ba.permutation_null(u, attrs, n_permutations=5, seed=7, measures=("mi",))
    np.testing.assert_array_equal(a.mi, b.mi)
    assert b.auc is None and a.n_permutations == 5
    with pytest.raises(ValueError):
        b.cell_mean("auc")


def test_filter_by_certainty():
    present = np.array([[1, 0, 1, 0, 1]])
    certainty = np.array([[0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(ba.filter_by_certainty(present, certainty, 3), [[0, 0, 0, 1, 1]])
    np.testing.assert_array_equal(ba.filter_by_certainty(present, certainty, 0), [[0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(ba.filter_by_certainty(present, certainty, 4), [[0, 0, 0, 0, 1]])
    with pytest.raises(ValueError):
        ba.filter_by_certainty(present, certainty, 5)
    with pytest.raises(ValueError):
        ba.filter_by_certainty(present, certainty[:, :3], 3)


def test_groups_names_and_usable():
    names = ["has_wing_color::red", "has_wing_color::blue", "has_legs::visible", "size"]
    assert ba.attribute_groups(names) == {"wing_color": [0, 1], "legs": [2], "size": [3]}
    assert ba.short_name(names[0]) == "wing_color: red"
    present = np.array([[1, 0, 1], [1, 1, 0], [1, 0, 1], [1, 1, 0]])
    np.testing.assert_array_equal(ba.usable_attributes(present, min_count=2), [False, True, True])
    strata = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(ba.usable_attributes(present, min_count=1, strata=strata), [False, True, True])
    np.testing.assert_array_equal(ba.usable_attributes(present, min_count=1, strata=np.array([0, 1, 0, 1])),
                                  [False, False, False])


def test_empty_subset_summary_and_bad_input():
    u, attrs = _planted(n=50, k=4, A=6)
    res = ba.analyse(u, attrs, [str(i) for i in range(6)], n_permutations=3)
    s = res.summary(columns=np.zeros(6, bool))
    assert s["attributes"] == 0 and math.isnan(s["mi_best_above_chance"])
    with pytest.raises(ValueError):
        ba.auc_matrix(u, attrs[:10])
    with pytest.raises(ValueError):
        ba.auc_matrix(u, attrs * 2)


def test_extreme_items_and_attention_maps(blob_dataset):
    from a2hlib.models import build_model, encode
    torch.manual_seed(0)
    model = build_model("a2net", 6, backbone="small", num_parts=2, image_size=32).train()
    u = encode(model, blob_dataset)
    high, low = ba.extreme_items(u, 1, 4)
    assert (u[high, 1] >= u[low, 1].max()).all() and len(set(high) & set(low)) == 0
    labels = blob_dataset.targets.numpy()
    high, low = ba.extreme_items(u, 1, 4, labels=labels, per_class=1)
    assert len(set(labels[high])) == 4 and len(set(labels[low])) == 4 and not set(high) & set(low)
    order = np.argsort(-u[:, 1].numpy(), kind="stable")
    first_of = [next(i for i in order if labels[i] == c) for c in range(4)]
    assert sorted(high.tolist()) == sorted(first_of)  # the highest image of each class
    maps = ba.attention_maps(model, blob_dataset.images[:2])
    assert maps.shape == (2, 2, 4, 4) and model.training  # the caller's mode is restored
    assert ba.attention_maps(build_model("adsh", 6, backbone="small", image_size=32), blob_dataset.images[:2]) is None


def test_class_attributes_majority():
    present = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [0, 1]])
    valid = np.array([[1, 1], [1, 1], [1, 0], [0, 0], [0, 1]], bool)
    labels = np.array([5, 5, 5, 9, 9])
    cls, defined = ba.class_attributes(present, labels, valid)
    np.testing.assert_array_equal(cls, [[1, 1], [0, 1]])  # class 5, attribute 1: 1 of 2 valid, a tie: present
    np.testing.assert_array_equal(defined, [[1, 1], [0, 1]])


def test_class_shuffle_separates_attribute_splits_from_arbitrary_class_splits():
    rng = np.random.default_rng(4)
    C, per, A, k = 16, 20, 10, 6
    class_attr = rng.integers(0, 2, (C, A))
    labels = np.repeat(np.arange(C), per)
    attrs = class_attr[labels]
    names = [f"has_a{i}::x" for i in range(A)]
    # bits that split the classes along attributes 0..5 (with per-image noise)
    aligned = np.tanh(2.0 * (class_attr[:, :k] * 2 - 1)[labels] + rng.normal(0, 0.7, (len(labels), k)))
    res = ba.class_shuffle_analysis(aligned, attrs, labels, names, n_permutations=100, seed=0)
    assert res.null.kind == "classes"
    s = res.summary()
    assert s["mi_best_above_chance"] > 0.2 and s["bits_aligned"] >= k - 1
    assert [res.best_attribute(j) for j in range(k)] == list(range(k))
    # bits that split the classes arbitrarily: as class-discriminative, but at the class-shuffle level
    arbitrary = np.tanh(2.0 * (rng.integers(0, 2, (C, k)) * 2 - 1)[labels] + rng.normal(0, 0.7, (len(labels), k)))
    plain = ba.analyse(arbitrary, attrs, names, n_permutations=50)
    assert plain.summary()["mi_best_above_chance"] > 0.05  # the confound: row shuffles call this aligned
    s = ba.class_shuffle_analysis(arbitrary, attrs, labels, names, n_permutations=100, seed=0).summary()
    assert abs(s["mi_best_above_chance"]) < 0.1 and s["bits_aligned"] <= 1  # seeds 0-9: |x| <= 0.08, 0 aligned


def test_mutual_information_reads_zero_one_bits_like_signed_codes():
    rng = np.random.default_rng(0)
    attr = rng.integers(0, 2, size=(200, 3)).astype(np.uint8)
    signed = np.where(attr[:, :1] == 1, 1.0, -1.0) * np.ones((1, 2))
    zero_one = (signed > 0).astype(np.int64)
    assert np.allclose(ba.mutual_information(signed, attr), ba.mutual_information(zero_one, attr))
    assert ba.mutual_information(zero_one, attr)[0, 0] > 0.9
    with pytest.raises(ValueError):
        ba.binary_bits(np.array([[np.nan, 1.0]]))
