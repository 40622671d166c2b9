"""a2hlib.metrics against plain per-query loops (stable argsort, loop over ranks), and the
tie-aware AP against brute-force enumeration of every order of tied items."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from a2hlib import evaluation, metrics
from a2hlib.metrics import (mean_average_precision, precision_at_n, precision_recall_by_radius,
                            precision_within_radius)

TOL = 1e-9


# ---------------------------------------------------------------------------- plain references

def ref_distances(q, b):
    k = q.shape[1]
    return (k - q.astype(np.int64) @ b.astype(np.int64).T) // 2


def ref_relevant(ql, dbl, i):
    if ql.ndim == 1:
        return dbl == ql[i]
    return (dbl.astype(bool) & ql[i].astype(bool)).any(axis=1)


def ref_ap_of_order(rel_in_order, topk=None):
    """AP of one ranked list: precision at each relevant position, averaged over the relevant items
    (all of them, or those within the first topk)."""
    g = np.asarray(rel_in_order, dtype=bool)
    if topk is not None:
        g = g[:topk]
    hits, total = 0, 0.0
    for pos, is_rel in enumerate(g, start=1):
        if is_rel:
            hits += 1
            total += hits / pos
    return total / hits if hits else 0.0


def ref_map(q, b, ql, dbl, topk=None):
    d = ref_distances(q, b)
    aps = []
    for i in range(len(q)):
        order = np.argsort(d[i], kind="stable")
        aps.append(ref_ap_of_order(ref_relevant(ql, dbl, i)[order], topk))
    return float(np.mean(aps))


def ref_map_aware_bruteforce(q, b, ql, dbl, topk=None):
    """Average AP over every order of the database that is sorted by distance (each equally likely)."""
    d = ref_distances(q, b)
    aps = []
    for i in range(len(q)):
        rel = ref_relevant(ql, dbl, i)
        vals = [ref_ap_of_order(rel[list(perm)], topk)
                for perm in itertools.permutations(range(len(b)))
                if all(d[i, perm[t]] <= d[i, perm[t + 1]] for t in range(len(b) - 1))]
        aps.append(np.mean(vals))
    return float(np.mean(aps))


def ref_precision_at_n(q, b, ql, dbl, ns):
    d = ref_distances(q, b)
    out = np.zeros(len(ns))
    for i in range(len(q)):
        rel = ref_relevant(ql, dbl, i)[np.argsort(d[i], kind="stable")]
        for j, n in enumerate(ns):
            out[j] += rel[:n].sum() / n
    return out / len(q)


def ref_pr(q, b, ql, dbl):
    d = ref_distances(q, b)
    k = q.shape[1]
    prec, rec = np.zeros(k + 1), np.zeros(k + 1)
    for i in range(len(q)):
        rel = ref_relevant(ql, dbl, i)
        for r in range(k + 1):
            got = d[i] <= r
            hit = (got & rel).sum()
            prec[r] += hit / got.sum() if got.sum() else 0.0
            rec[r] += hit / rel.sum() if rel.sum() else 0.0
    return prec / len(q), rec / len(q)


# ---------------------------------------------------------------------------- data

def random_codes(rng, n, k):
    return np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.int8)


def make_single(seed, nq=40, n=300, k=8, classes=5):
    """Random codes, heavy ties; class `classes` appears only among queries (no relevant item)."""
    rng = np.random.default_rng(seed)
    q, b = random_codes(rng, nq, k), random_codes(rng, n, k)
    ql = rng.integers(0, classes + 1, nq)
    dbl = rng.integers(0, classes, n)
    return q, b, ql, dbl


def make_multi(seed, nq=30, n=250, k=10, classes=6):
    rng = np.random.default_rng(seed)
    q, b = random_codes(rng, nq, k), random_codes(rng, n, k)
    ql = (rng.random((nq, classes)) < 0.25).astype(np.int64)
    dbl = (rng.random((n, classes)) < 0.2).astype(np.int64)
    ql[:3] = 0  # queries without any label: no relevant item
    ql[3] = 0
    ql[3, 0] = 1
    dbl[:, 0] = 0  # label 0 is absent from the database
    return q, b, ql, dbl


CASES = [("single8", make_single(0, k=8)), ("single12", make_single(1, k=12, classes=3)),
         ("single48", make_single(2, k=48, classes=4)), ("multi10", make_multi(3)),
         ("multi12", make_multi(4, k=12, classes=3))]
IDS = [c[0] for c in CASES]
DATA = [c[1] for c in CASES]


# ---------------------------------------------------------------------------- stable mAP

@pytest.mark.parametrize("data", DATA, ids=IDS)
def test_map_all_stable_matches_loop(data):
    q, b, ql, dbl = data
    assert mean_average_precision(q, b, ql, dbl) == pytest.approx(ref_map(q, b, ql, dbl), abs=TOL)


@pytest.mark.parametrize("data", DATA, ids=IDS)
@pytest.mark.parametrize("topk", [1, 7, 50, 299, 1000])
def test_map_at_k_stable_matches_loop(data, topk):
    q, b, ql, dbl = data
    got = mean_average_precision(q, b, ql, dbl, topk=topk)
    assert got == pytest.approx(ref_map(q, b, ql, dbl, topk=min(topk, len(b))), abs=TOL)


@pytest.mark.parametrize("k,n,nq", [(1, 9, 5), (3, 1, 4), (2, 6, 1), (1, 1, 1), (17, 40, 3), (65, 30, 4)])
def test_edge_shapes_match_loop(k, n, nq):
    """One bit, one database item, one query, code lengths that are not a multiple of 8."""
    rng = np.random.default_rng(k * 1000 + n * 10 + nq)
    q, b = random_codes(rng, nq, k), random_codes(rng, n, k)
    ql, dbl = rng.integers(0, 2, nq), rng.integers(0, 2, n)
    for topk in (None, 1, 3):
        assert mean_average_precision(q, b, ql, dbl, topk=topk) == pytest.approx(
            ref_map(q, b, ql, dbl, topk=None if topk is None else min(topk, n)), abs=TOL)
    assert mean_average_precision(q, b, ql, dbl, ties="aware") == pytest.approx(
        ref_map_aware_closed(q, b, ql, dbl), abs=TOL)
    assert np.allclose(precision_at_n(q, b, ql, dbl, [1, n]), ref_precision_at_n(q, b, ql, dbl, [1, n]),
                       atol=TOL, rtol=0)
    prec, rec = precision_recall_by_radius(q, b, ql, dbl)
    ref_p, ref_r = ref_pr(q, b, ql, dbl)
    assert np.allclose(prec, ref_p, atol=TOL, rtol=0) and np.allclose(rec, ref_r, atol=TOL, rtol=0)


def test_one_bit_codes_exact_on_whichever_product_path():
    """torch._int_mm misreads 1 × n matrices with strides (1, 1); _prepare must avoid them. The
    mAP of 1-bit codes must equal the plain loop whether the int8 or the float path runs."""
    rng = np.random.default_rng(50)
    q, b = random_codes(rng, 5, 1), random_codes(rng, 7, 1)
    ql, dbl = rng.integers(0, 2, 5), rng.integers(0, 2, 7)
    assert mean_average_precision(q, b, ql, dbl) == pytest.approx(ref_map(q, b, ql, dbl), abs=1e-12)
    p = metrics._prepare(q, b, ql, dbl)
    assert p.q.dtype in (torch.int8, torch.float32)
    rows = torch.tensor([4, 0, 2])
    got = torch._int_mm(p.q[rows], p.b_t) if p.q.dtype == torch.int8 else p.q[rows] @ p.b_t
    assert np.array_equal(got.numpy().astype(int), q[[4, 0, 2]].astype(int) @ b.T.astype(int))


def test_per_query_ap_matches_loop():
    q, b, ql, dbl = make_single(7, nq=12, k=8)
    for i in range(len(q)):
        one = mean_average_precision(q[i:i + 1], b, ql[i:i + 1], dbl)
        assert one == pytest.approx(ref_map(q[i:i + 1], b, ql[i:i + 1], dbl), abs=1e-12)


def test_torch_inputs_equal_numpy_inputs():
    q, b, ql, dbl = make_single(8)
    ref = mean_average_precision(q, b, ql, dbl)
    got = mean_average_precision(torch.from_numpy(q).float(), torch.from_numpy(b).float(),
                                 torch.from_numpy(ql), torch.from_numpy(dbl))
    assert got == ref
    qm, bm, qlm, dblm = make_multi(9)
    assert mean_average_precision(torch.from_numpy(qm).float(), bm, torch.from_numpy(qlm).float(),
                                  dblm) == mean_average_precision(qm, bm, qlm, dblm)


def test_perfect_and_hopeless_rankings():
    b = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    dbl = np.array([0, 1, 1, 1])
    q = np.array([[1, 1]])
    assert mean_average_precision(q, b, np.array([0]), dbl) == 1.0
    assert mean_average_precision(q, b, np.array([5]), dbl) == 0.0  # no relevant item
    # stable ties: items 1 and 2 tie at distance 1, item 1 first
    assert mean_average_precision(q, b, np.array([1]), np.array([0, 1, 0, 1])) == \
        pytest.approx((1 / 2 + 2 / 4) / 2)


@pytest.mark.parametrize("patch", ["chunks", "argsort", "bfloat16", "float32", "one_worker"])
def test_internal_paths_agree(monkeypatch, patch):
    """Tiny chunks, the argsort fallback (huge R), bfloat16 or float32 products instead of int8,
    and a single worker give the same numbers."""
    datasets = [make_single(10, k=12), make_multi(11)]
    before = [(mean_average_precision(*d), mean_average_precision(*d, topk=20),
               precision_at_n(*d, [1, 5, 100])) for d in datasets]
    if patch == "chunks":
        monkeypatch.setattr(metrics, "_MAX_CHUNK_ROWS", 3)
    elif patch == "argsort":
        monkeypatch.setattr(metrics, "_MAX_BINS_PER_ITEM", 0)
        monkeypatch.setattr(metrics, "_KEY_LIMIT", 1)
    elif patch == "one_worker":
        monkeypatch.setattr(metrics, "_MAX_WORKERS", 1)
    else:
        monkeypatch.setattr(metrics, "_int8_matmul_ok", lambda: False)
        monkeypatch.setattr(metrics, "_bf16_is_fast", lambda: patch == "bfloat16")
    for d, (m_all, m_k, p_n) in zip(datasets, before):
        assert mean_average_precision(*d) == pytest.approx(m_all, abs=1e-12)
        assert mean_average_precision(*d, topk=20) == pytest.approx(m_k, abs=1e-12)
        assert np.allclose(precision_at_n(*d, [1, 5, 100]), p_n, atol=1e-12)
        assert mean_average_precision(*d, ties="aware") == pytest.approx(
            ref_map_aware_closed(*d), abs=TOL)


# ---------------------------------------------------------------------------- tie-aware mAP

def tiny_cases():
    rng = np.random.default_rng(20)
    cases = []
    for n in (1, 2, 4, 6, 7):
        for multi in (False, True):
            q, b = random_codes(rng, 4, 3), random_codes(rng, n, 3)
            if multi:
                ql = (rng.random((4, 3)) < 0.4).astype(int)
                dbl = (rng.random((n, 3)) < 0.4).astype(int)
            else:
                ql, dbl = rng.integers(0, 3, 4), rng.integers(0, 2, n)
            cases.append((q, b, ql, dbl))
    return cases


TINY = tiny_cases()


@pytest.mark.parametrize("case", range(len(TINY)))
def test_aware_map_all_equals_bruteforce(case):
    q, b, ql, dbl = TINY[case]
    got = mean_average_precision(q, b, ql, dbl, ties="aware")
    assert got == pytest.approx(ref_map_aware_bruteforce(q, b, ql, dbl), abs=TOL)


@pytest.mark.parametrize("case", [2, 3, 6, 7, 8, 9])
def test_aware_map_at_k_equals_bruteforce(case):
    q, b, ql, dbl = TINY[case]
    for topk in range(1, len(b) + 2):
        got = mean_average_precision(q, b, ql, dbl, topk=topk, ties="aware")
        want = ref_map_aware_bruteforce(q, b, ql, dbl, topk=min(topk, len(b)))
        assert got == pytest.approx(want, abs=TOL), topk


def ref_map_aware_closed(q, b, ql, dbl):
    """Tie-aware AP written as a plain loop: for each relevant item of a tie bucket, the exact
    expected precision at a uniformly random position of the bucket."""
    d = ref_distances(q, b)
    aps = []
    for i in range(len(q)):
        rel = ref_relevant(ql, dbl, i)
        big_r = rel.sum()
        if big_r == 0:
            aps.append(0.0)
            continue
        total = 0.0
        for dist in np.unique(d[i]):
            n0, r0 = (d[i] < dist).sum(), (rel & (d[i] < dist)).sum()
            nb, rb = (d[i] == dist).sum(), (rel & (d[i] == dist)).sum()
            for pos in range(1, nb + 1):
                more = (pos - 1) * (rb - 1) / (nb - 1) if nb > 1 else 0.0
                total += rb / nb * (r0 + 1 + more) / (n0 + pos)
        aps.append(total / big_r)
    return float(np.mean(aps))


@pytest.mark.parametrize("data", DATA, ids=IDS)
def test_aware_map_all_matches_loop(data):
    q, b, ql, dbl = data
    assert mean_average_precision(q, b, ql, dbl, ties="aware") == pytest.approx(
        ref_map_aware_closed(q, b, ql, dbl), abs=TOL)


def test_aware_equals_stable_without_ties_and_averages_shuffles():
    rng = np.random.default_rng(30)
    # 6 bits, 4 items at distinct distances from the query: no ties, both rules agree
    q = np.ones((1, 6), dtype=int)
    b = np.array([[1] * 6, [-1] + [1] * 5, [-1, -1] + [1] * 4, [-1] * 6])
    dbl = np.array([1, 0, 1, 1])
    assert mean_average_precision(q, b, [1], dbl, ties="aware") == pytest.approx(
        mean_average_precision(q, b, [1], dbl), abs=1e-12)
    # with heavy ties, "aware" is the mean of "stable" over random database orders
    q, b, ql, dbl = make_single(31, nq=5, n=60, k=4, classes=3)
    shuffled = []
    for _ in range(400):
        perm = rng.permutation(len(b))
        shuffled.append(mean_average_precision(q, b[perm], ql, dbl[perm]))
    assert mean_average_precision(q, b, ql, dbl, ties="aware") == pytest.approx(np.mean(shuffled),
                                                                                abs=0.01)


def test_aware_at_k_averages_shuffles():
    rng = np.random.default_rng(33)
    q, b, ql, dbl = make_single(34, nq=5, n=60, k=4, classes=3)
    for topk in (5, 23):
        shuffled = []
        for _ in range(400):
            perm = rng.permutation(len(b))
            shuffled.append(mean_average_precision(q, b[perm], ql, dbl[perm], topk=topk))
        assert mean_average_precision(q, b, ql, dbl, topk=topk, ties="aware") == pytest.approx(
            np.mean(shuffled), abs=0.015)


def test_arbitrary_class_ids_and_threads_restored():
    q, b, ql, dbl = make_single(35, k=10)
    ids = np.array([-7, 3, 1000, 42, 5, 99])
    before = torch.get_num_threads()
    got = mean_average_precision(q, b, ids[ql], ids[dbl])
    assert torch.get_num_threads() == before
    assert got == pytest.approx(mean_average_precision(q, b, ql, dbl), abs=1e-12)
    assert got == pytest.approx(ref_map(q, b, ids[ql], ids[dbl]), abs=TOL)


def test_topk_at_least_database_size_is_map_all():
    q, b, ql, dbl = make_single(32, n=50)
    for ties in ("stable", "aware"):
        assert mean_average_precision(q, b, ql, dbl, topk=50, ties=ties) == pytest.approx(
            mean_average_precision(q, b, ql, dbl, ties=ties), abs=1e-12)
        assert mean_average_precision(q, b, ql, dbl, topk=500, ties=ties) == pytest.approx(
            mean_average_precision(q, b, ql, dbl, ties=ties), abs=1e-12)


# ---------------------------------------------------------------------------- precision@N, PR

@pytest.mark.parametrize("data", DATA, ids=IDS)
def test_precision_at_n_matches_loop(data):
    q, b, ql, dbl = data
    ns = [1, 2, 10, 37, 100, len(b)]
    got = precision_at_n(q, b, ql, dbl, ns)
    assert got.shape == (len(ns),)
    assert np.allclose(got, ref_precision_at_n(q, b, ql, dbl, ns), atol=TOL, rtol=0)
    assert precision_at_n(q, b, ql, dbl, 10) == pytest.approx(got[2:3], abs=TOL)


@pytest.mark.parametrize("data", DATA, ids=IDS)
def test_precision_recall_by_radius_matches_loop(data):
    q, b, ql, dbl = data
    prec, rec = precision_recall_by_radius(q, b, ql, dbl)
    ref_p, ref_r = ref_pr(q, b, ql, dbl)
    assert prec.shape == rec.shape == (q.shape[1] + 1,)
    assert np.allclose(prec, ref_p, atol=TOL, rtol=0)
    assert np.allclose(rec, ref_r, atol=TOL, rtol=0)
    assert precision_within_radius(q, b, ql, dbl) == pytest.approx(ref_p[2], abs=TOL)
    assert precision_within_radius(q, b, ql, dbl, radius=0) == pytest.approx(ref_p[0], abs=TOL)
    assert precision_within_radius(q, b, ql, dbl, radius=99) == pytest.approx(ref_p[-1], abs=TOL)


# ---------------------------------------------------------------------------- input checks

def test_input_validation():
    q, b, ql, dbl = make_single(40, nq=3, n=10)
    with pytest.raises(ValueError):
        mean_average_precision(q * 0, b, ql, dbl)
    with pytest.raises(ValueError):
        mean_average_precision(q, b, ql, dbl, ties="random")
    with pytest.raises(ValueError):
        mean_average_precision(q, b, ql, dbl, topk=0)
    with pytest.raises(ValueError):
        mean_average_precision(q, b[:, :4], ql, dbl)
    with pytest.raises(ValueError):
        mean_average_precision(q, b, ql[:2], dbl)
    with pytest.raises(ValueError):
        mean_average_precision(q, b, ql, np.eye(10, 3))
    with pytest.raises(ValueError):
        precision_at_n(q, b, ql, dbl, [0])
    with pytest.raises(ValueError):
        precision_at_n(q, b, ql, dbl, [11])
    with pytest.raises(ValueError):
        precision_within_radius(q, b, ql, dbl, radius=-1)


def zero_one(codes):
    return (np.asarray(codes) > 0).astype(np.int64)


# every public entry point that takes codes and labels; data = (q, b, ql, dbl)
ENTRY_POINTS = {
    "map": lambda q, b, ql, dbl: mean_average_precision(q, b, ql, dbl),
    "map_aware_at_k": lambda q, b, ql, dbl: mean_average_precision(q, b, ql, dbl, topk=3, ties="aware"),
    "precision_at_n": lambda q, b, ql, dbl: precision_at_n(q, b, ql, dbl, [1]),
    "pr_by_radius": lambda q, b, ql, dbl: precision_recall_by_radius(q, b, ql, dbl),
    "precision_within_radius": lambda q, b, ql, dbl: precision_within_radius(q, b, ql, dbl),
    "retrieval_report": lambda q, b, ql, dbl: evaluation.retrieval_report("asymmetric", q, b, ql, dbl, topk=5),
}


def bad_inputs(case):
    q, b, ql, dbl = make_single(41, nq=4, n=12, k=6)
    qm, bm, qlm, dblm = make_multi(42, nq=4, n=12, k=6)
    nan_multi = qlm.astype(np.float64)
    nan_multi[2, 1] = np.nan
    inf_multi = dblm.astype(np.float32)
    inf_multi[5, 0] = np.inf
    twos = qlm.copy()
    twos[1, 1] = 2
    nan_single = ql.astype(np.float64)
    nan_single[3] = np.nan
    return {
        "zero_bits": ((q[:, :0], b[:, :0], ql, dbl), r"query_codes has 0 bits \(shape \(4, 0\)\)"),
        "zero_one_query": ((zero_one(q), b, ql, dbl),
                           r"query_codes has values other than -1/\+1 \(found 0 and 1\): .*2 \* bits - 1"),
        "zero_one_db": ((q, zero_one(b), ql, dbl), r"db_codes has values other than -1/\+1 \(found 0 and 1\)"),
        "relaxed": ((q * 0.5, b, ql, dbl), r"query_codes has values other than -1/\+1 \(found -0.5 and 0.5\): "
                                           r".*a2hlib\.codes\.binarize\(u\)"),
        "sign_zeros": ((np.where(np.arange(6) == 0, 0, q), b, ql, dbl),
                       r"\(found -1, 0 and 1\): zeros, as torch\.sign gives"),
        "nan_codes": ((np.where(q > 0, np.nan, -1.0), b, ql, dbl), r"query_codes .*\(found -1 and nan\)"),
        "bool_codes": ((q > 0, b, ql, dbl), "query_codes has dtype torch.bool"),
        "nan_multi_hot": ((qm, bm, nan_multi, dblm), r"query_labels has NaN or infinite entries \(first at row 2"),
        "inf_multi_hot": ((qm, bm, qlm, inf_multi), r"db_labels has NaN or infinite entries \(first at row 5"),
        "nan_class_id": ((q, b, nan_single, dbl), r"query_labels has NaN or infinite entries \(first at row 3"),
        "multi_hot_not_0_1": ((qm, bm, twos, dblm), r"query_labels is multi-hot with values other than 0/1 "
                                                     r"\(found 0, 1 and 2\)"),
        "fractional_ids": ((q, b, ql + 0.5, dbl), "query_labels has non-integer class ids"),
        "query_rows": ((q, b, ql[:3], dbl), "query_labels has 3 rows but query_codes has 4"),
        "db_rows": ((q, b, ql, dbl[:11]), "db_labels has 11 rows but db_codes has 12"),
        "bit_counts": ((q, b[:, :5], ql, dbl), "query_codes have 6 bits but db_codes have 5"),
    }[case]


BAD_CASES = ["zero_bits", "zero_one_query", "zero_one_db", "relaxed", "sign_zeros", "nan_codes", "bool_codes",
             "nan_multi_hot", "inf_multi_hot", "nan_class_id", "multi_hot_not_0_1", "fractional_ids",
             "query_rows", "db_rows", "bit_counts"]


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_refused_with_a_message_naming_it(entry, case):
    args, message = bad_inputs(case)
    with pytest.raises(ValueError, match=message):
        ENTRY_POINTS[entry](*args)
    torch_args = [torch.from_numpy(np.asarray(a)) for a in args]
    with pytest.raises(ValueError, match=message):
        ENTRY_POINTS[entry](*torch_args)


def test_retrieval_report_takes_sign_codes_only():
    """0/1 codes used to be binarised to all +1 (every item tied): now refused."""
    q, b, ql, dbl = make_single(43, nq=6, n=40, k=8)
    report = evaluation.retrieval_report("asymmetric", q, b, ql, dbl, topk=10)
    assert report.scalars["map_all_stable"] == pytest.approx(ref_map(q, b, ql, dbl), abs=TOL)
    assert report.scalars["map_at_10"] == pytest.approx(ref_map(q, b, ql, dbl, topk=10), abs=TOL)
    assert report.scalars["map_all_aware"] == pytest.approx(ref_map_aware_closed(q, b, ql, dbl), abs=TOL)
    with pytest.raises(ValueError, match="query_codes has values other than -1/"):
        evaluation.retrieval_report("asymmetric", zero_one(q), b, ql, dbl)
    with pytest.raises(ValueError, match="topk must be a positive integer"):
        evaluation.retrieval_report("asymmetric", q, b, ql, dbl, topk=0)


def test_top_k_and_random_baseline_refuse_bad_input():
    q, b, ql, dbl = make_single(44, nq=3, n=10, k=6)
    with pytest.raises(ValueError, match="query_codes has 0 bits"):
        evaluation.top_k(q[:, :0], b[:, :0], 3)
    with pytest.raises(ValueError, match=r"db_codes has values other than -1/\+1 \(found 0 and 1\)"):
        evaluation.top_k(q, zero_one(b), 3)
    with pytest.raises(ValueError, match="query_codes have 6 bits but db_codes have 4"):
        evaluation.top_k(q, b[:, :4], 3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        evaluation.top_k(q, b, 0)
    with pytest.raises(ValueError, match="code_length must be a positive integer, got 0"):
        evaluation.random_code_baseline(ql, dbl, 0)
    nan_labels = dbl.astype(float)
    nan_labels[4] = np.nan
    with pytest.raises(ValueError, match="db_labels has NaN or infinite entries"):
        evaluation.random_code_baseline(ql, nan_labels, 8)


def test_query_map_checks_the_database_before_encoding(blob_dataset, monkeypatch):
    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded the queries before checking the database")

    monkeypatch.setattr(evaluation, "hash_codes", no_encoding)
    n = len(blob_dataset)
    db = np.where(np.arange(n * 8).reshape(n, 8) % 3 == 0, 1, -1)
    with pytest.raises(ValueError, match=r"db_codes has values other than -1/\+1 \(found 0 and 1\)"):
        evaluation.query_map(None, blob_dataset, zero_one(db), blob_dataset.targets)
    with pytest.raises(ValueError, match="db_codes has 0 bits"):
        evaluation.query_map(None, blob_dataset, db[:, :0], blob_dataset.targets)
    with pytest.raises(ValueError, match=f"db_labels has {n - 1} rows but db_codes has {n}"):
        evaluation.query_map(None, blob_dataset, db, blob_dataset.targets[1:])
