"""Training throughput of the fast path: data feed, training step, FLOPs, kernel launches, and the
projected time of one CUB `paper` run on one H100.

    python benchmarks/bench_train.py                  # 12 and 48 bits (make bench-train)
    python benchmarks/bench_train.py --compile off    # no torch.compile (quicker on CPU)

Feed (one process, one thread, images per CPU-second = images/s per core), on JPEGs of real-photo
size (470×380, cut from photos that installed packages ship: scikit-image's `skimage.data` if it
is installed, else matplotlib's sample photo):
- `shipped`: the per-image work of the loop before the fast path, where DataLoader workers were
  created afresh every outer iteration so `cache=True` never hit: decode (JPEG draft at 256 px),
  shrink into the never-reused cache, RandomResizedCrop + flip, float conversion + normalisation.
- `cached`: `a2hlib.datasets.BatchFeed` over the decode-once memory-mapped cache: RandomResizedCrop
  + flip on uint8; conversion and normalisation happen on the device, not here.

Step (the `paper` model: a2netpp, ResNet-50, 224 px, M = k, random init): `eager` is the step as
it was shipped (fp32, NCHW, every loss term read with float(), u copied to the host, blocking index
copies); `optimised` is `a2hlib.training.TrainStep` as `train` runs it on this device (CUDA:
channels_last, bf16 autocast, cudnn.benchmark; torch.compile when compiling). Images/s at the
given batch size (on CPU a small batch and a few steps).

FLOPs per image: torch.utils.flop_counter.FlopCounterMode on the meta device (forward; training
step = forward + backward). Launches per training step: eager, the aten operators that launch a
kernel, counted with a dispatch mode on the meta device with the optimizer as on CUDA (foreach,
counted in multi_tensor_apply chunks); compiled, inductor's generated kernels plus its calls of
aten kernels (counted with torch.profiler on this device). On CUDA the runtime's own launch
calls are counted too (`launches_cuda_*`).

Projection, one CUB paper run = 40 outer iterations × 30 epochs × 2,000 images = 2.4 M training
images in 150,000 steps of 16 on one H100: the slowest of three bounds, each reported: compute
(training FLOPs at 35 % of 989 TFLOP/s dense bf16), feed (4 loader processes at the measured
cached per-core rate) and launches (launches per step × 10 µs). The launches are, on CUDA, the
runtime calls of the optimised step; on CPU, the compiled step's count (by default only the first
code length is compiled there, cold in minutes, and its count serves the others: the graphs have
the same operators), else the eager count (`launches_source_*`). The last line printed is one
JSON object.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from a2hlib.codes import binarize  # noqa: E402
from a2hlib.datasets import (BatchFeed, ManifestDataset, decode_image, denormalize,  # noqa: E402
                             resize_size, train_transform)
from a2hlib.losses import hashing_losses, schedule  # noqa: E402
from a2hlib.training import TrainStep, _new_model, _optimizer, get_config, resolve_device  # noqa: E402

H100_BF16_FLOPS = 989e12
MFU = 0.35
LAUNCH_S = 10e-6
RUN_IMAGES = 40 * 30 * 2000
RUN_BATCH = 16
LOADER_PROCESSES = 4
CUB_DATABASE = 5994
PHOTO_SIZE = (470, 380)


# ------------------------------------------------------------------------------------- photos
def source_photos() -> tuple[str, list[Image.Image]]:
    """Colour photos shipped by installed packages (no download)."""
    try:
        from skimage import data as skdata
        photos = []
        for name in ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field"):
            with contextlib.suppress(Exception):  # some need a download in newer releases
                arr = getattr(skdata, name)()
                if arr.ndim == 3 and arr.shape[2] == 3:
                    photos.append(Image.fromarray(arr))
        if photos:
            return "skimage.data", photos
    except ImportError:
        pass
    import matplotlib.cbook
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return "matplotlib grace_hopper.jpg", [im.convert("RGB")]


def make_jpegs(folder: Path, count: int, seed: int = 0) -> tuple[Path, str]:
    """`count` 470×380 JPEGs (quality 90): random crops (60–100 % of the area), resizes and flips
    of the source photos, as a prepared dataset (`a2hlib.manifest`) in `folder`."""
    import pandas as pd

    from a2hlib.manifest import write_dataset
    source, photos = source_photos()
    rng = np.random.default_rng(seed)
    (folder / "im").mkdir(parents=True)
    rows = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        f = math.sqrt(rng.uniform(0.6, 1.0))
        cw = min(w, round(h * f * PHOTO_SIZE[0] / PHOTO_SIZE[1]))
        ch = round(cw * PHOTO_SIZE[1] / PHOTO_SIZE[0])
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        img = photo.crop((x, y, x + cw, y + ch)).resize(PHOTO_SIZE, Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img.save(folder / "im" / f"{i:04d}.jpg", quality=90)
        rows.append({"path": f"im/{i:04d}.jpg", "label": i % 4, "split": "database" if i else "query"})
    info = {"name": "photos", "num_classes": 4, "class_names": list("abcd"), "multi_label": False}
    write_dataset(folder, pd.DataFrame(rows), info)
    return folder, source


# --------------------------------------------------------------------------------------- feed
def shipped_item(ds: ManifestDataset, i: int, short: int) -> torch.Tensor:
    """Item i as the shipped loop made it with a cold cache (workers made afresh every outer
    iteration): decode with draft, shrink to the cache's short side, store, transform on CPU."""
    img = ds._convert(decode_image(ds.image_path(i), draft=short))
    w, h = img.size
    if min(w, h) > short:
        f = short / min(w, h)
        img = img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR,
                         reducing_gap=3.0)
    np.asarray(img, dtype=np.uint8).copy()  # what the per-worker cache stored and never reused
    return ds.transform(img)


def per_core_rate(make_batch, images_per_batch: int, batches: int, repeats: int) -> float:
    """Median images per CPU-second of the process (one thread) over `repeats` runs."""
    rates = []
    for r in range(repeats):
        start = time.process_time()
        for b in range(batches):
            make_batch(r * batches + b)
        rates.append(images_per_batch * batches / (time.process_time() - start))
    return statistics.median(rates)


def bench_feed(folder: Path, image_size: int, batch: int, repeats: int) -> dict:
    ds = ManifestDataset(folder, "database", train_transform(image_size), cache=True)
    n = len(ds)
    start = time.process_time()
    cache = ds.ensure_cache()
    build_s = time.process_time() - start
    keys = [[(b * batch + j) % n for j in range(batch)] for b in range(max(1, n // batch))]
    short = resize_size(image_size)
    feed = BatchFeed(ds)
    shipped = per_core_rate(lambda b: torch.utils.data.default_collate(
        [shipped_item(ds, i, short) for i in keys[b % len(keys)]]), batch, len(keys), repeats)
    feed[(0, keys[0])]  # map the file (first touch), as a worker does once
    cached = per_core_rate(lambda b: feed[(b, keys[b % len(keys)])], batch, 4 * len(keys), repeats)
    return {"feed_shipped_img_s_per_core": round(shipped, 1), "feed_cached_img_s_per_core": round(cached, 1),
            "feed_speedup": round(cached / shipped, 2), "feed_images": n,
            "cache_build_img_s_per_core": round(n / build_s, 1),
            "cache_bytes_per_image": round(cache.nbytes / n)}


# --------------------------------------------------------------------------------------- step
_NO_KERNEL = {"empty", "empty_strided", "empty_like", "lift_fresh", "detach", "alias",
              "_record_function_enter_new", "_record_function_exit"}
_MTA_MAX_TENSORS = {1: 110, 2: 64, 3: 48, 4: 36, 5: 30}  # multi_tensor_apply, per kernel launch
_MTA_CHUNK, _MTA_MAX_BLOCKS = 65536, 320


def _foreach_launches(func, args) -> int:
    """Kernel launches of a foreach op on CUDA (multi_tensor_apply): one per ≤ max tensors of the
    list depth, or per 320 chunks of 65,536 elements, whichever needs more."""
    lists = [a for a in args if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor)]
    depth = min(5, len(lists) + (0 if func.overloadpacket.__name__.endswith("_") else 1))
    chunks = sum(math.ceil(t.numel() / _MTA_CHUNK) for t in lists[0])
    return max(math.ceil(len(lists[0]) / _MTA_MAX_TENSORS[depth]), math.ceil(chunks / _MTA_MAX_BLOCKS))


def count_launches(step, args) -> int:
    """Kernel-launching aten operators of one call of `step(*args)` on the meta device (views,
    allocations and host-only scalar work excluded; foreach ops as multi_tensor_apply launches)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        launches = 0

        def __torch_dispatch__(self, func, types, a=(), kw=None):
            out = func(*a, **(kw or {}))
            name = func.overloadpacket.__name__
            tensors = [t for t in torch.utils._pytree.tree_leaves((a, kw)) if isinstance(t, torch.Tensor)]
            if func.is_view or name in _NO_KERNEL or not any(t.device.type == "meta" for t in tensors):
                return out
            Counter.launches += _foreach_launches(func, a) if name.startswith("_foreach_") else 1
            return out

    with Counter():
        step(*args)
    return Counter.launches


def paper_config(bits: int, **overrides):
    return get_config("paper", code_length=bits, weights=None, **overrides)


def step_inputs(config, batch: int, device: torch.device, gen: torch.Generator):
    n = CUB_DATABASE
    images = torch.randint(0, 256, (batch, 3, config.image_size, config.image_size), dtype=torch.uint8,
                           generator=gen)
    B = binarize(torch.randn(n, config.code_length, generator=gen)).to(device)
    S = (torch.rand(batch, n, generator=gen) < 1 / 200).float().mul(2).sub(1).to(device)
    db_index = torch.randint(0, n, (batch,), generator=gen)
    return images, B, S, db_index


def flops_and_eager_launches(bits: int, batch: int = 2) -> dict:
    """FLOPs per image (forward, training step) and launches per eager step and per optimizer
    step, on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode
    config = paper_config(bits)
    meta = torch.device("meta")
    with meta:
        model = _new_model(config).train()
    images, B, S, db_index = (t.to(meta) for t in step_inputs(config, batch, torch.device("cpu"),
                                                               torch.Generator().manual_seed(0)))
    weights = schedule(config.model, 2)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model.forward_all(images.float(), with_image=False)
    forward = fc.get_total_flops() / batch
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, foreach=True)  # as on CUDA
    step = TrainStep(model, optimizer, config, meta)
    with FlopCounterMode(display=False) as fc:
        step(images, B, S, db_index, weights)
    train = fc.get_total_flops() / batch
    launches = count_launches(step, (images, B, S, db_index, weights))
    optimizer_launches = count_launches(optimizer.step, ())
    # Dynamo would leave TrainStep's code uncompiled after it ran under these dispatch modes
    torch._dynamo.reset()
    return {"forward": forward, "train": train, "launches": launches, "optimizer_launches": optimizer_launches}


def shipped_step(model, optimizer, config, device, images, B, S, db_index, U, weights):
    """The training step as shipped: fp32, float() of every term, u to the host, blocking copies."""
    rows = torch.arange(len(db_index))
    images = images.to(device, non_blocking=True)
    outputs = model.forward_all(images)
    target = denormalize(images) if "image" in outputs else None
    terms = hashing_losses(outputs, B, S[rows.to(device)], db_index.to(device), weights, config.gamma, target)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    optimizer.step()
    U[rows] = outputs["u"].detach().float().cpu()
    return {name: float(v.detach()) for name, v in terms.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


_COMPILED_REGION = ("## Call CompiledFxGraph", "CompiledFunction")
_RUNTIME_LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
                     "cudaMemcpyAsync", "cudaMemsetAsync", "cudaGraphLaunch")


def profiled_launches(run, device: torch.device) -> dict:
    """Profile one call of `run`: `generated` kernels of inductor (C++ kernels on CPU: needs
    `cpp.enable_kernel_profile`; Triton kernels on CUDA), `graph_aten` kernels the compiled
    graphs call through aten (convolutions, matmuls), and on CUDA `cuda_runtime`, the runtime's
    launch and copy calls of the whole step."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
        _sync(device)
    counts = collections.Counter()
    for e in prof.events():
        parent = e.cpu_parent.name if e.cpu_parent is not None else ""
        if "cpp_fused" in e.name or e.name.startswith(("triton_", "graph_0_triton")):
            counts["generated"] += 1
        elif e.name.startswith("aten::") and parent.startswith(_COMPILED_REGION) \
                and e.name[len("aten::"):] not in _NO_KERNEL | {"as_strided", "resize_", "view"}:
            counts["graph_aten"] += 1
        elif e.name in _RUNTIME_LAUNCHES:
            counts["cuda_runtime"] += 1
    return counts


def make_run(variant: str, bits: int, device: torch.device, batch: int, compile: bool):
    """(config, one training step of `variant` as a closure, the optimised step object or None)."""
    config = paper_config(bits, compile=compile and variant == "optimised")
    torch.manual_seed(0)
    model = _new_model(config).to(device).train()
    images, B, S, db_index = step_inputs(config, batch, device, torch.Generator().manual_seed(0))
    weights = schedule(config.model, 2)
    if variant == "eager":
        U = torch.zeros(batch, bits)
        floats = images.float().sub_(127.5).div_(64)  # normalised-like float input, on the host
        optimizer = _optimizer(config, model)
        return config, lambda: shipped_step(model, optimizer, config, device, floats, B, S, db_index, U, weights)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        images = images.pin_memory()
    step = TrainStep(model, _optimizer(config, model), config, device)
    U = torch.zeros(batch, bits, device=device)
    rows = torch.arange(batch, device=device)
    S_rows, db = S[rows], db_index.to(device)
    logged = []

    def run():
        terms, u = step(images, B, S_rows, db, weights)
        U[rows] = u.float()
        logged.append(torch.stack([v.detach() for v in terms.values()]))
        if len(logged) == 125:  # one host synchronisation per epoch of 2,000 / 16 steps
            torch.stack(logged).tolist()
            logged.clear()
    return config, run


def bench_step(bits: int, device: torch.device, batch: int, warmup: int, steps: int, compile: bool,
               optimizer_launches: int) -> dict:
    """Images/s of the shipped eager step and of the optimised step (timed alternately, median
    step time); launches of the optimised step when compiled on CPU (generated kernels + aten
    calls of the graphs + the optimizer + 3: input copy, U update, loss log) and, on CUDA, the
    runtime's launch calls of both steps."""
    out, runs, times = {}, {}, {"eager": [], "optimised": []}
    for variant in times:
        torch.backends.cudnn.benchmark = variant == "optimised"  # as train() sets it (CUDA only)
        config, run = runs[variant] = make_run(variant, bits, device, batch, compile)
        out[f"step_{variant}_first_call_s_{bits}b"] = round(timed(run, device), 2)  # compiles if compiling
        for _ in range(warmup - 1):
            run()
        if config.compile or device.type == "cuda":
            counts = profiled_launches(run, device)
            if config.compile and device.type == "cpu":
                out[f"launches_compiled_{bits}b"] = counts["generated"] + counts["graph_aten"] + optimizer_launches + 3
            if device.type == "cuda":
                out[f"launches_cuda_{variant}_{bits}b"] = counts["cuda_runtime"]
    for _ in range(steps):
        for variant, (config, run) in runs.items():
            torch.backends.cudnn.benchmark = variant == "optimised"
            times[variant].append(timed(run, device))
    for variant, t in times.items():
        out[f"step_{variant}_img_s_{bits}b"] = round(batch / statistics.median(t), 3)
    out[f"step_speedup_{bits}b"] = round(out[f"step_optimised_img_s_{bits}b"] / out[f"step_eager_img_s_{bits}b"], 2)
    return out


# ----------------------------------------------------------------------------------- projection
def project(train_flops: float, feed_rate: float, launches: int) -> dict:
    compute = RUN_IMAGES * train_flops / (MFU * H100_BF16_FLOPS)
    feed = RUN_IMAGES / (LOADER_PROCESSES * feed_rate)
    launch = RUN_IMAGES / RUN_BATCH * launches * LAUNCH_S
    return {"compute_min": compute / 60, "feed_min": feed / 60, "launch_min": launch / 60,
            "projected_min": max(compute, feed, launch) / 60}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[12, 48])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                    help="torch.compile the optimised step; auto: every code length on CUDA, the "
                         "first on CPU (compiling the paper model takes minutes on 2 cores; the graph "
                         "of another code length has the same operators)")
    ap.add_argument("--batch", type=int, default=None, help="step batch (default: 16 on CUDA, 2 on CPU)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps of each variant, alternating (default: 20 on CUDA, 4 on CPU)")
    ap.add_argument("--photos", type=int, default=64, help="JPEGs for the feed benchmark")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch or (16 if cuda else 2)
    steps = args.steps or (20 if cuda else 4)
    warmup = 5 if cuda else 1
    if not cuda:
        import torch._inductor.config as inductor_config
        inductor_config.cpp.enable_kernel_profile = True  # generated kernels show in the profile

    result: dict = {"device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
                    "torch": torch.__version__, "load_1min": round(os.getloadavg()[0], 2),
                    "cpu_count": os.cpu_count(), "step_batch": batch, "timed_steps": steps,
                    "compile": args.compile}
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder, source = make_jpegs(Path(tmp) / "photos", args.photos)
        result["photos"] = f"{args.photos} JPEGs {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} from {source}"
        result.update(bench_feed(folder, 224, RUN_BATCH, args.repeats))
    print(f"feed, images/s per core: shipped {result['feed_shipped_img_s_per_core']:.0f}, "
          f"cached {result['feed_cached_img_s_per_core']:.0f} ({result['feed_speedup']:.1f}x)", flush=True)
    torch.set_num_threads(os.cpu_count() or 1)

    compiled_launches = None
    for n, bits in enumerate(args.bits):
        compile = args.compile == "on" or (args.compile == "auto" and (cuda or n == 0))
        counted = flops_and_eager_launches(bits)
        result[f"gflop_forward_per_img_{bits}b"] = round(counted["forward"] / 1e9, 2)
        result[f"gflop_train_per_img_{bits}b"] = round(counted["train"] / 1e9, 2)
        result[f"launches_eager_{bits}b"] = counted["launches"]
        result.update(bench_step(bits, device, batch, warmup, steps, compile, counted["optimizer_launches"]))
        if cuda:
            launches, source = result[f"launches_cuda_optimised_{bits}b"], "CUDA runtime calls, optimised step"
        elif compile:
            launches = compiled_launches = result[f"launches_compiled_{bits}b"]
            source = f"compiled {bits}-bit step"
        elif compiled_launches is not None:
            launches, source = compiled_launches, f"compiled {args.bits[0]}-bit step (same operators)"
        else:
            launches, source = counted["launches"], "eager step"
        result[f"launches_projected_{bits}b"], result[f"launches_source_{bits}b"] = launches, source
        p = project(counted["train"], result["feed_cached_img_s_per_core"], launches)
        for name in ("compute_min", "feed_min", "launch_min"):
            result[f"h100_{name}_{bits}b"] = round(p[name], 1)
        result[f"projected_h100_min_{bits}b"] = round(p["projected_min"], 1)
        print(f"{bits} bits: {counted['train'] / 1e9:.0f} GFLOP/image (training), step images/s eager "
              f"{result[f'step_eager_img_s_{bits}b']} vs optimised {result[f'step_optimised_img_s_{bits}b']}; "
              f"launches/step eager {counted['launches']}, used {launches}; H100 bounds (min): compute "
              f"{p['compute_min']:.1f}, feed {p['feed_min']:.1f}, launches {p['launch_min']:.1f} -> "
              f"{p['projected_min']:.1f}", flush=True)
    result["load_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
