import pytest
import torch

from a2hlib._compat import torchvision
from a2hlib.models import ImageGenerator, build_model, encode

SIZE = 32


@pytest.mark.parametrize("variant", ["adsh", "a2net", "a2netpp"])
def test_one_training_step_and_eval_output(variant):
    torch.manual_seed(0)
    model = build_model(variant, code_length=12, backbone="small", num_parts=3, image_size=SIZE, generator_width=16)
    images = torch.randn(4, 3, SIZE, SIZE)
    out = model.train().forward_all(images)
    assert out["u"].shape == (4, 12) and out["u"].abs().max() < 1
    assert torch.equal(out["u"], torch.tanh(out["v"]))
    if variant == "adsh":
        assert "attention" not in out and "image" not in out
    else:
        assert out["attention"].shape == (4, 3, SIZE // 8, SIZE // 8) and out["attention"].min() >= 0
        assert out["features"].shape == (4, 4 * 128)
        assert torch.allclose(out["reconstruction"], out["u"] @ model.W)  # tied decoder x̂ = Wᵀu
    if variant == "a2netpp":
        assert out["image"].shape == (4, 3, SIZE, SIZE)
        assert 0 <= out["image"].min() and out["image"].max() <= 1
    loss = out["u"].sum() + sum(out[k].mean() for k in ("reconstruction", "image") if k in out)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for mode in (True, False):  # forward returns u in every mode
        u = model.train(mode)(images)
        assert isinstance(u, torch.Tensor) and u.shape == (4, 12)
    if variant == "a2netpp":  # the image path on request, in eval mode too, without changing the mode
        assert "image" not in model.forward_all(images)
        assert model.forward_all(images, with_image=True)["image"].shape == (4, 3, SIZE, SIZE)
        assert not model.training


def test_a2net_part_features_use_shared_layer4_on_masked_stem():
    torch.manual_seed(0)
    model = build_model("a2net", 8, num_parts=2, image_size=SIZE).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    out = model.forward_all(x)
    stem, att = out["stem"], out["attention"]
    ref = torch.stack([model.part_layer4(stem * att[:, m:m + 1]).mean((2, 3)) for m in range(2)], 1)
    assert torch.allclose(out["parts"], ref, atol=1e-5)
    glob = model.global_layer4(stem).mean((2, 3))
    assert torch.allclose(out["features"], torch.cat([ref.flatten(1), glob], 1), atol=1e-5)


@pytest.mark.parametrize("size", [32, 64, 96, 224])
def test_generator_scales_with_input(size):
    gen = ImageGenerator(in_features=8, image_size=size, width=32).eval()
    assert gen(torch.randn(2, 8)).shape == (2, 3, size, size)


def test_generator_at_224_is_the_official_stack():
    convs = [m for m in ImageGenerator(512, 224, 256).modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (512, 256, 7, 1), (256, 128, 4, 2), (128, 64, 4, 2), (64, 32, 4, 2), (32, 16, 4, 2), (16, 3, 4, 2)]


def test_attention_stack_matches_official_channels():
    model = build_model("a2net", 12, backbone="resnet50", num_parts=12, image_size=224)
    convs = [m for m in model.attention if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1024, 256), (256, 64), (64, 12)]
    assert model.feature_dim == 13 * 2048


def test_resnet_weights_from_local_file(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("a2net", 12, backbone="resnet18", num_parts=2, weights=str(path))
    assert torch.equal(model.stem[0].weight, reference.conv1.weight)
    assert torch.equal(model.global_layer4[0].conv1.weight, reference.layer4[0].conv1.weight)
    assert torch.equal(model.part_layer4[0].conv1.weight, reference.layer4[0].conv1.weight)
    assert model.part_layer4[0].conv1.weight is not model.global_layer4[0].conv1.weight


def test_bad_weights_and_names_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_model("a2net", 12, backbone="resnet18", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("a3net", 12)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_model("adsh", 12, backbone="small", weights="imagenet")


def test_encode_returns_codes_in_dataset_order(blob_dataset):
    model = build_model("adsh", 8, image_size=32).eval()
    u = encode(model, blob_dataset, batch_size=5)
    direct = model(torch.stack([blob_dataset[i][0] for i in range(len(blob_dataset))]))
    assert torch.allclose(u, direct, atol=1e-5)


def test_bf16_forward_matches_fp32(device):
    """The mixed-precision forward of training (bf16 autocast) stays close to fp32; on the device
    of A2H_TEST_DEVICE (CPU autocast by default, CUDA with A2H_TEST_DEVICE=cuda)."""
    torch.manual_seed(0)
    model = build_model("a2netpp", 12, image_size=SIZE).to(device).eval()
    x = torch.randn(4, 3, SIZE, SIZE, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        low = model(x)
    assert low.dtype == torch.bfloat16 or device.type == "cpu"
    assert torch.allclose(low.float(), model(x), atol=0.05)


def test_eval_mode_restores_every_module():
    from a2hlib.models import eval_mode
    model = build_model("a2net", 8, num_parts=2, image_size=SIZE).train()
    model.attention.eval()  # a mixed state must come back as it was
    wrapper = torch.nn.Sequential(model)
    with eval_mode(wrapper):
        assert not any(m.training for m in wrapper.modules())
    assert wrapper.training and model.training and not model.attention.training
    assert all(m.training for m in model.stem.modules())
