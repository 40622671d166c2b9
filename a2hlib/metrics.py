"""Retrieval metrics over a Hamming ranking: mAP (stable or tie-aware), mAP@k, precision@N,
precision–recall by Hamming radius, precision within radius 2.

Introduced in `notebooks/03_retrieval_evaluation.ipynb` (docs/METHOD.md §1 and §5).

Conventions shared by every function here:

* codes are ±1 matrices (numpy arrays or torch tensors, n × k); the database is ranked by the
  Hamming distance d = (k − qᵀb) / 2 to each query;
* labels are 1-D class ids, or 2-D multi-hot rows; relevant = same class, or at least one shared
  label;
* a query with no relevant database item scores 0 in every metric (and still counts in the mean);
* bad input is refused before any work, with a ValueError naming the argument and what to pass
  (`check_codes`, `check_labels`: 0-bit codes, values other than ±1, NaN/inf or non-0/1 labels,
  row counts that differ between labels and codes), in one vectorised pass over each input;
* `ties="stable"` ranks equal distances by database index, exactly like a stable argsort.

How it is fast without sorting: distances are integers 0..k. For one query let the relevant items,
in database order, be i_1 < … < i_R, and give every database item j the key
d_j·M + s_j, where s_j = #{r: i_r < j} and M > R. A histogram of the keys, cumulatively summed,
gives at the key of i_r exactly the number of items ranked at or before i_r under the stable
rule: the items with a smaller distance, plus those with the same distance and an index ≤ i_r.
So the ranks of all relevant items cost one int8 matrix product (which also builds the keys), one
bincount and one cumulative sum per query, with no argsort. The per-distance counts that the
tie-aware AP and the radius metrics need fall out of the same histogram. Queries are processed in
chunks of at most 16 on torch.get_num_threads() worker threads, so memory stays bounded (about
60 MB above the inputs at 25,250 × 75,750, 48 bits; `benchmarks/bench_map.py`).

Tie-aware AP (McSherry & Najork, ECIR 2008): with n_b items and r_b relevant ones at distance b,
N_b items and R_b relevant ones closer than b, and a uniformly random order inside each distance,
position p of the bucket is relevant with probability r_b/n_b and, given that, has on average
(p−1)(r_b−1)/(n_b−1) relevant items before it inside the bucket, so

    E[AP] = (1/R) Σ_b (r_b/n_b) Σ_{p=1..n_b} (R_b + 1 + (p−1)(r_b−1)/(n_b−1)) / (N_b + p),

where the inner sum is closed-form in harmonic numbers H: with ΔH = H(N_b+n_b) − H(N_b) it is
(R_b+1)·ΔH + (r_b−1)/(n_b−1)·(n_b − (N_b+1)·ΔH).
"""
from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from a2hlib.codes import _value_list, check_codes

__all__ = [
    "mean_average_precision",
    "precision_at_n",
    "precision_recall_by_radius",
    "precision_within_radius",
    "check_labels",
    "relevance",
]

_LOG = logging.getLogger(__name__)

# working memory of one query chunk (matrix product output, keys, histograms)
_WORK_BYTES = 192 * 2**20
_MAX_CHUNK_ROWS = 16
_MAX_WORKERS = 8
# histogram size limit per query: keys stay exact in the float32 fallback (< 2**24) and fit int32
_KEY_LIMIT = 2**24
# beyond this many histogram bins per database item the per-query stable argsort is cheaper
_MAX_BINS_PER_ITEM = 8


# ----------------------------------------------------------------------------------------------
# inputs


def check_labels(labels, name: str, rows: int | None = None, rows_of: str = "the codes") -> np.ndarray:
    """Labels as int64 class ids (1-D) or a bool multi-hot matrix (2-D, entries 0/1); a ValueError
    naming `name` for NaN/inf, non-integer ids, other multi-hot values, or a row count other than
    `rows` (the rows of `rows_of`). One vectorised pass."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    a = np.asarray(labels)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} has dtype {a.dtype}: pass integer class ids (1-D) or 0/1 multi-hot rows (2-D)")
    if a.ndim not in (1, 2):
        raise ValueError(f"{name}: labels must be 1-D class ids or 2-D multi-hot, got shape {a.shape}")
    if rows is not None and len(a) != rows:
        raise ValueError(f"{name} has {len(a)} rows but {rows_of} has {rows}: pass one label (row) per code")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{name} has NaN or infinite entries (first at row {bad[0]}, value {a[tuple(bad)]}): "
                         "fix or drop those labels")
    if a.ndim == 2:
        if a.shape[1] == 0:
            raise ValueError(f"{name} is multi-hot with 0 label columns: pass one column per class")
        if a.dtype.kind != "b" and not ((a == 0) | (a == 1)).all():
            raise ValueError(f"{name} is multi-hot with values other than 0/1 (found {_value_list(a.ravel())}): "
                             "pass 0/1 rows (1 = has the label)")
        return a != 0
    if a.dtype.kind == "f" and not (a == np.round(a)).all():
        raise ValueError(f"{name} has non-integer class ids (found {_value_list(a[a != np.round(a)])}): "
                         "pass integer class ids")
    return a.astype(np.int64)


@functools.lru_cache(maxsize=None)
def _int8_matmul_ok() -> bool:
    """Whether torch._int_mm (int8 × int8 -> int32, exact) runs here."""
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randint(-1, 2, (3, 16), generator=g, dtype=torch.int8)
        b = torch.randint(-1, 2, (16, 5), generator=g, dtype=torch.int8)
        return bool((torch._int_mm(a, b) == a.to(torch.int32) @ b.to(torch.int32)).all())
    except Exception:  # private op; absent or unsupported on some builds
        return False


def _bf16_is_fast() -> bool:
    try:
        return bool(torch.cpu._is_avx512_bf16_supported()) or bool(torch.cpu._is_amx_tile_supported())
    except Exception:  # private helpers; absent on some builds
        return False


@dataclass
class _Problem:
    q: torch.Tensor          # (nq, k') codes in the product dtype (int8, bfloat16 or float32)
    b_t: torch.Tensor        # (k', n) database codes, transposed; k' = k, or k zero-padded for int8
    k: int                   # code length
    n: int
    nq: int
    single: bool             # class ids (True) or multi-hot (False)
    ql: np.ndarray           # query labels
    dbl: np.ndarray          # database labels


def _prepare(query_codes, db_codes, query_labels, db_labels) -> _Problem:
    q = check_codes(query_codes, "query_codes")
    b = check_codes(db_codes, "db_codes")
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"query_codes have {q.shape[1]} bits but db_codes have {b.shape[1]}: "
                         "encode both with the same code length")
    if q.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError(f"query_codes has {q.shape[0]} rows and db_codes {b.shape[0]}: "
                         "pass at least one query and one database item")
    ql = check_labels(query_labels, "query_labels", q.shape[0], "query_codes")
    dbl = check_labels(db_labels, "db_labels", b.shape[0], "db_codes")
    if ql.ndim != dbl.ndim or (ql.ndim == 2 and ql.shape[1] != dbl.shape[1]):
        raise ValueError(f"query_labels {ql.shape} and db_labels {dbl.shape} disagree in form: pass class "
                         "ids for both, or multi-hot rows with the same columns")
    k = q.shape[1]
    # ±1 inner products are integers in [-k, k]: exact in int8 × int8 -> int32 products, and in
    # bfloat16 up to k = 256
    if _int8_matmul_ok():
        # freshly allocated row-major matrices, zero-padded to a multiple of 8 bits (padding adds
        # nothing to qᵀb): torch._int_mm on CPU misreads a 1 × n matrix with strides (1, 1), such
        # as the transpose of an n × 1 code matrix, and returns garbage
        width = max(8, -(-k // 8) * 8)
        q8 = torch.zeros((q.shape[0], width), dtype=torch.int8)
        q8[:, :k] = q
        b8 = torch.zeros((width, b.shape[0]), dtype=torch.int8)
        b8[:k] = b.T
        q, b_t = q8, b8
    else:
        dtype = torch.bfloat16 if (k <= 256 and _bf16_is_fast()) else torch.float32
        q, b_t = q.to(dtype), b.T.contiguous().to(dtype)
    return _Problem(q=q, b_t=b_t, k=k, n=b_t.shape[1], nq=q.shape[0], single=ql.ndim == 1,
                    ql=ql, dbl=dbl)


# ----------------------------------------------------------------------------------------------
# the engine: per-query cumulative counts by distance and (optionally) stable ranks


@dataclass
class _Chunk:
    rows: np.ndarray                 # query indices (m,), all with at least one relevant item
    n_rel: np.ndarray                # R per query (m,)
    n_le: np.ndarray                 # (m, k+1): #items with distance <= b
    r_le: np.ndarray                 # (m, k+1): #relevant items with distance <= b
    ranks: np.ndarray | None = None  # (m, max R) ascending 1-based stable ranks of relevant items,
    #                                  padded with n + 1


def _query_groups(p: _Problem) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(query rows, shared relevant database indices) for class ids; (rows, None) for multi-hot."""
    if p.single:
        q_order = np.argsort(p.ql, kind="stable")
        classes, starts = np.unique(p.ql[q_order], return_index=True)
        ends = np.r_[starts[1:], p.nq]
        d_order = np.argsort(p.dbl, kind="stable")
        d_sorted = p.dbl[d_order]
        lo = np.searchsorted(d_sorted, classes, side="left")
        hi = np.searchsorted(d_sorted, classes, side="right")
        for c in range(len(classes)):
            if hi[c] > lo[c]:  # queries of a class absent from the database score 0
                yield q_order[starts[c]:ends[c]], np.sort(d_order[lo[c]:hi[c]])
    else:
        yield np.arange(p.nq), None


class _Workspace:
    """Buffers reused across chunks (fresh large allocations cost page faults every time)."""

    def __init__(self, p: _Problem, rows: int):
        integer = p.q.dtype == torch.int8
        self.ip = torch.empty(rows * p.n, dtype=torch.int32 if integer else p.q.dtype)
        # float products need a float32 key before the int32 one; int8 products add in place
        self.key_f = None if integer else torch.empty(rows * p.n, dtype=torch.float32)
        self.key = self.ip if integer else torch.empty(rows * p.n, dtype=torch.int32)


def _key_width(p: _Problem, n_rel_max: int, need_ranks: bool) -> tuple[int, bool]:
    """(M, ranks by histogram?) for the key d·M + s. M >= R + 1 when ranks come from the histogram;
    2 when no ranks are needed or the histogram would be too large (then ranks come from a
    per-query argsort). M is even, so that (k − qᵀb)·M/2 is an integer."""
    m_key = n_rel_max + 1 + (n_rel_max + 1) % 2
    if not need_ranks or (p.k + 1) * m_key >= _KEY_LIMIT \
            or (p.k + 1) * m_key > _MAX_BINS_PER_ITEM * p.n + 4096:
        return 2, False
    return m_key, True


def _key_base(p: _Problem, seg, m_key: int) -> torch.Tensor:
    """s_j + k·M/2, the part of the key that does not depend on the query's code, in the dtype
    the keys are built in. seg: None (all zero), a numpy (n,) vector, or a torch (m × n) matrix."""
    dtype = torch.int32 if p.q.dtype == torch.int8 else torch.float32
    offset = p.k * m_key // 2
    if seg is None:
        return torch.full((1, 1), offset, dtype=dtype)
    if isinstance(seg, np.ndarray):
        np_dtype = np.int32 if dtype == torch.int32 else np.float32
        return torch.from_numpy((seg + offset).astype(np_dtype))[None, :]
    return (seg + offset).to(dtype)


def _tasks(p: _Problem, need_ranks: bool, rows_per_chunk: int
           ) -> Iterator[Callable[[_Workspace], _Chunk | None]]:
    """One job per chunk of queries; each job takes a workspace and returns a _Chunk (or None)."""
    if p.single:
        for rows, rel_idx in _query_groups(p):
            rel = np.zeros(p.n, dtype=bool)
            rel[rel_idx] = True
            m_key, by_hist = _key_width(p, len(rel_idx), need_ranks)
            # s_j: relevant items before j
            base = _key_base(p, np.cumsum(rel) - rel if by_hist else None, m_key)
            rel_t = torch.from_numpy(rel_idx)
            for a in range(0, len(rows), rows_per_chunk):
                yield functools.partial(_chunk, p, rows=rows[a:a + rows_per_chunk], need_ranks=need_ranks,
                                        m_key=m_key, by_hist=by_hist, base=base, rel_idx=rel_t,
                                        rel_mask=rel)
    else:
        lq = torch.from_numpy(p.ql.astype(np.float32))
        ldb_t = torch.from_numpy(p.dbl.astype(np.float32)).T.contiguous()
        for a in range(0, p.nq, rows_per_chunk):
            yield functools.partial(_multi_label_chunk, p, np.arange(a, min(p.nq, a + rows_per_chunk)),
                                    need_ranks, lq, ldb_t)


def _multi_label_chunk(p: _Problem, rows: np.ndarray, need_ranks: bool, lq: torch.Tensor,
                       ldb_t: torch.Tensor, ws: _Workspace) -> _Chunk | None:
    rel = (lq[torch.from_numpy(rows)] @ ldb_t) > 0  # shared-label counts are exact in float32
    n_rel = rel.sum(1)
    keep = n_rel > 0
    if not bool(keep.any()):
        return None
    rows, rel = rows[keep.numpy()], rel[keep]
    m_key, by_hist = _key_width(p, int(n_rel.max()), need_ranks)
    seg = None
    if by_hist:
        rel32 = rel.to(torch.int32)
        seg = torch.cumsum(rel32, 1) - rel32
    return _chunk(p, ws, rows, need_ranks, m_key, by_hist, _key_base(p, seg, m_key), rel_idx=None,
                  rel_mask=rel.numpy())


def _iter_chunks(p: _Problem, need_ranks: bool) -> Iterator[_Chunk]:
    """Every query with at least one relevant item, in chunks, with its counts (and ranks).

    Chunks run on torch.get_num_threads() worker threads, each with single-threaded torch ops
    (restored afterwards): independent workers keep both cores busy even when other processes
    compete for them, where fine-grained intra-op parallelism stalls at every barrier."""
    if p.single:
        max_r = int(np.unique(p.dbl, return_counts=True)[1].max())
    else:  # an upper bound on R per query, to size the chunks
        max_r = int(min(p.n, (p.ql.astype(np.int64) @ p.dbl.sum(0)).max(initial=0)))
    bins = (p.k + 1) * _key_width(p, max_r, need_ranks)[0]
    rows_per_chunk = int(max(1, min(_MAX_CHUNK_ROWS, _WORK_BYTES // (
        p.n * (4 + 4 + 4 + (0 if p.single else 13)) + 8 * bins))))
    workers = max(1, min(_MAX_WORKERS, torch.get_num_threads(), -(-p.nq // rows_per_chunk)))
    _LOG.debug("metrics: %d queries × %d items, %d bits, %s products, chunks of %d rows, %d workers",
               p.nq, p.n, p.k, p.q.dtype, rows_per_chunk, workers)
    tasks = _tasks(p, need_ranks, rows_per_chunk)
    if workers == 1:
        ws = _Workspace(p, rows_per_chunk)
        for task in tasks:
            c = task(ws)
            if c is not None:
                yield c
        return
    saved = torch.get_num_threads()
    local = threading.local()

    def run(task):
        ws = getattr(local, "ws", None)
        if ws is None:
            torch.set_num_threads(1)  # per worker thread under OpenMP
            ws = local.ws = _Workspace(p, rows_per_chunk)
        return task(ws)

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque = deque()
            for task in tasks:
                pending.append(pool.submit(run, task))
                if len(pending) >= 2 * workers:
                    c = pending.popleft().result()
                    if c is not None:
                        yield c
            while pending:
                c = pending.popleft().result()
                if c is not None:
                    yield c
    finally:
        torch.set_num_threads(saved)


def _chunk(p: _Problem, ws: _Workspace, rows: np.ndarray, need_ranks: bool, m_key: int,
           by_hist: bool, base: torch.Tensor, rel_idx: torch.Tensor | None,
           rel_mask: np.ndarray) -> _Chunk:
    """Counts (and ranks) for one chunk of queries. rel_idx: relevant indices shared by all rows
    (class ids); else rel_mask is (m × n)."""
    m, n, k1 = len(rows), p.n, p.k + 1
    ip = ws.ip[:m * n].view(m, n)
    q = p.q[torch.from_numpy(rows)]
    key = ws.key[:m * n].view(m, n)
    # key = d·M + s = s + k·M/2 − qᵀb·M/2: exact integers (int32, or float32 below 2**24)
    if p.q.dtype == torch.int8:
        torch._int_mm(q, p.b_t, out=ip)
        torch.add(base, ip, alpha=-(m_key // 2), out=key)
    else:
        torch.matmul(q, p.b_t, out=ip)
        key_f = ws.key_f[:m * n].view(m, n)
        torch.add(base, ip, alpha=-(m_key // 2), out=key_f)
        key.copy_(key_f)

    if rel_idx is not None:
        n_rel = np.full(m, len(rel_idx), dtype=np.int64)
        rel_keys = key.index_select(1, rel_idx).to(torch.int64)      # (m, R), database order
        row_keys = list(rel_keys)
        flat_keys = rel_keys.reshape(-1)
        rel_rows = np.repeat(np.arange(m), len(rel_idx))
    else:
        rel_t = torch.from_numpy(rel_mask)
        flat_keys = key[rel_t].to(torch.int64)                       # row-major, flat
        n_rel = rel_mask.sum(1).astype(np.int64)
        row_keys = torch.split(flat_keys, n_rel.tolist())
        rel_rows = np.repeat(np.arange(m), n_rel)
    bins = k1 * m_key
    want_ranks = need_ranks and by_hist
    n_le = torch.empty((m, k1), dtype=torch.int64)
    ranks = torch.empty(flat_keys.shape, dtype=torch.int64) if want_ranks else None
    ranks_rows = torch.split(ranks, n_rel.tolist()) if want_ranks else None
    for i in range(m):
        # one histogram per query: a per-row bincount beats a 2-D scatter and needs no int64 keys
        h = torch.bincount(key[i], minlength=bins)
        h.cumsum_(0)                   # h[x] = #items with key <= x
        n_le[i] = h[m_key - 1::m_key]
        if want_ranks:
            torch.index_select(h, 0, row_keys[i], out=ranks_rows[i])
    d_rel = torch.div(flat_keys, m_key, rounding_mode="floor").numpy()
    r_le = np.cumsum(np.bincount(d_rel + rel_rows * k1, minlength=m * k1).reshape(m, k1), axis=1)

    out = None
    if want_ranks:
        out = _pad_rows(ranks.numpy(), rel_rows, n_rel, fill=n + 1)
        out.sort(axis=1)
    elif need_ranks:  # too many relevant items for a histogram: per-query stable argsort
        out = _ranks_by_argsort(key.numpy(), rel_mask, n_rel, n)
    return _Chunk(rows=rows, n_rel=n_rel, n_le=n_le.numpy(), r_le=r_le, ranks=out)


def _pad_rows(vals: np.ndarray, row_ids: np.ndarray, counts: np.ndarray, fill: int) -> np.ndarray:
    if (counts == counts[0]).all():
        return vals.reshape(len(counts), -1).copy()
    out = np.full((len(counts), int(counts.max())), fill, dtype=np.int64)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    out[row_ids, np.arange(len(vals)) - starts[row_ids]] = vals
    return out


def _ranks_by_argsort(dist: np.ndarray, rel_mask: np.ndarray, n_rel: np.ndarray, n: int) -> np.ndarray:
    """Stable ranks of relevant items by per-query argsort (used when R is very large)."""
    m = dist.shape[0]
    d16 = dist.astype(np.int16)
    out = np.full((m, int(n_rel.max())), n + 1, dtype=np.int64)
    for i in range(m):
        rel = rel_mask if rel_mask.ndim == 1 else rel_mask[i]
        order = np.argsort(d16[i], kind="stable")  # radix sort on small ints
        r = np.flatnonzero(rel[order]) + 1
        out[i, :len(r)] = r
    return out


# ----------------------------------------------------------------------------------------------
# AP from counts and ranks


def _harmonic(n: int) -> np.ndarray:
    """H[i] = 1 + 1/2 + … + 1/i for i = 0..n."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64))])


def _bucket_terms(c: _Chunk):
    n_b = np.diff(c.n_le, axis=1, prepend=0)
    r_b = np.diff(c.r_le, axis=1, prepend=0)
    return n_b, r_b, c.n_le - n_b, c.r_le - r_b


def _expected_precision_sums(n_b, r_b, n0, r0, h: np.ndarray) -> np.ndarray:
    """E[sum of precisions at the relevant items of each distance bucket] when the bucket's items
    are in uniformly random order (McSherry & Najork 2008). Shapes (m, k+1)."""
    d_h = h[n0 + n_b] - h[n0]   # sum_{p=1}^{n_b} 1/(n0 + p)
    first = (r0 + 1) * d_h
    with np.errstate(divide="ignore", invalid="ignore"):
        second = np.where(n_b > 1, (r_b - 1) / np.maximum(n_b - 1, 1) * (n_b - (n0 + 1) * d_h), 0.0)
        s = np.where(n_b > 0, r_b / np.maximum(n_b, 1) * (first + second), 0.0)
    return s


def _ap_stable(c: _Chunk, topk: int | None) -> np.ndarray:
    pos = np.arange(1, c.ranks.shape[1] + 1, dtype=np.float64)
    valid = pos[None, :] <= c.n_rel[:, None]
    if topk is not None:
        valid &= c.ranks <= topk
    terms = np.where(valid, pos[None, :] / c.ranks, 0.0)
    denom = valid.sum(1) if topk is not None else c.n_rel
    return np.where(denom > 0, terms.sum(1) / np.maximum(denom, 1), 0.0)


def _ap_aware(c: _Chunk, h: np.ndarray) -> np.ndarray:
    s = _expected_precision_sums(*_bucket_terms(c), h)
    return s.sum(1) / c.n_rel


def _ap_aware_at_k(c: _Chunk, topk: int, h: np.ndarray) -> np.ndarray:
    """E[AP@k] over random orders of tied items. Only the bucket that the cut at rank k splits is
    uncertain: the number X of its relevant items above the cut is hypergeometric."""
    from scipy.special import gammaln

    n_b, r_b, n0, r0 = _bucket_terms(c)
    s = _expected_precision_sums(n_b, r_b, n0, r0, h)
    m = len(c.rows)
    cut = np.argmax(c.n_le >= topk, axis=1)          # bucket holding rank k
    ix = (np.arange(m), cut)
    a_prev = (np.cumsum(s, axis=1) - s)[ix]           # buckets wholly above the cut
    nb, rb, nn, rr = n_b[ix], r_b[ix], n0[ix], r0[ix]
    t = topk - nn                                     # positions of the cut bucket above the cut
    d_h = h[nn + t] - h[nn]
    out = np.empty(m)
    step = max(1, 2**21 // (int(np.minimum(t, rb).max()) + 1))
    for a in range(0, m, step):
        sl = slice(a, a + step)
        tt, nbs, rbs, rrs, nns, dhs = (v[sl][:, None].astype(np.float64)
                                       for v in (t, nb, rb, rr, nn, d_h))
        x = np.arange(int(np.minimum(t[sl], rb[sl]).max()) + 1, dtype=np.float64)[None, :]
        ok = (x <= rbs) & (tt - x <= nbs - rbs) & (x <= tt)

        def lbinom(a_, b_):
            return gammaln(a_ + 1) - gammaln(b_ + 1) - gammaln(np.maximum(a_ - b_, 0) + 1)

        with np.errstate(invalid="ignore", divide="ignore"):
            logp = lbinom(rbs, np.minimum(x, rbs)) + lbinom(nbs - rbs, np.clip(tt - x, 0, None)) \
                - lbinom(nbs, tt)
            pmf = np.where(ok, np.exp(logp), 0.0)
            g = x / tt * ((rrs + 1) * dhs
                          + np.where(tt > 1, (x - 1) / np.maximum(tt - 1, 1) * (tt - (nns + 1) * dhs), 0.0))
            denom = rrs + x
            val = np.where(denom > 0, (a_prev[sl][:, None] + g) / np.maximum(denom, 1), 0.0)
        out[sl] = (pmf * val).sum(1)
    return out


# ----------------------------------------------------------------------------------------------
# public API


def mean_average_precision(query_codes, db_codes, query_labels, db_labels,
                           topk: int | None = None, ties: str = "stable") -> float:
    """mAP of Hamming ranking, in [0, 1] (see `notebooks/03_retrieval_evaluation.ipynb`).

    topk=None ranks the whole database (mAP@all, the paper's metric). topk=k gives mAP@k: the
    precisions at the relevant items among the first k, averaged over the number of relevant items
    within the first k (the DSH/ADSH `calc_topMap` convention); a query with none there scores 0.

    ties="stable": equal distances in database order (a stable argsort). ties="aware": the
    expected AP when tied items are in uniformly random order (McSherry & Najork, ECIR 2008),
    computed exactly from the per-distance counts. With topk, "aware" is the expectation of the
    AP@k above over those random orders (the bucket cut by rank k contributes a hypergeometric
    number of relevant items). A query without relevant items scores 0 and counts in the mean.
    """
    if ties not in ("stable", "aware"):
        raise ValueError(f"ties must be 'stable' or 'aware', got {ties!r}")
    if topk is not None and (int(topk) != topk or topk < 1):
        raise ValueError(f"topk must be a positive integer or None, got {topk!r}")
    p = _prepare(query_codes, db_codes, query_labels, db_labels)
    if topk is not None:
        topk = int(topk)
        if topk >= p.n:
            topk = None  # the whole database: AP@n is AP@all
    h = _harmonic(p.n) if ties == "aware" else None
    total = 0.0
    for c in _iter_chunks(p, need_ranks=ties == "stable"):
        if ties == "stable":
            ap = _ap_stable(c, topk)
        elif topk is None:
            ap = _ap_aware(c, h)
        else:
            ap = _ap_aware_at_k(c, topk, h)
        total += float(ap.sum())
    return total / p.nq


def precision_at_n(query_codes, db_codes, query_labels, db_labels,
                   ns: int | Sequence[int]) -> np.ndarray:
    """Mean precision of the top-N list for each N in ns (stable ties; 1 <= N <= database size).

    Returns a float array with one entry per N. See `notebooks/03_retrieval_evaluation.ipynb`.
    """
    ns_arr = np.atleast_1d(np.asarray(ns, dtype=np.int64))
    p = _prepare(query_codes, db_codes, query_labels, db_labels)
    if ns_arr.ndim != 1 or (ns_arr < 1).any() or (ns_arr > p.n).any():
        raise ValueError(f"every N must be in 1..{p.n} (the database size), got {ns!r}")
    hits = np.zeros(len(ns_arr), dtype=np.int64)
    for c in _iter_chunks(p, need_ranks=True):
        m, width = c.ranks.shape
        stride = p.n + 2  # ranks lie in 1..n+1: offset rows so the flat array stays sorted
        off = np.arange(m, dtype=np.int64)[:, None] * stride
        flat = (c.ranks + off).ravel()
        found = np.searchsorted(flat, (off + ns_arr[None, :]).ravel(), side="right").reshape(m, -1)
        hits += (found - np.arange(m)[:, None] * width).sum(0)
    return hits / (ns_arr.astype(np.float64) * p.nq)


def precision_recall_by_radius(query_codes, db_codes, query_labels, db_labels
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Mean precision and recall when every item within Hamming radius r is retrieved, r = 0..k.

    A query that retrieves nothing at radius r has precision 0 there and still counts in the
    mean (the convention that penalises empty retrievals, rather than skipping those queries); a
    query without relevant items has recall 0. Returns two float arrays of length k + 1. See
    `notebooks/03_retrieval_evaluation.ipynb`.
    """
    p = _prepare(query_codes, db_codes, query_labels, db_labels)
    prec = np.zeros(p.k + 1)
    rec = np.zeros(p.k + 1)
    for c in _iter_chunks(p, need_ranks=False):
        with np.errstate(divide="ignore", invalid="ignore"):
            prec += np.where(c.n_le > 0, c.r_le / np.maximum(c.n_le, 1), 0.0).sum(0)
        rec += (c.r_le / c.n_rel[:, None]).sum(0)
    return prec / p.nq, rec / p.nq


def precision_within_radius(query_codes, db_codes, query_labels, db_labels, radius: int = 2) -> float:
    """Mean precision of the items within Hamming radius `radius` (0 for a query that retrieves
    nothing), as in `precision_recall_by_radius`. See `notebooks/03_retrieval_evaluation.ipynb`."""
    if int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    prec, _ = precision_recall_by_radius(query_codes, db_codes, query_labels, db_labels)
    return float(prec[min(int(radius), len(prec) - 1)])


def relevance(query_labels, db_labels) -> np.ndarray:
    """Boolean m×n matrix: database item j is relevant to query i (same class id, or for multi-hot
    labels at least one shared label). The rule every metric here uses; for small m·n (plots)."""
    ql, dl = check_labels(query_labels, "query_labels"), check_labels(db_labels, "db_labels")
    if ql.ndim == 1 and dl.ndim == 1:
        return ql[:, None] == dl[None, :]
    if ql.ndim == 2 and dl.ndim == 2:
        return (ql.astype(np.float64) @ dl.astype(np.float64).T) > 0
    raise ValueError(f"labels must both be class ids (n,) or both multi-hot (n, C), got {ql.shape} and {dl.shape}")
