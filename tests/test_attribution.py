"""a2hlib.attribution: target wrappers against autograd / hand computation / finite differences,
Captum methods against their definitions (IG completeness, manual Grad-CAM, occlusion of a linear
scorer), and the plotting helpers."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from torch import nn

from a2hlib import attribution as A
from a2hlib.models import build_model

SIZE, K = 16, 6


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {v: build_model(v, K, num_parts=2, image_size=SIZE, generator_width=16).eval()
            for v in ("adsh", "a2net", "a2netpp")}


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("variant", ["adsh", "a2net", "a2netpp"])
def test_bit_target_is_sign_corrected_relaxed_bit(models, images, variant):
    model = models[variant]
    u = model(images).detach()
    for bit in (0, K - 1):
        target = A.BitTarget.for_images(model, bit, images)
        out = target(images).detach()
        assert out.shape == (3,)
        assert torch.allclose(out, torch.where(u[:, bit] >= 0, 1.0, -1.0) * u[:, bit])
        assert torch.allclose(out, u[:, bit].abs())  # evidence for the emitted bit is positive
        assert torch.allclose(A.BitTarget(model, bit, -1.0)(images).detach(), -u[:, bit])


@pytest.mark.parametrize("variant", ["adsh", "a2netpp"])
def test_similarity_target_matches_hand_computation(models, images, variant):
    model = models[variant]
    t = torch.sign(torch.randn(3, K, generator=torch.Generator().manual_seed(2)))
    u = model(images).detach()
    dot = A.CodeSimilarityTarget(model, t)(images).detach()
    assert torch.allclose(dot, torch.tensor([float(u[i] @ t[i]) / K for i in range(3)]), atol=1e-6)
    cos = A.CodeSimilarityTarget(model, t, cosine=True)(images).detach()
    ref = torch.tensor([float(u[i] @ t[i] / (u[i].norm() * t[i].norm())) for i in range(3)])
    assert torch.allclose(cos, ref, atol=1e-6)
    one = A.CodeSimilarityTarget(model, t[0])(images).detach()  # one target for every image
    assert torch.allclose(one, u @ t[0] / K, atol=1e-6)


def test_rows_select_each_example_in_expanded_batches(models, images):
    """Captum repeats inputs step-major (IG steps, occlusion batches) and the row index with them."""
    target = A.BitTarget.for_images(models["a2net"], 1, images)
    rows = torch.arange(3).repeat(4)
    out = target(images.repeat(4, 1, 1, 1), rows).detach()
    assert torch.allclose(out, target(images).detach().repeat(4), atol=1e-6)
    with pytest.raises(ValueError):
        target(images[:2])


@pytest.mark.parametrize("kind", ["bit", "similarity"])
def test_wrapper_gradient_matches_finite_differences(models, images, kind):
    import copy
    model = copy.deepcopy(models["a2net"]).double().eval()
    x = images[:2].double().requires_grad_(True)
    if kind == "bit":
        target = A.BitTarget.for_images(model, 2, x.detach())
        target.sign = target.sign.double()
    else:
        target = A.CodeSimilarityTarget(model, torch.tensor([[1.0, -1, 1, 1, -1, -1], [-1.0, -1, 1, -1, 1, 1]]))
        target.target_codes = target.target_codes.double()
    grad, = torch.autograd.grad(target(x).sum(), x)
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    eps = 1e-5
    with torch.no_grad():
        fd = (target(x + eps * d) - target(x - eps * d)) / (2 * eps)
    assert torch.allclose((grad * d).flatten(1).sum(1), fd, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("variant", ["adsh", "a2netpp"])
def test_integrated_gradients_completeness(models, images, variant):
    target = A.BitTarget.for_images(models[variant], 0, images)
    attr = A.attribute("ig", target, images, reduce=None, n_steps=32)
    assert attr.shape == images.shape
    with torch.no_grad():
        gap = target(images) - target(torch.zeros_like(images))
    assert torch.allclose(attr.flatten(1).sum(1), gap, rtol=0.05, atol=2e-3)
    maps = A.attribute("ig", target, images, n_steps=8, batch_size=2)  # chunks give the same shape
    assert maps.shape == (3, SIZE, SIZE) and (maps >= 0).all()


def test_gradcam_matches_manual_computation(models, images):
    model = models["a2net"]
    target = A.CodeSimilarityTarget(model, torch.ones(K))
    maps = A.attribute("gradcam", target, images)
    acts = {}
    handle = model.stem.register_forward_hook(lambda m, i, o: acts.setdefault("T", o))
    score = target(images)
    handle.remove()
    grads, = torch.autograd.grad(score.sum(), acts["T"])
    cam = torch.relu((grads.mean((2, 3), keepdim=True) * acts["T"]).sum(1, keepdim=True))
    ref = nn.functional.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    assert maps.shape == (3, SIZE, SIZE)
    assert torch.allclose(maps, ref.detach(), atol=1e-5)


class Linear(nn.Module):
    """f(x) = Σ w·x per image: every method's answer is known."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x, rows=None):
        return (x * self.w).flatten(1).sum(1)


def test_occlusion_of_a_linear_scorer():
    g = torch.Generator().manual_seed(4)
    w, x = torch.randn(3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    # a 1-pixel window (all channels) removes Σ_c w_c x_c at that pixel
    maps = A.attribute("occlusion", Linear(w), x, reduce="sum", window=1, stride=1)
    assert torch.allclose(maps, 3 * (w * x).sum(1), atol=1e-5)
    # IG of a linear function is exact: (x - 0) * w
    ig = A.attribute("ig", Linear(w), x, reduce=None, n_steps=4)
    assert torch.allclose(ig, x * w, atol=1e-5)


def test_occlusion_batching_does_not_change_the_maps(models, images):
    target = A.BitTarget.for_images(models["a2net"], 3, images)
    a = A.attribute("occlusion", target, images, window=8, stride=8, perturbations_per_eval=1)
    b = A.attribute("occlusion", target, images, window=8, stride=8, perturbations_per_eval=5)
    assert a.shape == (3, SIZE, SIZE) and torch.allclose(a, b, atol=1e-5)


def test_class_mean_codes_and_errors(models, images):
    B = torch.tensor([[1.0, 1], [1, -1], [-1, -1]])
    assert torch.equal(A.class_mean_codes(B, [0, 0, 1]), torch.tensor([[1.0, 0], [-1, -1]]))
    with pytest.raises(ValueError):
        A.attribute("saliency", A.BitTarget(models["adsh"], 0), images)
    with pytest.raises(ValueError):
        A.attribute("ig", A.BitTarget(models["adsh"], 0), images, reduce="max", n_steps=2)
    with pytest.raises(TypeError, match="n_step"):
        A.attribute("ig", A.BitTarget(models["adsh"], 0), images, n_step=2)  # a typo is not ignored
