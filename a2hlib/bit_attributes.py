"""Bit × attribute correspondence: which visual attributes does each hash bit encode?

docs/METHOD.md §9, claim 1 ("individual bits correspond to visual attributes"), measured against ground
truth in `notebooks/05_bit_attributes.ipynb`, which explains every choice below.

Measures, for every bit j and binary attribute a (arrays are bits × attributes, k×A):

* `auc_matrix`: AUC of the relaxed value u_j for the attribute (rank-based Mann-Whitney U with
  mid-ranks for ties). 0.5 = no relation; 1 or 0 = the bit's value separates present from absent.
* `mutual_information`: plug-in mutual information in bits between the bit's sign (sign(0) = +1)
  and the attribute.
* Both take an optional `valid` mask (rows × attributes: CUB's certainty filter,
  `filter_by_certainty`) and optional `strata` (class ids): then they are *within-class* measures
  (stratified AUC = P(u of a positive > u of a negative of the same class); conditional mutual
  information I(bit; attribute | class)). Class-determined attributes are constant inside a class
  and get NaN there; that is the point: only what varies inside a class is left.

Chance level: `permutation_null` shuffles the rows of the attribute matrix (with its mask; inside
each stratum when `strata` is given), which keeps the codes, the attribute frequencies and the
correlations between attributes, and breaks only the bit-attribute link. Plug-in MI is biased
upwards on finite samples, and the best of A attributes is biased upwards again; the null carries
both biases, so every "above chance" number subtracts the null of the *same statistic*:

* best attribute of a bit (max over attributes) vs the null's max over attributes of that bit
  (the multiple-comparison issue is handled by comparing maxima with maxima, Westfall-Young's maxT);
* an attribute is *captured* when its best bit (max over bits) exceeds the `quantile` (0.99) of
  the null's max over bits for that attribute, i.e. a per-attribute family-wise level of 1 % over
  the k bits; about (1 - quantile)·A attributes are captured by chance alone.

The class confound: when attributes are fixed by the class, any class-discriminative code is
associated with them. `class_shuffle_analysis` answers it with a second null that permutes which
class has which attribute vector: arbitrary class splits sit at its chance level, splits along
attributes beat it. The within-class measures (`strata`) look only at what varies inside classes.

Every result holds NaN for attributes that cannot be measured (no valid positive or negative; for
within-class measures: constant inside every class). Summaries ignore them.
"""
from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Iterable, Sequence

import numpy as np
import torch

from a2hlib.codes import binarize

log = logging.getLogger(__name__)

__all__ = [
    "attribute_groups", "short_name", "filter_by_certainty", "usable_attributes", "binary_bits",
    "auc_matrix", "mutual_information", "PermutationNull", "permutation_null", "alignment_summary",
    "top_attributes", "BitAttributeAnalysis", "analyse", "class_attributes", "class_shuffle_analysis",
    "extreme_items", "attention_maps", "gallery", "QueryAttributes", "query_attributes", "Study", "run_study",
    "summary_table", "claim", "gallery_bit", "strongest_columns", "run_records",
]


# ------------------------------------------------------------------------------------ helpers
def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _nanmax(x: np.ndarray, axis) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(x, axis=axis)


def _nanmean(x, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _check(u, attributes, valid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = _np(u).astype(np.float64)
    a = _np(attributes)
    if u.ndim != 2 or a.ndim != 2 or len(u) != len(a):
        raise ValueError(f"need codes (n, k) and attributes (n, A) with the same n, got {u.shape} and {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise ValueError("attributes must be binary (0/1 or bool)")
    v = np.ones(a.shape, bool) if valid is None else _np(valid).astype(bool)
    if v.shape != a.shape:
        raise ValueError(f"valid mask has shape {v.shape}, attributes {a.shape}")
    return u, a.astype(bool), v


def _strata_codes(strata, n: int) -> np.ndarray:
    if strata is None:
        return np.zeros(n, np.int64)
    s = _np(strata)
    if s.shape != (n,):
        raise ValueError(f"strata must be one id per row ({n},), got {s.shape}")
    return np.unique(s, return_inverse=True)[1].astype(np.int64)


def attribute_groups(names: Sequence[str]) -> dict[str, list[int]]:
    """Columns per attribute group from CUB-style names: `has_wing_color::red` → `wing_color`."""
    out: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        group = name.split("::", 1)[0]
        out.setdefault(group[4:] if group.startswith("has_") else group, []).append(i)
    return out


def short_name(name: str) -> str:
    """`has_wing_color::red` → `wing_color: red` (for axis labels)."""
    group, _, value = name.partition("::")
    group = group[4:] if group.startswith("has_") else group
    return f"{group}: {value}" if value else group


def filter_by_certainty(present, certainty, min_certainty: int = 3) -> np.ndarray:
    """Validity mask (rows × attributes, bool) keeping annotations with certainty ≥ `min_certainty`.

    CUB's certainty: 1 not visible, 2 guessing, 3 probably, 4 definitely; 0 means no annotation line
    and is never valid. Datasets without certainties store 4 everywhere (all valid for ≤ 4).
    """
    present, certainty = _np(present), _np(certainty)
    if present.shape != certainty.shape:
        raise ValueError(f"present {present.shape} and certainty {certainty.shape} differ in shape")
    if not 0 <= int(min_certainty) <= 4:
        raise ValueError(f"min_certainty must lie in 0..4 (CUB's scale), got {min_certainty}")
    return (certainty >= max(int(min_certainty), 1)) & (certainty > 0)


def usable_attributes(present, valid=None, min_count: int = 5, strata=None) -> np.ndarray:
    """Bool (A,): attributes with at least `min_count` valid positives and valid negatives
    (with `strata`: counted only in strata where the attribute takes both values)."""
    a = _np(present).astype(bool)
    v = np.ones(a.shape, bool) if valid is None else _np(valid).astype(bool)
    s = _strata_codes(strata, len(a))
    onehot = np.eye(s.max() + 1 if len(s) else 1)[s]
    pos = onehot.T @ (a & v)
    neg = onehot.T @ (~a & v)
    both = (pos > 0) & (neg > 0)
    return ((pos * both).sum(0) >= min_count) & ((neg * both).sum(0) >= min_count)


def binary_bits(codes) -> np.ndarray:
    """Bits (n×k, bool): True where sign(u) = +1 (sign(0) = +1, `a2hlib.codes.binarize`) for relaxed
    u or ±1 codes; a boolean matrix, or one holding only the values 0 and 1, is read as bits as is."""
    x = _np(codes)
    if x.dtype == bool:
        return x
    if np.isin(x, (0, 1)).all():
        return x > 0
    return binarize(x) > 0


# ------------------------------------------------------------------------------------ measures
def _mid_ranks(values: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Mid-ranks (1-based; ties share their mean rank) of `values` inside each stratum."""
    order = np.lexsort((values, strata))
    v, s = values[order], strata[order]
    new = np.r_[True, (v[1:] != v[:-1]) | (s[1:] != s[:-1])]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(v)]
    first_of_stratum = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    offset = np.repeat(first_of_stratum, np.diff(np.r_[first_of_stratum, len(v)]))
    group = np.cumsum(new) - 1
    ranks = np.empty(len(v))
    ranks[order] = (starts[group] + ends[group] + 1) / 2 - offset
    return ranks


class _AucPlan:
    """Everything about the codes that every permutation of the attributes reuses.

    Without a mask: AUC = (Rᵀ·pos − Σ_c P_c(P_c+1)/2) / Σ_c P_c N_c with R the mid-ranks of u inside
    each stratum (one matrix product). With a mask the ranks depend on the attribute's valid rows,
    so per bit: rows sorted by (stratum, u), tie groups summed, negatives counted below each group.
    """

    def __init__(self, u: np.ndarray, strata: np.ndarray):
        self.ranks = np.stack([_mid_ranks(u[:, j], strata) for j in range(u.shape[1])], 1)
        self.plans = []
        for j in range(u.shape[1]):
            order = np.lexsort((u[:, j], strata))
            v, s = u[order, j], strata[order]
            starts = np.flatnonzero(np.r_[True, (v[1:] != v[:-1]) | (s[1:] != s[:-1])])
            gs = s[starts]
            first = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])  # first group of each stratum
            owner = np.cumsum(np.r_[True, gs[1:] != gs[:-1]]) - 1   # stratum position of each group
            self.plans.append((order, None if len(starts) == len(v) else starts, first, owner))
        onehot = np.zeros((len(strata), strata.max() + 1 if len(strata) else 1), np.float32)
        onehot[np.arange(len(strata)), strata] = 1
        self.onehot = onehot

    def auc(self, pos: np.ndarray, neg: np.ndarray, masked: bool = True) -> np.ndarray:
        p_c, n_c = self.onehot.T @ pos.astype(np.float32), self.onehot.T @ neg.astype(np.float32)
        pairs = (p_c.astype(np.float64) * n_c).sum(0)  # Σ_c P_c N_c
        if not masked:
            u_stat = self.ranks.T @ pos.astype(np.float64) - (p_c.astype(np.float64) * (p_c + 1) / 2).sum(0)
        else:
            a = pos.shape[1]
            both = np.concatenate([pos, neg], 1).astype(np.float32)
            u_stat = np.empty((len(self.plans), a))
            for j, (order, starts, first, owner) in enumerate(self.plans):
                g = both[order] if starts is None else np.add.reduceat(both[order], starts, axis=0)
                gpos, gneg = g[:, :a], g[:, a:]
                below = np.cumsum(gneg, axis=0) - gneg      # negatives strictly below, all strata
                if len(first) > 1:
                    below -= below[first][owner]            # ... minus those of earlier strata
                u_stat[j] = np.einsum("ga,ga->a", gpos, below + 0.5 * gneg, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, u_stat / np.where(pairs > 0, pairs, 1), np.nan)


def auc_matrix(u, attributes, valid=None, strata=None) -> np.ndarray:
    """AUC (k×A) of each bit's relaxed value for each attribute; NaN where not measurable.

    Mann-Whitney U with mid-ranks for ties (the same number as sklearn's `roc_auc_score`), over the
    rows where `valid` is true. With `strata`: only pairs from the same stratum count (stratified
    AUC), i.e. the within-class AUC averaged over classes with weights P_c·N_c.
    """
    u, a, v = _check(u, attributes, valid)
    plan = _AucPlan(u, _strata_codes(strata, len(u)))
    return plan.auc(a & v, ~a & v, masked=not v.all())


def _mi_counts(bits: np.ndarray, pos: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, ...]:
    """2×2 counts (k×A each) of bit × attribute over valid rows, from two matrix products."""
    n11 = bits.T @ pos
    nb1 = bits.T @ val
    npos = pos.sum(0)[None, :]
    nval = val.sum(0)[None, :]
    return n11, nb1 - n11, npos - n11, nval - nb1 - npos + n11, nval


def _mi_from_counts(n11, n10, n01, n00, total) -> np.ndarray:
    b1, b0 = n11 + n10, n01 + n00
    a1, a0 = n11 + n01, n10 + n00
    mi = np.zeros(np.broadcast(n11, total).shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        for nxy, nx, ny in ((n11, b1, a1), (n10, b1, a0), (n01, b0, a1), (n00, b0, a0)):
            term = nxy / total * np.log2(nxy * total / (nx * ny))
            mi += np.where(nxy > 0, term, 0.0)
    return mi


class _MiPlan:
    def __init__(self, bits: np.ndarray, strata: np.ndarray):
        self.bits = bits.astype(np.float64)
        self.rows = [np.flatnonzero(strata == c) for c in range(strata.max() + 1 if len(strata) else 0)]

    def mi(self, pos: np.ndarray, val: np.ndarray) -> np.ndarray:
        pos, val = pos.astype(np.float64), val.astype(np.float64)
        total = val.sum(0)[None, :]
        out = np.zeros((self.bits.shape[1], pos.shape[1]))
        varies = np.zeros(pos.shape[1], bool)
        for rows in self.rows if len(self.rows) > 1 else [slice(None)]:
            n11, n10, n01, n00, nval = _mi_counts(self.bits[rows], pos[rows], val[rows])
            npos = n11 + n01
            varies |= ((npos > 0) & (npos < nval))[0]
            out += np.nan_to_num(_mi_from_counts(n11, n10, n01, n00, nval) * nval)  # weight N_c
        with np.errstate(invalid="ignore", divide="ignore"):
            out = out / total
        out[:, ~varies] = np.nan
        return out


def mutual_information(bits, attributes, valid=None, strata=None) -> np.ndarray:
    """Mutual information in bits (k×A) between each bit's sign and each attribute (plug-in
    estimate over valid rows); NaN where the attribute is constant.

    `bits`: ±1 codes, 0/1 bits or relaxed u (binarised with sign(0) = +1). With `strata`: the
    conditional MI I(bit; attribute | stratum) = Σ_c p(c) I_c (NaN if constant in every stratum).
    """
    u, a, v = _check(bits, attributes, valid)
    plan = _MiPlan(binary_bits(u), _strata_codes(strata, len(u)))
    return plan.mi(a & v, v)


# ------------------------------------------------------------------------------------ chance level
@dataclasses.dataclass
class PermutationNull:
    """The measures recomputed on `n` shuffles of the attributes: `mi` and `auc` are float32 arrays
    (n×k×A) (absent measures: None). Statistics of any attribute subset are taken from these, so
    the null of a maximum is always the maximum over the same columns."""

    mi: np.ndarray | None
    auc: np.ndarray | None
    seed: int
    kind: str = "rows"  # what was shuffled: "rows", "rows within strata" or "classes"

    @property
    def within_strata(self) -> bool:
        return self.kind == "rows within strata"

    @property
    def n_permutations(self) -> int:
        return len(self.mi if self.mi is not None else self.auc)

    def _get(self, measure: str) -> np.ndarray:
        x = {"mi": self.mi, "auc": self.auc}[measure]
        if x is None:
            raise ValueError(f"this null was computed without {measure!r}")
        return x

    def score(self, measure: str) -> np.ndarray:
        """The statistic "best" refers to: MI itself, |AUC − 0.5| for AUC."""
        x = self._get(measure)
        return np.abs(x - 0.5) if measure == "auc" else x

    def cell_mean(self, measure: str = "mi") -> np.ndarray:
        """Null mean per cell (k×A) of the measure (for AUC: of AUC itself, about 0.5)."""
        return _nanmean(self._get(measure), axis=0)

    def cell_quantile(self, measure: str = "mi", q: float = 0.99) -> np.ndarray:
        """Null `q`-quantile per cell (k×A) of the score (MI, or |AUC − 0.5|)."""
        return np.nanquantile(self.score(measure), q, axis=0)


def _permutation(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A row permutation that keeps every row inside its stratum (a plain one for one stratum)."""
    by_stratum = np.argsort(strata, kind="stable")
    shuffled = np.lexsort((rng.random(len(strata)), strata))
    perm = np.empty(len(strata), np.int64)
    perm[by_stratum] = shuffled
    return perm


def _null(u: np.ndarray, strata: np.ndarray, draws, n: int, num_attributes: int, measures: tuple[str, ...]):
    """MI and AUC (n×k×A, float32) of the codes against each (attributes, valid) pair from `draws`."""
    if not set(measures) <= {"mi", "auc"} or not measures:
        raise ValueError(f"measures must be a non-empty subset of ('mi', 'auc'), got {measures}")
    if n < 1:
        raise ValueError("n_permutations must be at least 1")
    auc_plan = _AucPlan(u, strata) if "auc" in measures else None
    mi_plan = _MiPlan(binary_bits(u), strata) if "mi" in measures else None
    shape = (n, u.shape[1], num_attributes)
    mi = np.empty(shape, np.float32) if mi_plan else None
    auc = np.empty(shape, np.float32) if auc_plan else None
    for p in range(n):
        ap, vp = draws()
        if mi_plan:
            mi[p] = mi_plan.mi(ap & vp, vp)
        if auc_plan:
            auc[p] = auc_plan.auc(ap & vp, ~ap & vp, masked=not vp.all())
    log.debug("null: %d draws, %s", n, shape)
    return mi, auc


def permutation_null(u, attributes, valid=None, strata=None, n_permutations: int = 200, seed: int = 0,
                     measures: Iterable[str] = ("mi", "auc")) -> PermutationNull:
    """Chance level of `mutual_information` and `auc_matrix` by permuting the attribute rows (with
    their validity mask) `n_permutations` times; inside each stratum when `strata` is given (the
    null of the within-class measures, which keeps each class's attribute frequencies)."""
    u, a, v = _check(u, attributes, valid)
    s = _strata_codes(strata, len(u))
    rng = np.random.default_rng(seed)

    def draw():
        perm = _permutation(s, rng)
        return a[perm], v[perm]

    mi, auc = _null(u, s, draw, n_permutations, a.shape[1], tuple(measures))
    return PermutationNull(mi=mi, auc=auc, seed=seed, kind="rows within strata" if strata is not None else "rows")


def class_attributes(attributes, labels, valid=None) -> tuple[np.ndarray, np.ndarray]:
    """Class-level attributes (C×A bool: majority of the valid annotations of the class, ties count
    as present) and where they are defined (C×A: the class has a valid annotation); classes are
    `np.unique(labels)` in order."""
    a = _np(attributes).astype(bool)
    v = np.ones(a.shape, bool) if valid is None else _np(valid).astype(bool)
    inv = np.unique(_np(labels), return_inverse=True)[1]
    onehot = np.eye(inv.max() + 1)[inv]
    counts = onehot.T @ v
    positives = onehot.T @ (a & v)
    return (counts > 0) & (2 * positives >= counts), counts > 0


def class_shuffle_analysis(u, attributes, labels, names: Sequence[str], valid=None, n_permutations: int = 200,
                           seed: int = 0) -> "BitAttributeAnalysis":
    """Bits against *class-level* attributes, with a null that shuffles which class has which
    attribute vector (class ids permuted; the codes and the set of attribute vectors are kept).

    This is the class-confound test: a code that separates classes but ignores their attributes
    (bits = arbitrary class splits) is at chance here; bits that split classes along attributes
    are above it. Per-image attributes (CUB) are reduced to the class majority (`class_attributes`).
    """
    u, a, v = _check(u, attributes, valid)
    inv = np.unique(_np(labels), return_inverse=True)[1]
    if len(inv) != len(u):
        raise ValueError(f"labels must be one class id per row ({len(u)},), got {len(inv)}")
    cls, defined = class_attributes(a, inv, v)
    observed, observed_valid = cls[inv], defined[inv]
    rng = np.random.default_rng(seed)

    def draw():
        perm = rng.permutation(len(cls))
        return cls[perm][inv], defined[perm][inv]

    mi, auc = _null(u, np.zeros(len(u), np.int64), draw, n_permutations, a.shape[1], ("mi", "auc"))
    null = PermutationNull(mi=mi, auc=auc, seed=seed, kind="classes")
    return BitAttributeAnalysis(mutual_information(u, observed, observed_valid),
                                auc_matrix(u, observed, observed_valid), null, list(names), False)


# ------------------------------------------------------------------------------------ summaries
def _columns(num: int, columns) -> np.ndarray:
    if columns is None:
        return np.arange(num)
    c = np.asarray(columns)
    return np.flatnonzero(c) if c.dtype == bool else c.astype(np.int64)


def alignment_summary(mi: np.ndarray, auc: np.ndarray, null: PermutationNull, columns=None,
                      quantile: float = 0.99) -> dict[str, float]:
    """How well a model's bits line up with attributes (restricted to `columns`), against chance.

    * `mi_best_above_chance`: mean over bits of (MI of the bit's best attribute − the null mean of
      that same maximum); 0 at chance. `mi_best`, `mi_best_null`: the two terms.
    * `bits_aligned`: bits whose best MI exceeds the null's `quantile` of the max over attributes.
    * `attributes_captured`: attributes whose best bit exceeds the null's `quantile` of the max over
      bits; `attributes_captured_by_chance` = (1 − quantile)·attributes is what chance gives.
    * `auc_best_above_chance`: as `mi_best_above_chance` for |AUC − 0.5|.
    Attributes that are NaN everywhere (not measurable) are dropped first.
    """
    mi, auc = np.asarray(mi, float), np.asarray(auc, float)
    cols = _columns(mi.shape[1], columns)
    cols = cols[~np.all(np.isnan(mi[:, cols]), axis=0)] if len(cols) else cols
    k = mi.shape[0]
    out: dict[str, float] = {"bits": k, "attributes": int(len(cols)), "quantile": quantile,
                             "permutations": null.n_permutations}
    if len(cols) == 0:
        nan = float("nan")
        out.update(mi_best=nan, mi_best_null=nan, mi_best_above_chance=nan, bits_aligned=0,
                   bits_aligned_share=nan, attributes_captured=0, attributes_captured_share=nan,
                   attributes_captured_by_chance=0.0, auc_best=nan, auc_best_null=nan,
                   auc_best_above_chance=nan)
        return out
    for name, observed in (("mi", mi[:, cols]), ("auc", np.abs(auc[:, cols] - 0.5))):
        scores = null.score(name)[:, :, cols].astype(float)
        best = _nanmax(observed, axis=1)                    # k: best attribute of each bit
        null_best = _nanmax(scores, axis=2)                 # P×k
        out[f"{name}_best"] = float(_nanmean(best))
        out[f"{name}_best_null"] = float(_nanmean(null_best.mean(0)))
        out[f"{name}_best_above_chance"] = float(_nanmean(best - null_best.mean(0)))
        if name == "mi":
            aligned = best > np.nanquantile(null_best, quantile, axis=0)
            attr_best = _nanmax(observed, axis=0)           # A': best bit of each attribute
            captured = attr_best > np.nanquantile(_nanmax(scores, axis=1), quantile, axis=0)
            out.update(bits_aligned=int(aligned.sum()), bits_aligned_share=float(aligned.mean()),
                       attributes_captured=int(captured.sum()),
                       attributes_captured_share=float(captured.mean()),
                       attributes_captured_by_chance=float((1 - quantile) * len(cols)))
    return out


def top_attributes(mi: np.ndarray, auc: np.ndarray, names: Sequence[str], null: PermutationNull | None = None,
                   top: int = 3, columns=None):
    """A table (pandas) with the `top` attributes of every bit, ranked by MI above the cell's null
    mean (by MI without a null). `direction` says which sign of the bit goes with "present"."""
    import pandas as pd
    mi, auc = np.asarray(mi, float), np.asarray(auc, float)
    cols = _columns(mi.shape[1], columns)
    excess = mi - (null.cell_mean("mi") if null is not None else 0.0)
    rows = []
    for j in range(mi.shape[0]):
        ranked = cols[np.argsort(-np.nan_to_num(excess[j, cols], nan=-np.inf), kind="stable")][:top]
        for r, a in enumerate(ranked):
            if np.isnan(mi[j, a]):
                continue
            rows.append({"bit": j, "rank": r + 1, "attribute": names[a], "column": int(a),
                         "mi": mi[j, a], "mi_above_chance": excess[j, a], "auc": auc[j, a],
                         "direction": "+1 ↔ present" if auc[j, a] >= 0.5 else "−1 ↔ present"})
    return pd.DataFrame(rows)


@dataclasses.dataclass
class BitAttributeAnalysis:
    """`analyse`'s result: MI and AUC (k×A), their permutation null, the attribute names."""

    mi: np.ndarray
    auc: np.ndarray
    null: PermutationNull
    names: list[str]
    within_strata: bool

    def mi_above_chance(self) -> np.ndarray:
        """MI minus the cell's null mean (k×A), what the heatmaps show."""
        return self.mi - self.null.cell_mean("mi")

    def summary(self, columns=None, quantile: float = 0.99) -> dict[str, float]:
        return alignment_summary(self.mi, self.auc, self.null, columns, quantile)

    def top_attributes(self, top: int = 3, columns=None):
        return top_attributes(self.mi, self.auc, self.names, self.null, top, columns)

    def best_bit(self, columns=None) -> tuple[int, int]:
        """(bit, attribute column) of the largest MI above chance among `columns`."""
        cols = _columns(self.mi.shape[1], columns)
        excess = np.nan_to_num(self.mi_above_chance()[:, cols], nan=-np.inf)
        j, c = np.unravel_index(int(np.argmax(excess)), excess.shape)
        return int(j), int(cols[c])

    def best_attribute(self, bit: int, columns=None) -> int:
        """Attribute column with the largest MI above chance for `bit`."""
        cols = _columns(self.mi.shape[1], columns)
        return int(cols[int(np.argmax(np.nan_to_num(self.mi_above_chance()[bit, cols], nan=-np.inf)))])


def analyse(u, attributes, names: Sequence[str], valid=None, strata=None, n_permutations: int = 200,
            seed: int = 0) -> BitAttributeAnalysis:
    """MI, AUC and their permutation null for one code matrix (within strata if `strata`)."""
    mi = mutual_information(u, attributes, valid, strata)
    auc = auc_matrix(u, attributes, valid, strata)
    null = permutation_null(u, attributes, valid, strata, n_permutations, seed)
    return BitAttributeAnalysis(mi, auc, null, list(names), strata is not None)


# ------------------------------------------------------------------------------------ galleries
def extreme_items(u, bit: int, count: int, labels=None, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows with the highest and the lowest relaxed value of `bit` (each `count`, most extreme
    first). With `labels` and `per_class`, at most `per_class` rows of one class on each side, so
    a gallery shows what the bit does across classes rather than one class's images."""
    values = _np(u)[:, bit]
    count = min(count, len(values) // 2)
    order = np.argsort(-values, kind="stable")
    if labels is None or per_class is None:
        return order[:count].copy(), order[::-1][:count].copy()
    labels = _np(labels)
    chosen: list[list[int]] = []
    for side in (order, order[::-1]):
        taken, per = [], {}
        for i in side:
            c = labels[i].tobytes() if labels.ndim > 1 else labels[i]
            if per.get(c, 0) < per_class and (not chosen or i not in chosen[0]):
                taken.append(int(i))
                per[c] = per.get(c, 0) + 1
            if len(taken) == count:
                break
        chosen.append(taken)
    return np.array(chosen[0], dtype=np.int64), np.array(chosen[1], dtype=np.int64)


@torch.no_grad()
def attention_maps(model, images: torch.Tensor) -> np.ndarray | None:
    """The part attention maps A (B×M×h×w) of an A²-Net model for a batch; None for `adsh`."""
    from a2hlib.models import eval_mode
    if getattr(model, "num_parts", 0) == 0:
        return None
    device = next(model.parameters()).device
    with eval_mode(model):
        return model.forward_all(images.to(device))["attention"].float().cpu().numpy()


def gallery(dataset, u, bit: int, present, attribute: str, class_names: Sequence[str], model=None,
            count: int = 6, per_class: int = 1) -> dict:
    """What `a2hlib.plotting.plot_bit_gallery` draws for one bit: the `count` query images with the
    highest and the lowest relaxed value (at most `per_class` per class on each side), their u,
    class names, whether the attribute is present, and the part attention maps (A²-Net models)."""
    labels = dataset.targets.numpy()
    high, low = extreme_items(u, bit, count, labels=labels if labels.ndim == 1 else None, per_class=per_class)
    rows = np.concatenate([high, low])
    images = torch.stack([dataset[int(i)][0] for i in rows])
    classes = [class_names[int(labels[i])] if labels.ndim == 1 else "" for i in rows]
    return {"bit": int(bit), "attribute": attribute, "rows": rows, "high": high, "low": low, "images": images,
            "u": _np(u)[rows, bit], "present": _np(present).astype(bool)[rows], "classes": classes,
            "classes_high": len(set(classes[:len(high)])), "classes_low": len(set(classes[len(high):])),
            "attention": attention_maps(model, images) if model is not None else None}


# -------------------------------------------------------------------------- the study of 05
@dataclasses.dataclass
class QueryAttributes:
    """The attributes of the query images that the study uses (`query_attributes`)."""

    present: np.ndarray               # n×A bool
    valid: np.ndarray                 # n×A bool (certainty filter)
    names: list[str]                  # A kept attribute names
    labels: np.ndarray                # class ids (n,) or multi-hot (n, C)
    nuisance_groups: list[str]        # groups that vary within classes (negative control)
    scopes: dict[str, np.ndarray]     # scope name → bool over the A attributes
    dropped: int                      # attributes dropped by `min_positives`

    @property
    def strata(self) -> np.ndarray | None:
        """Class ids for the within-class measures (single-label data only)."""
        return self.labels if self.labels.ndim == 1 else None


def query_attributes(prepared, rows, labels, min_certainty: int = 3, min_positives: int = 5) -> QueryAttributes:
    """Attributes of manifest `rows` (the query images) from `prepared.attributes()`, filtered by
    certainty (`filter_by_certainty`), without attributes that have fewer than `min_positives`
    valid positives or negatives (`usable_attributes`); scopes "all" and, when the dataset names
    nuisance groups (`dataset.json` `nuisance_groups`), "class-determined" and "nuisance"."""
    sidecar = prepared.attributes()
    if sidecar is None:
        raise FileNotFoundError(f"{prepared.root} has no attributes.npz: this study needs a dataset with attribute "
                                "labels (the built-in 'synthetic' one, or CUB prepared with python -m data_prep)")
    rows = np.asarray(rows)
    present_all = sidecar["present"][rows].astype(bool)
    valid_all = filter_by_certainty(present_all, sidecar["certainty"][rows], min_certainty)
    keep = usable_attributes(present_all, valid_all, min_positives)
    names = [n for n, k in zip(prepared.info["attribute_names"], keep) if k]
    groups = attribute_groups(names)
    nuisance_groups = list(prepared.info.get("nuisance_groups") or [])
    nuisance = np.zeros(len(names), bool)
    for g in nuisance_groups:
        nuisance[groups.get(g, [])] = True
    scopes = {"all": np.ones(len(names), bool)}
    if nuisance.any():
        scopes.update({"class-determined": ~nuisance, "nuisance": nuisance})
    return QueryAttributes(present_all[:, keep], valid_all[:, keep], names, _np(labels), nuisance_groups, scopes,
                           int((~keep).sum()))


@dataclasses.dataclass
class Study:
    """Per (model, seed): the marginal, class-shuffle and within-class analyses, and one summary
    row per (model, seed, scope) in `summaries` (`alignment_summary`'s keys)."""

    marginal: dict
    shuffled: dict
    within: dict
    summaries: "pd.DataFrame"


def run_study(codes: dict, qa: QueryAttributes, n_permutations: int = 200, quantile: float = 0.99) -> Study:
    """The three analyses of `notebooks/05_bit_attributes.ipynb` for every run: `codes` maps
    (model, seed) → relaxed codes u of the query images (n×k)."""
    import pandas as pd
    marginal, shuffled, within, records = {}, {}, {}, []
    for (model, seed), u in codes.items():
        marginal[model, seed] = analyse(u, qa.present, qa.names, qa.valid, n_permutations=n_permutations, seed=seed)
        measures = [("marginal", marginal[model, seed], qa.scopes)]
        if qa.strata is not None:
            shuffled[model, seed] = class_shuffle_analysis(u, qa.present, qa.labels, qa.names, qa.valid,
                                                           n_permutations=n_permutations, seed=seed)
            class_scope = "class-determined" if "class-determined" in qa.scopes else "all"
            measures.append(("class shuffle", shuffled[model, seed], {class_scope: qa.scopes[class_scope]}))
            within[model, seed] = analyse(u, qa.present, qa.names, qa.valid, strata=qa.strata,
                                          n_permutations=n_permutations, seed=seed)
            measures.append(("within class", within[model, seed], {"all": qa.scopes["all"]}))
        for kind, result, scope_columns in measures:
            for scope, columns in scope_columns.items():
                summary = result.summary(columns, quantile)
                if summary["attributes"]:
                    records.append({"model": model, "seed": seed, "scope": f"{kind}, {scope}", **summary})
    return Study(marginal, shuffled, within, pd.DataFrame(records))


SUMMARY_COLUMNS = ("mi_best_above_chance", "bits_aligned", "attributes_captured", "attributes",
                   "attributes_captured_by_chance", "auc_best_above_chance")


def summary_table(summaries: "pd.DataFrame") -> "pd.DataFrame":
    """Scope × model rows, "mean ± sd" over seeds (`a2hlib.stats.mean_sd`) of every summary column."""
    from a2hlib.stats import mean_sd
    digits = {"attributes": 0, "bits_aligned": 1, "attributes_captured": 1, "attributes_captured_by_chance": 1}
    grouped = summaries.groupby(["scope", "model"], sort=False)
    return grouped[list(SUMMARY_COLUMNS)].agg({c: (lambda v, d=digits.get(c, 4): mean_sd(v, d))
                                               for c in SUMMARY_COLUMNS})


def claim(summaries: "pd.DataFrame", models: Sequence[str], control: str = "adsh") -> tuple[list[str], dict[str, str]]:
    """The claim "A²-Net's bits align with attributes more than ADSH's", decided from the numbers by
    `a2hlib.stats` (unpaired over seeds): for each other model, its best-attribute MI above chance
    against the control's, (a) over all images and attributes and (b) above the class-shuffle level;
    then the negative control (attributes that vary within classes): how many are captured over
    all seeds against the chance rate 1 − quantile (one-sided binomial test at 5 %).
    Returns (sentences, verdicts)."""
    from a2hlib.stats import compare, verdict
    scopes = list(dict.fromkeys(summaries["scope"]))
    comparisons = {"all images": ("marginal, all", "chance")}
    for scope in ("class shuffle, class-determined", "class shuffle, all"):
        if scope in scopes:
            comparisons["beyond class"] = (scope, "the class-shuffle level")
            break
    values = {key: g["mi_best_above_chance"].to_numpy() for key, g in summaries.groupby(["scope", "model"])}
    statements, verdicts = [], {}
    for model in [m for m in models if m != control]:
        for label, (scope, level) in comparisons.items():
            a, b = values[scope, model], values[scope, control]
            c = compare(a, b)
            word = verdict(c, "higher")
            verdicts[f"{model}, {label}"] = word
            statements.append(f"{model} bits align with attributes more than {control}'s ({label}): {word} — "
                              f"best-attribute MI above {level} {a.mean():.4f} vs {b.mean():.4f} bits, "
                              f"{c.describe(4)}, {len(a)} vs {len(b)} seed(s).")
    if "within class, all" in scopes:
        from scipy.stats import binomtest
        for model in models:
            s = summaries[(summaries["scope"] == "within class, all") & (summaries["model"] == model)]
            captured, total = int(s["attributes_captured"].sum()), int(s["attributes"].sum())
            rate = 1 - float(s["quantile"].iloc[0])
            p = binomtest(captured, total, rate, alternative="greater").pvalue if total else float("nan")
            state = "above chance" if p < 0.05 else "at chance"
            statements.append(f"{model}, attributes that vary within classes: captured {captured} of {total} "
                              f"(attributes × seeds; chance rate {rate:.0%}, one-sided binomial p = {p:.3f}), "
                              f"best-attribute MI above chance {s['mi_best_above_chance'].mean():.4f} bits: {state}.")
    return statements, verdicts


def gallery_bit(study: Study, model: str, seed: int, qa: QueryAttributes) -> tuple[int, int]:
    """(bit, attribute column) to show for a run: the largest MI above the class-shuffle level
    (what a bit says about attributes beyond telling classes apart), over the class-determined
    attributes; the marginal analysis where there is no class-shuffle one (multi-label data)."""
    if (model, seed) in study.shuffled:
        columns = qa.scopes.get("class-determined", qa.scopes["all"])
        return study.shuffled[model, seed].best_bit(columns)
    return study.marginal[model, seed].best_bit()


def strongest_columns(matrices: Iterable[np.ndarray], limit: int = 60) -> np.ndarray:
    """Attribute columns to show in a heatmap: at most `limit` (CUB has 312), those with the largest
    value in any of `matrices` (bits × attributes, e.g. MI above chance), in column order."""
    best = np.nanmax(np.stack([np.nan_to_num(m, nan=-np.inf).max(0) for m in matrices]), 0)
    cols = np.flatnonzero(np.isfinite(best))
    return np.sort(cols[np.argsort(-best[cols], kind="stable")[:limit]])


def run_records(study: Study, top: int = 3, folders: dict | None = None) -> dict[str, dict]:
    """Per run ("model-s<seed>"): its folder (from `folders`, (model, seed) → path), the MI, AUC and
    null-mean matrices of every analysis and the `top` attributes of each bit, for the results file
    of 05 (NaN becomes null when written)."""
    out = {}
    for (model, seed), result in study.marginal.items():
        entry = {"run": str((folders or {}).get((model, seed), "")), "mi": result.mi, "auc": result.auc, "mi_null_mean": result.null.cell_mean("mi"),
                 "top_attributes": result.top_attributes(top=top).to_dict("records")}
        if (model, seed) in study.shuffled:
            entry.update(class_level_mi=study.shuffled[model, seed].mi,
                         class_shuffle_mi_null_mean=study.shuffled[model, seed].null.cell_mean("mi"))
        if (model, seed) in study.within:
            entry.update(within_mi=study.within[model, seed].mi, within_auc=study.within[model, seed].auc,
                         within_mi_null_mean=study.within[model, seed].null.cell_mean("mi"))
        out[f"{model}-s{seed}"] = entry
    return out
