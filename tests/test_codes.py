"""a2hlib.codes against plain loops: binarisation, packing, Hamming distances (exact)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from a2hlib import codes


def random_codes(rng, n, k):
    return np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.int8)


def loop_hamming(q, b):
    out = np.zeros((len(q), len(b)), dtype=np.int64)
    for i in range(len(q)):
        for j in range(len(b)):
            out[i, j] = sum(1 for t in range(q.shape[1]) if q[i, t] != b[j, t])
    return out


def test_binarize_sign_of_zero_is_plus_one_torch():
    u = torch.tensor([[-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0]])
    b = codes.binarize(u)
    assert b.dtype == torch.float32 and b.shape == u.shape
    assert b.tolist() == [[-1.0, 1.0, 1.0, 1.0, -1.0, 1.0]]
    assert torch.sign(u)[0, 1] == 0  # the trap binarize avoids


def test_binarize_numpy_gives_int8_and_ints_work():
    b = codes.binarize(np.array([[0.0, -0.5, 2.0]]))
    assert b.dtype == np.int8 and b.tolist() == [[1, -1, 1]]
    assert codes.binarize(np.array([0, -3, 4])).tolist() == [1, -1, 1]
    assert codes.binarize(torch.tensor([0, -1, 2])).dtype == torch.float32


def test_binarize_rejects_nan():
    with pytest.raises(ValueError):
        codes.binarize(np.array([0.0, np.nan]))
    with pytest.raises(ValueError):
        codes.binarize(torch.tensor([np.nan]))


@pytest.mark.parametrize("k", [1, 8, 12, 48, 65])
def test_hamming_distance_matches_loop(k):
    rng = np.random.default_rng(100 + k)
    q, b = random_codes(rng, 7, k), random_codes(rng, 11, k)
    d = codes.hamming_distance(q, b)
    assert d.dtype == torch.int64 and np.array_equal(d.numpy(), loop_hamming(q, b))
    dt = codes.hamming_distance(torch.from_numpy(q).float(), torch.from_numpy(b).float())
    assert torch.equal(dt, d)


@pytest.mark.parametrize("bad, message", [
    (np.array([[0, 1, 1]]), "0/1 bits: pass 2 \\* bits - 1"),
    (np.array([[0.0, 1.0, -1.0]]), "zeros, as torch.sign gives"),
    (np.array([[0.5, 1.0, -1.0]]), "values other than -1/\\+1 \\(found -1, 0.5 and 1\\)"),
    (np.zeros((3, 0)), "0 bits"),
    (np.array([[True, False, True]]), "dtype torch.bool"),
    (np.array([1, -1, 1]), "2-D"),
])
def test_invalid_codes_are_named_with_advice(bad, message):
    with pytest.raises(ValueError, match="query_codes.*" + message):
        codes.hamming_distance(bad, np.ones((2, 3)))
    with pytest.raises(ValueError, match="bits but db_codes have"):
        codes.hamming_distance(np.ones((1, 2)), np.ones((1, 3)))
