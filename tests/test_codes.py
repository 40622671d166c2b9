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


@pytest.mark.parametrize("k", [1, 7, 8, 12, 48, 65])
def test_pack_bits_shape_and_bits(k):
    rng = np.random.default_rng(k)
    c = random_codes(rng, 9, k)
    p = codes.pack_bits(c)
    assert p.dtype == np.uint8 and p.shape == (9, (k + 7) // 8)
    for i in range(9):
        for j in range(k):
            bit = (p[i, j // 8] >> (7 - j % 8)) & 1
            assert bit == (c[i, j] > 0)
    assert np.array_equal(codes.pack_bits(torch.from_numpy(c).float()), p)


@pytest.mark.parametrize("k", [1, 8, 12, 48, 65])
def test_hamming_distance_matches_loop_and_packed(k):
    rng = np.random.default_rng(100 + k)
    q, b = random_codes(rng, 7, k), random_codes(rng, 11, k)
    ref = loop_hamming(q, b)
    d = codes.hamming_distance(q, b)
    assert d.dtype == np.int64 and np.array_equal(d, ref)
    dt = codes.hamming_distance(torch.from_numpy(q).float(), torch.from_numpy(b).float())
    assert dt.dtype == torch.int64 and np.array_equal(dt.numpy(), ref)
    dp = codes.hamming_distance_packed(codes.pack_bits(q), codes.pack_bits(b))
    assert np.array_equal(dp, ref)


def test_packed_lookup_table_fallback(monkeypatch):
    rng = np.random.default_rng(5)
    q, b = random_codes(rng, 6, 48), random_codes(rng, 20, 48)
    with_count = codes.hamming_distance_packed(codes.pack_bits(q), codes.pack_bits(b))
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    without = codes.hamming_distance_packed(codes.pack_bits(q), codes.pack_bits(b))
    assert np.array_equal(with_count, without)
    assert np.array_equal(without, loop_hamming(q, b))


def test_packed_chunking(monkeypatch):
    monkeypatch.setattr(codes, "_PACKED_CHUNK_BYTES", 64)
    rng = np.random.default_rng(6)
    q, b = random_codes(rng, 13, 20), random_codes(rng, 17, 20)
    assert np.array_equal(codes.hamming_distance_packed(codes.pack_bits(q), codes.pack_bits(b)),
                          loop_hamming(q, b))


def test_invalid_codes_raise():
    with pytest.raises(ValueError):
        codes.pack_bits(np.array([[0, 1, -1]]))
    with pytest.raises(ValueError):
        codes.hamming_distance(np.array([[1, 1]]), np.array([[1, 1, 1]]))
    with pytest.raises(ValueError):
        codes.hamming_distance(torch.tensor([[0.5, 1.0]]), torch.tensor([[1.0, 1.0]]))
    with pytest.raises(ValueError):
        codes.hamming_distance_packed(np.zeros((2, 1), np.uint8), np.zeros((2, 2), np.uint8))
