"""Binary hash codes: binarisation with sign(0) = +1, the check that codes are ±1, Hamming distances.

Introduced in `notebooks/03_retrieval_evaluation.ipynb` (docs/METHOD.md §5). Codes are ±1 matrices
(n × k); the Hamming distance of two ±1 codes is d = (k − qᵀb) / 2. Every metric checks its codes
with `check_codes` first, so 0/1 bits, zeros from `torch.sign` or relaxed values are refused
with a message saying what to pass.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

__all__ = ["binarize", "check_codes", "hamming_distance"]

_LOG = logging.getLogger(__name__)



def binarize(u):
    """±1 codes from real outputs, with sign(0) = +1 (see `notebooks/03_retrieval_evaluation.ipynb`).

    `torch.sign` maps exact zeros to 0, which silently breaks codes; here u >= 0 gives +1.
    A torch tensor gives a float32 tensor on the same device; anything else gives a numpy int8
    array. NaN entries raise ValueError (there is no sensible bit for them).
    """
    if isinstance(u, torch.Tensor):
        if u.is_floating_point() and bool(torch.isnan(u).any()):
            raise ValueError("binarize: input contains NaN")
        one = torch.ones((), dtype=torch.float32, device=u.device)
        return torch.where(u >= 0, one, -one)
    a = np.asarray(u)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"binarize: expected a numeric array, got dtype {a.dtype}")
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise ValueError("binarize: input contains NaN")
    return np.where(a >= 0, np.int8(1), np.int8(-1))


def _value_list(values: np.ndarray) -> str:
    """'0 and 1', '-0.5, 0.25 and 3', or 'nan, 0.1, … (812 distinct values)' for a message."""
    values = np.unique(values)  # NaN sorts last; equal NaNs collapse on numpy >= 1.21
    shown = [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in values[:4].tolist()]
    if len(values) > 4:
        return f"{', '.join(shown)}, … ({len(values)} distinct values)"
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def check_codes(codes, name: str) -> torch.Tensor:
    """±1 codes (numpy or torch, n × k, k >= 1) as a float32 CPU tensor; a ValueError naming
    `name` and saying what to pass otherwise. One vectorised pass over the matrix."""
    if isinstance(codes, torch.Tensor):
        t = codes.detach().to("cpu")
    else:
        a = np.asarray(codes)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name} has dtype {a.dtype}: pass a numeric matrix of -1/+1 codes")
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D (n × k) code matrix, got shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name} has 0 bits (shape {tuple(t.shape)}): pass codes with at least one bit")
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} has dtype {t.dtype}: pass -1/+1 codes (bits b in 0/1 become 2 * b - 1)")
    ok = (t == 1) | (t == -1)
    if not bool(ok.all()):
        found = t.to(torch.float64).numpy()
        zero = t == 0
        if bool((zero | (t == 1)).all()):
            advice = "these look like 0/1 bits: pass 2 * bits - 1"
        elif bool((zero | ok).all()):
            advice = "zeros, as torch.sign gives: pass a2hlib.codes.binarize(u), where sign(0) = +1"
        else:
            advice = "pass sign codes, e.g. a2hlib.codes.binarize(u) of the real-valued outputs u"
        raise ValueError(f"{name} has values other than -1/+1 (found {_value_list(found)}): {advice}")
    return t.to(torch.float32)


def hamming_distance(query_codes, db_codes) -> torch.Tensor:
    """Hamming distances (m × n, int64, CPU) between ±1 codes (numpy or torch): d = (k − qᵀb) / 2.
    See `notebooks/03_retrieval_evaluation.ipynb`."""
    q, b = check_codes(query_codes, "query_codes"), check_codes(db_codes, "db_codes")
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"query_codes have {q.shape[1]} bits but db_codes have {b.shape[1]}: "
                         "encode both with the same code length")
    k = q.shape[1]
    # float64 keeps the inner product exact for any practical k
    return ((k - q.to(torch.float64) @ b.to(torch.float64).T) / 2).round().to(torch.int64)
