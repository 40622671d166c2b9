"""Backbones split the way A²-Net needs them: a stem (conv1 … layer3) and a layer4 factory.

A²-Net runs layer4 several times on the same stem features (one copy for the global branch, one
copy shared by all attention parts), so a backbone here is a stem plus a function that builds
fresh layer4 copies. See `notebooks/00_overview.ipynb` for the shapes.

| name | stem channels | layer4 channels | meant for |
|---|---|---|---|
| `resnet50` | 1024 | 2048 | the paper (224 px, ImageNet weights) |
| `resnet18` | 256 | 512 | cheaper GPU runs |
| `small` | 64 | 128 | CPU runs on 32–128 px images (same topology, BasicBlocks, no weights) |
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from a2hlib._compat import torchvision

log = logging.getLogger(__name__)
resnet = torchvision.models.resnet

BACKBONES = ("resnet50", "resnet18", "small")


@dataclass
class Backbone:
    """A stem and a factory for layer4 copies (each call returns new, independently trained weights)."""

    name: str
    stem: nn.Module
    make_layer4: Callable[[], nn.Module]
    stem_channels: int
    feature_channels: int


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
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist; pass 'imagenet', None, "
                                "or the path of a torchvision ResNet state_dict (.pth)")
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
    return Backbone(name, stem, lambda: copy.deepcopy(layer4), stem_channels, feature_channels)


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
    """Build `name` in BACKBONES. `weights`: None, 'imagenet' (torchvision, needs network) or a .pth path."""
    if name == "small":
        if weights is not None:
            raise ValueError("the 'small' backbone has no pretrained weights; use weights=None")
        return _small()
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    return _split_resnet(name, _torchvision_resnet(name, weights))
