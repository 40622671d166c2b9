"""The hashing networks: `adsh` (baseline), `a2net` and `a2netpp` (A²-Net++), one code path.

Walk-through with shapes: `notebooks/00_overview.ipynb`. docs/METHOD.md §2 is the spec.

- stem T = conv1…layer3(I)                     B×C3×h×w
- global branch g = pool(layer4_g(T))          B×C4
- attention A = stack(T), ≥ 0 (ReLU)           B×M×h×w               (a2net, a2netpp)
- parts l_m = pool(layer4_p(T ⊙ A_m))          B×M×C4, layer4_p shared by all parts
- x = [l_1 … l_M ; g], v = W x, u = tanh(v)    B×k
- tied decoder x̂ = Wᵀ u                        B×(M+1)·C4
- image path Î = G(Linear(x))                  B×3×S×S in [0, 1]     (a2netpp, training only)

`adsh` is the same stem and global branch followed by Linear(C4→k) and tanh.
`forward` returns u in every mode; `forward_all` returns a dict of everything the losses and the
analyses need (the generated image Î when `with_image`, by default in train mode).
"""
from __future__ import annotations

import contextlib
import logging
import os

import torch
from torch import nn
from torch.nn import functional as F

from a2hlib._compat import torchvision
from a2hlib.backbones import build_backbone
from a2hlib.datasets import BatchFeed, imagenet_stats, model_input, sequential_keys

log = logging.getLogger(__name__)
VARIANTS = ("adsh", "a2net", "a2netpp")


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put `model` in eval mode for the block and restore the mode of each of its modules
    afterwards (analyses must not change the mode of a model they are given)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def attention_stack(channels: int, num_parts: int, init: str = "official") -> nn.Sequential:
    """Bottleneck(C), 1×1→C/4+BN, Bottleneck(C/4), 1×1→C/16+BN, Bottleneck(C/16), 1×1→M+BN+ReLU.

    The official stack for C = 1024 (ResNet-50 layer3); stride 1, so maps keep the stem's size.
    `init="official"`: every conv `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, BatchNorm
    weight 1 and bias 0, as the official model initialises it (PyTorch's default init, "pytorch",
    gives 2.4–9.8× smaller conv weights; docs/METHOD.md §6).
    """
    Bottleneck = torchvision.models.resnet.Bottleneck
    layers: list[nn.Module] = []
    c = channels
    for i in range(3):
        layers.append(Bottleneck(c, c // 4) if c % 4 == 0 else nn.Identity())
        out = max(c // 4, 1) if i < 2 else num_parts
        layers += [nn.Conv2d(c, out, 1, bias=False), nn.BatchNorm2d(out)]
        c = out
    layers.append(nn.ReLU(inplace=True))
    stack = nn.Sequential(*layers)
    if init == "official":
        for m in stack.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    elif init != "pytorch":
        raise ValueError(f"attention init must be 'official' or 'pytorch', got {init!r}")
    return stack


def _upsampling_plan(image_size: int, max_doublings: int = 5) -> tuple[int, int]:
    """(start size, number of ×2 steps) with start · 2**steps == image_size and start ≥ 4."""
    steps = 0
    while steps < max_doublings and image_size % (2 ** (steps + 1)) == 0 and image_size // 2 ** (steps + 1) >= 4:
        steps += 1
    return image_size // 2 ** steps, steps


class ImageGenerator(nn.Module):
    """DCGAN-style decoder from a feature vector to a B×3×S×S image in [0, 1].

    For S = 224 and width 256 this is the official generator: ConvT(k7) 1→7, then five
    ConvT(k4, s2, p1) up to 224 (256→128→64→32→16→3), BN+ReLU between, BN + Sigmoid last.
    Other sizes keep the pattern: start at S/2**n (≥ 4) and double n ≤ 5 times.
    """

    def __init__(self, in_features: int = 512, image_size: int = 224, width: int = 256):
        super().__init__()
        start, steps = _upsampling_plan(image_size)
        if start * 2 ** steps != image_size:
            raise ValueError(f"image_size {image_size} cannot be generated; use a multiple of 4")
        widths = [max(width // 2 ** i, 8) for i in range(steps)] + [3]
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_features, widths[0], start, 1, 0, bias=False)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]
        if steps == 0:  # start == image_size: one conv to RGB
            layers += [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True), nn.Conv2d(widths[0], 3, 1, bias=False)]
        layers += [nn.BatchNorm2d(3), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class HashingNet(nn.Module):
    """`adsh`, `a2net` or `a2netpp` (see module docstring). Build with `build_model`."""

    def __init__(self, variant: str, code_length: int, *, backbone: str = "small", num_parts: int = 4,
                 image_size: int = 64, weights: str | os.PathLike | None = None,
                 generator_features: int = 512, generator_width: int = 256, attention_init: str = "official",
                 freeze_stem: bool = False):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown model {variant!r}; choose one of {VARIANTS}")
        if code_length < 1:
            raise ValueError(f"code_length must be positive, got {code_length}")
        self.variant, self.code_length, self.image_size = variant, code_length, image_size
        bb = build_backbone(backbone, weights)
        self.backbone_name = bb.name
        self.stem = bb.stem
        self.freeze_stem = freeze_stem
        if freeze_stem:  # fixed features: no gradients, and BatchNorm statistics kept (see `train`)
            self.stem.requires_grad_(False)
            self.stem.eval()
        self.global_layer4 = bb.make_layer4()
        c4 = bb.feature_channels
        if variant == "adsh":
            self.num_parts = 0
            self.hash_layer = nn.Linear(c4, code_length)
            return
        if num_parts < 1:
            raise ValueError(f"num_parts (M) must be ≥ 1 for {variant}, got {num_parts}")
        self.num_parts = num_parts
        self.attention = attention_stack(bb.stem_channels, num_parts, attention_init)
        self.part_layer4 = bb.make_layer4()
        self.feature_dim = (num_parts + 1) * c4
        self.W = nn.Parameter(torch.empty(code_length, self.feature_dim))
        nn.init.kaiming_uniform_(self.W, a=5 ** 0.5)  # nn.Linear's default, as the official code
        if variant == "a2netpp":
            self.image_encoder = nn.Linear(self.feature_dim, generator_features)
            self.generator = ImageGenerator(generator_features, image_size, generator_width)

    def train(self, mode: bool = True) -> "HashingNet":
        """As `nn.Module.train`, except that a frozen stem (`freeze_stem`) always stays in eval mode."""
        super().train(mode)
        if self.freeze_stem:
            self.stem.eval()
        return self

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward_all(self, images: torch.Tensor, with_image: bool | None = None) -> dict[str, torch.Tensor]:
        """Every intermediate: stem, attention, parts, features, v, u, reconstruction, and for
        `a2netpp` the generated image when `with_image` (default: in train mode only, since only
        the training loss needs it)."""
        stem = self.stem(images)
        out: dict[str, torch.Tensor] = {"stem": stem}
        global_feat = self._pool(self.global_layer4(stem))
        if self.variant == "adsh":
            out["features"] = global_feat
            out["v"] = self.hash_layer(global_feat)
            out["u"] = torch.tanh(out["v"])
            return out
        b, c, h, w = stem.shape
        attention = self.attention(stem)                                  # B×M×h×w
        masked = (attention.unsqueeze(2) * stem.unsqueeze(1)).reshape(b * self.num_parts, c, h, w)
        parts = self._pool(self.part_layer4(masked)).reshape(b, self.num_parts, -1)
        features = torch.cat([parts.reshape(b, -1), global_feat], dim=1)  # x = [l_1 … l_M ; g]
        v = F.linear(features, self.W)
        u = torch.tanh(v)
        out.update(attention=attention, parts=parts, features=features, v=v, u=u,
                   reconstruction=F.linear(u, self.W.t()))
        if self.variant == "a2netpp" and (self.training if with_image is None else with_image):
            out["image"] = self.generator(self.image_encoder(features))
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """u = tanh(v), B×k, in every mode."""
        return self.forward_all(images, with_image=False)["u"]


def build_model(variant: str, code_length: int, **options) -> HashingNet:
    """Build a hashing network by name (`adsh`, `a2net`, `a2netpp`); `options` are the keyword
    arguments of `HashingNet` (backbone, num_parts, image_size, weights, generator_features,
    generator_width, attention_init, freeze_stem)."""
    return HashingNet(variant, code_length, **options)


@torch.no_grad()
def encode(model: nn.Module, dataset, batch_size: int = 128, device: str | torch.device = "cpu",
           amp: bool | None = None, num_workers: int | None = None) -> torch.Tensor:
    """Relaxed codes u (n×k, float32, on CPU) of every item of `dataset`, in dataset order
    (`notebooks/03_retrieval_evaluation.ipynb`).

    Batches come from `a2hlib.datasets.BatchFeed`: datasets with uint8 items are normalised on
    `device` (the same numbers as their float items). `amp`: bf16 autocast (default: on CUDA);
    `num_workers`: DataLoader processes (default: 4 on CUDA, 0 on CPU). On CUDA the batches travel
    through pinned memory without blocking and the input is channels_last.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    amp = cuda if amp is None else amp
    workers = (min(4, os.cpu_count() or 1) if cuda else 0) if num_workers is None else num_workers
    feed = BatchFeed(dataset)
    if feed.uint8 and hasattr(dataset, "ensure_cache"):
        dataset.ensure_cache(workers)
    loader = torch.utils.data.DataLoader(feed, batch_size=None, sampler=sequential_keys(len(dataset), batch_size),
                                         num_workers=workers, pin_memory=cuda, generator=torch.Generator())
    stats = imagenet_stats(device)
    was_training = model.training
    model.eval()
    chunks = []
    for images, _ in loader:
        images = model_input(images.to(device, non_blocking=True), stats, channels_last=cuda)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            chunks.append(model(images).float())
    model.train(was_training)
    return torch.cat(chunks).cpu() if chunks else torch.zeros(0, getattr(model, "code_length", 0))
