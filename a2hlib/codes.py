"""Binary hash codes: binarisation with sign(0) = +1, bit packing and Hamming distances.

Introduced in `notebooks/03_retrieval_evaluation.ipynb` (docs/METHOD.md §5). Codes are ±1 matrices
(n × k); the Hamming distance of two ±1 codes is d = (k − qᵀb) / 2, and on packed bits it is
popcount(q xor b). Both give the same integers.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

__all__ = ["binarize", "pack_bits", "hamming_distance", "hamming_distance_packed"]

_LOG = logging.getLogger(__name__)

# popcount of every byte value, for numpy versions without np.bitwise_count
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
# bytes of the (m × n × words) xor intermediate in hamming_distance_packed, per query chunk
_PACKED_CHUNK_BYTES = 64 * 2**20


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


def _pm1_numpy(codes, name: str) -> np.ndarray:
    """A (n × k) numpy view of ±1 codes (torch or numpy), checked."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    a = np.asarray(codes)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (n × k) code matrix, got shape {a.shape}")
    if a.dtype == bool or not np.all((a == 1) | (a == -1)):
        raise ValueError(f"{name}: codes must contain only -1 and +1 (use a2hlib.codes.binarize)")
    return a


def pack_bits(codes) -> np.ndarray:
    """Pack ±1 codes (n × k, torch or numpy) into uint8 bytes (n × ceil(k/8)).

    +1 becomes bit 1, −1 bit 0; bit j goes to byte j // 8, most significant bit first
    (np.packbits' order); padding bits are 0. See `notebooks/03_retrieval_evaluation.ipynb`.
    """
    a = _pm1_numpy(codes, "pack_bits")
    return np.packbits(a > 0, axis=1)


def hamming_distance(query_codes, db_codes):
    """Hamming distances (m × n) between ±1 codes, d = (k − qᵀb) / 2.

    Torch query codes give a torch int64 tensor (on the query's device); otherwise a numpy int64
    array. See `notebooks/03_retrieval_evaluation.ipynb`.
    """
    if isinstance(query_codes, torch.Tensor):
        q = query_codes
        b = torch.as_tensor(db_codes, device=q.device) if not isinstance(db_codes, torch.Tensor) \
            else db_codes.to(q.device)
        _check_pm1_torch(q, "query_codes")
        _check_pm1_torch(b, "db_codes")
        if q.shape[1] != b.shape[1]:
            raise ValueError(f"code lengths differ: {q.shape[1]} vs {b.shape[1]}")
        k = q.shape[1]
        # float64 keeps the inner product exact for any practical k
        ip = q.to(torch.float64) @ b.to(torch.float64).T
        return ((k - ip) / 2).round().to(torch.int64)
    q = _pm1_numpy(query_codes, "query_codes")
    b = _pm1_numpy(db_codes, "db_codes")
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"code lengths differ: {q.shape[1]} vs {b.shape[1]}")
    k = q.shape[1]
    ip = q.astype(np.int64) @ b.astype(np.int64).T
    return (k - ip) // 2


def _check_pm1_torch(t: torch.Tensor, name: str) -> None:
    if t.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D (n × k) code matrix, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or not bool(((t == 1) | (t == -1)).all()):
        raise ValueError(f"{name}: codes must contain only -1 and +1 (use a2hlib.codes.binarize)")


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _POPCOUNT8[x]


def hamming_distance_packed(query_packed: np.ndarray, db_packed: np.ndarray) -> np.ndarray:
    """Hamming distances (m × n, int64) between packed codes from `pack_bits`: popcount(q xor b).

    Equal, entry for entry, to `hamming_distance` on the unpacked ±1 codes. Uses
    np.bitwise_count where numpy has it, else a 256-entry byte table. See
    `notebooks/03_retrieval_evaluation.ipynb`.
    """
    qp = np.asarray(query_packed)
    dp = np.asarray(db_packed)
    if qp.dtype != np.uint8 or dp.dtype != np.uint8 or qp.ndim != 2 or dp.ndim != 2:
        raise ValueError("hamming_distance_packed: expected 2-D uint8 arrays from pack_bits")
    if qp.shape[1] != dp.shape[1]:
        raise ValueError(f"packed widths differ: {qp.shape[1]} vs {dp.shape[1]} bytes")
    m, n, w = qp.shape[0], dp.shape[0], qp.shape[1]
    out = np.empty((m, n), dtype=np.int64)
    if w == 0:
        out.fill(0)
        return out
    step = max(1, _PACKED_CHUNK_BYTES // max(1, n * w))
    for a in range(0, m, step):
        x = np.bitwise_xor(qp[a:a + step, None, :], dp[None, :, :])
        np.sum(_popcount(x), axis=2, dtype=np.int64, out=out[a:a + step])
    return out
