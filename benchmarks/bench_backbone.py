"""What a pretrained CPU run costs: training and inference speed of the efficientnet_lite0 backbone.

    python benchmarks/bench_backbone.py                          # 3 models × 96/112/128 px × 3 settings
    python benchmarks/bench_backbone.py --models a2netpp --sizes 112 --repeats 3

Training settings (batch --batch, M = --parts, ImageNet weights, Adam as the `cpu` preset):
  full    everything trainable;
  frozen  `freeze_stem=True` (the stem still runs forward every step, without gradients);
  cached  a frozen stem whose output was computed once: only the part after the stem is timed
          (attention, the layer4 copies, heads, losses), on random stem-shaped inputs B×112×⌈S/16⌉².
A training step is what `a2hlib.training.train` does per batch minus data loading: `forward_all`,
`hashing_losses` with the phase-2 weights (every term on), backward, Adam step. Inference (eval
mode, no_grad): `stem` alone (what caching costs once per image) and `after_stem` (the rest; the
two together are the whole model, `encode`). `transform` is the training transform
(RandomResizedCrop to S, flip, normalise) of 64 px images, as the built-in dataset stores them.
`reference` is the whole EfficientNet-Lite0 ImageNet classifier at 112 px (inference), a yardstick
to compare machines and load levels.

Per measurement, over --repeats timed batches after --warmup untimed ones, with
torch.set_num_threads(--threads): `images_per_s` from the median batch, `best_images_per_s` from
the fastest, `cpu_ms_per_image` the median process CPU time (all threads) per image, and
`forward_gflop_per_image` counted by torch.utils.flop_counter (convolutions and matrix products of
the forward pass; its count of depthwise-convolution backward ignores the groups, so backward is
not counted). The machine may be shared: `loadavg` (/proc/loadavg, before and after) says how busy
it was; compare settings measured in the same run, not across runs. With --threads 1 the CPU time
hardly depends on the load; with more threads, waiting threads spin and inflate it on a busy machine.

`estimate_s` is the wall time of one run with the `cpu` schedule (12 outer iterations × 3 epochs ×
320 images = 11,520 training images) on the built-in dataset (1,000 database + 300 query images
encoded once for the evaluation): full/frozen = 11,520·(1/train + 1/transform) + 1,300/encode;
cached = 1,300/stem + 11,520/train_cached + 1,300/after_stem (no per-step augmentation: the
cached features are of fixed views). `best_estimate_s` uses the fastest batches, `cpu_estimate_s`
the CPU time divided by --threads (the wall time if the threads had the cores to themselves).
`--loop-check` runs the real `train` loop (one outer iteration, one epoch of 3 batches, frozen
stem, a2netpp, the first size) on random 64 px images and reports its images/s. The last line
printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from a2hlib.backbones import build_backbone  # noqa: E402
from a2hlib.datasets import ArrayDataset, train_transform  # noqa: E402
from a2hlib.losses import hashing_losses, schedule  # noqa: E402
from a2hlib.models import build_model  # noqa: E402
from a2hlib.training import get_config, train  # noqa: E402

BACKBONE = "efficientnet_lite0"
CPU_SCHEDULE = get_config("cpu")
TRAIN_IMAGES = CPU_SCHEDULE.outer_iterations * CPU_SCHEDULE.epochs * CPU_SCHEDULE.num_samples
DATABASE, QUERY = 1000, 300  # the built-in dataset (synthetic.SyntheticConfig defaults)
STORED_SIZE = 64  # side of the built-in dataset's stored images
SETTINGS = ("full", "frozen", "cached")


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def measure(step, images: int, args, forward=None) -> dict[str, float]:
    """Per-image speed of `step` (which handles `images` images) and FLOPs of `forward`: see the
    module docstring."""
    for _ in range(args.warmup):
        step()
    walls, cpus = [], []
    for _ in range(args.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    out = {"images_per_s": images / statistics.median(walls), "best_images_per_s": images / min(walls),
           "cpu_ms_per_image": 1000 * statistics.median(cpus) / images}
    if forward is not None:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            forward()
        out["forward_gflop_per_image"] = counter.get_total_flops() / images / 1e9
    return out


def make_model(variant: str, size: int, args, freeze: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(variant, args.bits, backbone=BACKBONE, weights="imagenet", image_size=size,
                       num_parts=args.parts, generator_width=CPU_SCHEDULE.generator_width, freeze_stem=freeze)


def stem_features(size: int, batch: int) -> torch.Tensor:
    side = -(-size // 16)  # TF 'same' padding: ⌈S/16⌉
    return torch.randn(batch, 112, side, side)


def measure_training(variant: str, size: int, setting: str, args) -> dict[str, float]:
    model = make_model(variant, size, args, freeze=setting != "full").train()
    if setting == "cached":
        model.stem = torch.nn.Identity()  # the inputs are the stored stem features
        inputs = stem_features(size, args.batch)
    else:
        inputs = torch.randn(args.batch, 3, size, size)
    target = torch.rand(args.batch, 3, size, size)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=CPU_SCHEDULE.lr, weight_decay=CPU_SCHEDULE.weight_decay)
    B = torch.sign(torch.randn(DATABASE, args.bits))
    S = torch.rand(args.batch, DATABASE) * 2 - 1
    rows = torch.randperm(DATABASE)[:args.batch]
    weights = schedule(variant, 2)

    def step():
        outputs = model.forward_all(inputs)
        terms = hashing_losses(outputs, B, S, rows, weights, CPU_SCHEDULE.gamma,
                               target if "image" in outputs else None)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()

    return measure(step, args.batch, args, forward=lambda: model.forward_all(inputs))


def measure_inference(module: torch.nn.Module, inputs: torch.Tensor, args) -> dict[str, float]:
    module.eval()

    @torch.no_grad()
    def step():
        module(inputs)

    return measure(step, len(inputs), args, forward=step)


def measure_transform(size: int, args) -> dict[str, float]:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (STORED_SIZE, STORED_SIZE, 3), dtype=np.uint8))
              for _ in range(args.batch)]
    transform = train_transform(size, CPU_SCHEDULE.crop_scale)
    return measure(lambda: [transform(im) for im in images], args.batch, args)


def loop_check(size: int, args) -> dict[str, float]:
    """The real training loop: one outer iteration of one epoch of 3 batches, frozen stem, a2netpp."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (DATABASE, STORED_SIZE, STORED_SIZE, 3), dtype=np.uint8)
    targets = torch.as_tensor(rng.integers(0, 20, DATABASE))
    database = ArrayDataset(images, targets, train_transform(size, CPU_SCHEDULE.crop_scale), num_classes=20)
    config = get_config("cpu", backbone=BACKBONE, weights="imagenet", image_size=size, freeze_stem=True,
                        outer_iterations=1, epochs=1, num_samples=3 * args.batch, batch_size=args.batch,
                        num_parts=args.parts, code_length=args.bits, device="cpu")
    start = time.perf_counter()
    train(config, database, progress=False)
    elapsed = time.perf_counter() - start
    return {"size": size, "images": config.num_samples, "seconds": round(elapsed, 2),
            "images_per_s": round(config.num_samples / elapsed, 2)}


def estimate(speed: dict[str, dict[str, float]], setting: str, key: str, threads: int) -> float:
    """Seconds of one `cpu`-schedule run (module docstring); `key` picks the speed measure."""
    if key == "cpu_ms_per_image":
        def seconds(part, n):
            return n * speed[part][key] / 1000 / threads
    else:
        def seconds(part, n):
            return n / speed[part][key]
    n, e = TRAIN_IMAGES, DATABASE + QUERY
    total = seconds("stem", e) + seconds("after_stem", e) + seconds(f"train_{setting}", n)
    return total if setting == "cached" else total + seconds("transform", n)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["a2netpp", "a2net", "adsh"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[96, 112, 128])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--parts", type=int, default=4, help="M attention parts")
    parser.add_argument("--bits", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-check", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict = {"backbone": BACKBONE, "batch": args.batch, "parts": args.parts, "bits": args.bits,
                    "threads": torch.get_num_threads(), "warmup": args.warmup, "repeats": args.repeats,
                    "torch": torch.__version__, "loadavg_before": loadavg(),
                    "schedule": {"train_images": TRAIN_IMAGES, "encode_images": DATABASE + QUERY},
                    "speed": {}, "estimate_s": {}, "best_estimate_s": {}, "cpu_estimate_s": {}}
    started = time.perf_counter()

    reference = build_backbone(BACKBONE, "imagenet")
    classifier = torch.nn.Sequential(reference.stem, reference.make_layer4(), reference.classifier)
    result["reference"] = measure_inference(classifier, torch.randn(args.batch, 3, 112, 112), args)
    print(f"reference (EfficientNet-Lite0 classifier, 112 px): {result['reference']}", flush=True)
    per_size = {}
    for size in args.sizes:
        stem = make_model("adsh", size, args, freeze=True).stem
        per_size[size] = {"stem": measure_inference(stem, torch.randn(args.batch, 3, size, size), args),
                          "transform": measure_transform(size, args)}
        print(f"{size} px: {per_size[size]}", flush=True)
    for variant in args.models:
        for size in args.sizes:
            speed = dict(per_size[size])
            model = make_model(variant, size, args, freeze=True)
            model.stem = torch.nn.Identity()
            speed["after_stem"] = measure_inference(model, stem_features(size, args.batch), args)
            for setting in args.settings:
                speed[f"train_{setting}"] = measure_training(variant, size, setting, args)
            key = f"{variant}@{size}"
            result["speed"][key] = {part: {k: round(v, 3) for k, v in m.items()} for part, m in speed.items()}
            for name, measure_key in (("estimate_s", "images_per_s"), ("best_estimate_s", "best_images_per_s"),
                                      ("cpu_estimate_s", "cpu_ms_per_image")):
                result[name][key] = {s: round(estimate(speed, s, measure_key, args.threads), 1)
                                     for s in args.settings}
            print(f"{key}: " + "; ".join(
                f"{s}: {speed['train_' + s]['images_per_s']:.1f} img/s, {speed['train_' + s]['cpu_ms_per_image']:.0f} "
                f"cpu ms/img, {speed['train_' + s]['forward_gflop_per_image']:.2f} forward GFLOP/img"
                for s in args.settings)
                + f"; estimated run s {result['estimate_s'][key]}, from cpu time {result['cpu_estimate_s'][key]}",
                flush=True)
    if args.loop_check:
        result["loop_check"] = loop_check(args.sizes[0], args)
        print(f"loop check: {result['loop_check']}", flush=True)
    result["loadavg_after"] = loadavg()
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
