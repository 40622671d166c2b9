"""Comparing two conditions over seeds (or over the same images): one rule for "beyond the spread".

Every verdict in the workbook (notebooks 04 and 05, the README's claims, the demo's table) uses
this module, so one rule decides them all:

* **unpaired** (different training runs, e.g. A²-Net++ seeds 0–2 vs ADSH seeds 0–2): the
  difference of the means Δ = ā − b̄, its standard error s.e. = √(s_a²/n_a + s_b²/n_b) (Welch) and
  Welch–Satterthwaite degrees of freedom ν;
* **paired** (the same items measured twice, e.g. one score per query image for two models):
  Δ = mean of the per-item differences, s.e. = sd(differences)/√n, ν = n − 1.

Δ is **beyond the spread** when |Δ| > t₀.₉₇₅(ν) · s.e. — a two-sided Welch (or paired) t-test at
the 5 % level. With three seeds per side t₀.₉₇₅ is about 2.8, so a gap must be clearly larger
than the seeds' scatter. With one value on a side there is no spread and no verdict (`beyond` is
None). Values that are NaN are left out. Zero spread (identical values) makes any non-zero Δ
beyond it.

`verdict(comparison, better)` turns a comparison into one of four words used in every sentence:
"held" (the claimed direction, beyond the spread), "within the spread", "reversed" (the other
direction, beyond the spread) and "one seed: no spread".
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

__all__ = ["Comparison", "compare", "verdict", "describe", "mean_sd", "VERDICTS"]

VERDICTS = ("held", "within the spread", "reversed", "one seed: no spread")
_CONFIDENCE = 0.975  # two-sided 5 %


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Result of `compare`: Δ = mean(a) − mean(b) (or the mean paired difference) and its spread."""

    diff: float
    se: float | None            # standard error of diff; None without a spread
    df: float | None            # degrees of freedom of the t quantile
    threshold: float | None     # t₀.₉₇₅(df) · se: |diff| must exceed it
    beyond: bool | None         # |diff| > threshold; None without a spread
    n_a: int
    n_b: int
    paired: bool

    def describe(self, digits: int = 3) -> str:
        """e.g. "Δ = +0.070 (threshold 0.052, beyond the spread)"."""
        if self.beyond is None:
            return f"Δ = {self.diff:+.{digits}f} (one value on a side: no spread)"
        where = "beyond the spread" if self.beyond else "within the spread"
        return f"Δ = {self.diff:+.{digits}f} (threshold {self.threshold:.{digits}f}, {where})"


def _finite(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def _t_quantile(df: float) -> float:
    from scipy.stats import t
    return float(t.ppf(_CONFIDENCE, df))


def compare(a: Sequence[float], b: Sequence[float], paired: bool = False) -> Comparison:
    """Compare condition `a` with condition `b` (see the module docstring for the rule).

    `paired`: a[i] and b[i] were measured on the same item (pairs with a NaN are dropped);
    otherwise the values are independent samples (e.g. one per training seed)."""
    if paired:
        a_arr, b_arr = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
        if a_arr.shape != b_arr.shape:
            raise ValueError(f"paired comparison needs equally many values, got {len(a_arr)} and {len(b_arr)}")
        keep = np.isfinite(a_arr) & np.isfinite(b_arr)
        d = a_arr[keep] - b_arr[keep]
        n = len(d)
        if n == 0:
            raise ValueError("no finite pair to compare")
        diff = float(d.mean())
        if n < 2:
            return Comparison(diff, None, None, None, None, n, n, True)
        se, df = float(d.std(ddof=1) / math.sqrt(n)), float(n - 1)
        return _finish(diff, se, df, n, n, True)
    a_arr, b_arr = _finite(a), _finite(b)
    if len(a_arr) == 0 or len(b_arr) == 0:
        raise ValueError(f"nothing to compare: {len(a_arr)} and {len(b_arr)} finite values")
    diff = float(a_arr.mean() - b_arr.mean())
    na, nb = len(a_arr), len(b_arr)
    if min(na, nb) < 2:
        return Comparison(diff, None, None, None, None, na, nb, False)
    va, vb = a_arr.var(ddof=1) / na, b_arr.var(ddof=1) / nb
    se = float(math.sqrt(va + vb))
    df = float((va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))) if se > 0 else float(na + nb - 2)
    return _finish(diff, se, df, na, nb, False)


def _finish(diff: float, se: float, df: float, na: int, nb: int, paired: bool) -> Comparison:
    threshold = _t_quantile(df) * se
    return Comparison(diff, se, df, threshold, bool(abs(diff) > threshold), na, nb, paired)


def verdict(comparison: Comparison, better: str = "higher") -> str:
    """One of `VERDICTS` for the claim "a is better than b", where better is "higher" or "lower"."""
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    if comparison.beyond is None:
        return "one seed: no spread"
    if not comparison.beyond:
        return "within the spread"
    right_way = comparison.diff > 0 if better == "higher" else comparison.diff < 0
    return "held" if right_way else "reversed"


def describe(values: Sequence[float]) -> dict[str, float]:
    """{mean, sd, n} over the finite values (sd with ddof = 1; NaN for one value)."""
    v = _finite(values)
    return {"mean": float(v.mean()) if len(v) else float("nan"),
            "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"), "n": int(len(v))}


def mean_sd(values: Sequence[float], digits: int = 3, scale: float = 1.0) -> str:
    """"mean ± sd" of the finite values (×`scale`, e.g. 100 for percent); "mean" for one value."""
    d = describe(values)
    if d["n"] == 0:
        return "–"
    text = f"{scale * d['mean']:.{digits}f}"
    return text if d["n"] < 2 else f"{text} ± {scale * d['sd']:.{digits}f}"
