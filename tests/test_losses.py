import itertools

import pytest
import torch

from a2hlib.losses import (LossWeights, decorrelation_loss, hash_loss, hashing_losses, quantization_loss,
                           schedule, similarity_matrix)


def loop_similarity(a, b, soft):
    S = torch.tensor([[1.0 if (set(x) & set(y)) else -1.0 for y in b] for x in a])
    if soft:
        P, N = (S > 0).sum().item(), (S < 0).sum().item()
        S = torch.where(S > 0, torch.ones_like(S), torch.full_like(S, -P / N))
    return S


def test_similarity_class_ids_and_soft_rescaling():
    a, b = torch.tensor([0, 1, 2, 1]), torch.tensor([1, 1, 0, 3, 2, 2, 0])
    for soft in (False, True):
        ref = loop_similarity([[x] for x in a.tolist()], [[y] for y in b.tolist()], soft)
        assert torch.allclose(similarity_matrix(a, b, soft), ref)


def test_similarity_multi_hot():
    g = torch.Generator().manual_seed(1)
    a, b = (torch.rand(5, 4, generator=g) > 0.6).float(), (torch.rand(9, 4, generator=g) > 0.6).float()
    sets = lambda m: [torch.nonzero(r).flatten().tolist() for r in m]
    assert torch.allclose(similarity_matrix(a, b, True), loop_similarity(sets(a), sets(b), True))


def test_hash_quant_decorrelation_against_loops():
    g = torch.Generator().manual_seed(0)
    b, n, k = 3, 7, 5
    u = torch.rand(b, k, generator=g) * 2 - 1
    B = torch.randint(0, 2, (n, k), generator=g).float() * 2 - 1
    S = torch.rand(b, n, generator=g) * 2 - 1
    omega = torch.tensor([4, 0, 6])
    ref_hash = sum((k * S[i, j] - sum(u[i, t] * B[j, t] for t in range(k))) ** 2
                   for i, j in itertools.product(range(b), range(n))) / (b * n) * 12 / k
    ref_quant = sum(((u[i] - B[omega[i]]) ** 2).sum() for i in range(b)) / (b * n) * 200 * 12 / k
    gram = [[sum(u[i, p] * u[i, q] for i in range(b)) for q in range(k)] for p in range(k)]
    ref_dec = sum((gram[p][q] - (b if p == q else 0)) ** 2 for p in range(k) for q in range(k)) / (k * k) / b / k
    assert hash_loss(u, B, S).item() == pytest.approx(float(ref_hash), rel=1e-5)
    assert quantization_loss(u, B[omega], n, 200).item() == pytest.approx(float(ref_quant), rel=1e-5)
    assert decorrelation_loss(u).item() == pytest.approx(float(ref_dec), rel=1e-5)


def test_schedule():
    assert schedule("adsh", 2) == LossWeights()
    assert schedule("a2net", 1) == LossWeights(rec=0, dec=0, image=0)
    assert schedule("a2net", 2) == LossWeights(rec=1, dec=1, image=0)
    assert schedule("a2netpp", 1).image == 0.01 and schedule("a2netpp", 2).image == 0.1
    with pytest.raises(ValueError):
        schedule("a2net", 3)


def test_total_is_weighted_sum_and_zero_weight_terms_have_no_gradient():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(4, 10, generator=g, requires_grad=True)
    W = torch.randn(6, 10, generator=g, requires_grad=True)
    u = torch.tanh(feats @ W.t())
    outputs = {"u": u, "features": feats, "reconstruction": u @ W,
               "image": torch.sigmoid(torch.randn(4, 3, 8, 8, generator=g, requires_grad=True))}
    B = torch.randint(0, 2, (9, 6), generator=g).float() * 2 - 1
    S = similarity_matrix(torch.tensor([0, 1, 1, 2]), torch.arange(9) % 3)
    target = torch.rand(4, 3, 8, 8, generator=g)
    idx = torch.tensor([0, 1, 4, 2])
    for variant, phase in itertools.product(["a2netpp"], [1, 2]):
        w = schedule(variant, phase)
        terms = hashing_losses(outputs, B, S, idx, w, 200.0, target)
        expected = sum(getattr(w, t) * terms[t] for t in ("hash", "quant", "rec", "dec", "image"))
        assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
        assert terms["rec"].requires_grad == (w.rec > 0)
        assert terms["dec"].requires_grad == (w.dec > 0)


def test_image_term_requires_target():
    out = {"u": torch.zeros(2, 4), "image": torch.zeros(2, 3, 4, 4)}
    with pytest.raises(ValueError, match="target_images"):
        hashing_losses(out, torch.ones(3, 4), torch.ones(2, 3), torch.tensor([0, 1]), LossWeights(image=0.1))
