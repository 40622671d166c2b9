"""The checks that need a CUDA GPU, in one command (`make gpu-check`), with one summary at the end.

    make gpu-check                 # fresh machine: creates .venv first (make setup)
    make gpu-check PY=python3      # a machine whose python3 already has CUDA torch and the requirements

1. the unit tests on the GPU: `A2H_TEST_DEVICE=cuda python -m pytest tests -q`;
2. a two-outer-iteration `paper` run at 12 bits (ResNet-50, 224 px, M = k, SGD, num_workers 4,
   torch.compile, bf16) on the built-in synthetic dataset rendered at 224 px (20 classes, 25
   database and 6 query images each, no supersampling, so it renders in seconds), with fewer images
   and epochs (--num-samples, --epochs) and random initial weights (no download), then the
   query-set mAP against the learned database codes;
3. `benchmarks/bench_train.py` (feed, step, FLOPs, launches, projected H100 time).

Exit status 0 only when all three passed. The last line printed is one JSON object; it is also
written to --out (default: runs/gpu_check.json).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_tests(timeout: int) -> dict:
    env = {**os.environ, "A2H_TEST_DEVICE": "cuda", "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    print(proc.stdout[-6000:], proc.stderr[-2000:], sep="\n", flush=True)
    lines = [ln for ln in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    return {"ok": proc.returncode == 0, "summary": lines[-1].strip("= ") if lines else f"exit {proc.returncode}",
            "seconds": round(time.perf_counter() - start, 1)}


def paper_run(num_samples: int, epochs: int, per_class: int) -> dict:
    import torch

    from a2hlib import synthetic
    from a2hlib.codes import binarize
    from a2hlib.datasets import build_dataset
    from a2hlib.manifest import read_dataset
    from a2hlib.metrics import mean_average_precision
    from a2hlib.models import encode
    from a2hlib.training import get_config, resolve_device, train

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic.load("default", image_size=224, database_per_class=per_class,
                              query_per_class=max(1, per_class // 4), supersample=1)
        prepared = read_dataset(synthetic.write_to_disk(data, Path(tmp) / "synthetic224"))
        data_s = time.perf_counter() - start
        config = get_config("paper", code_length=12, weights=None, outer_iterations=2, epochs=epochs,
                            num_samples=num_samples)
        database = build_dataset(prepared, "database", 224, train=True, scale=config.crop_scale, cache=True)
        queries = build_dataset(prepared, "query", 224, train=False, cache=True)
        marks = [time.perf_counter()]
        state = train(config, database, progress=False,
                      select=lambda s: marks.append(time.perf_counter()) or 0.0)
        codes = binarize(encode(state.model, queries, device=resolve_device(config.device)))
        map_ = mean_average_precision(codes, state.B, queries.targets, database.targets)
        cache_mb = database.ensure_cache().nbytes / 1e6
    steps = config.epochs * -(-config.num_samples // config.batch_size)
    totals = [h["total"] for h in state.history]
    result = {
        "config": {k: getattr(config, k) for k in ("backbone", "image_size", "num_parts", "code_length",
                                                   "outer_iterations", "epochs", "num_samples", "batch_size",
                                                   "num_workers", "compile", "amp")},
        "database": len(database), "queries": len(queries), "data_seconds": round(data_s, 1),
        "cache_mb": round(cache_mb, 1),
        "iteration_seconds": [round(b - a, 1) for a, b in zip(marks, marks[1:])],
        "second_iteration_img_s": round(steps * config.batch_size / (marks[2] - marks[1]), 1),
        "history_rows": len(state.history), "expected_rows": 2 * steps,
        "final_loss": totals[-1], "query_map": round(map_, 4),
        "gpu_peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1),
    }
    result["ok"] = bool(len(state.history) == 2 * steps and all(map(lambda x: x == x and abs(x) < 1e30, totals)))
    return result


def run_benchmark(timeout: int) -> dict:
    proc = subprocess.run([sys.executable, "benchmarks/bench_train.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    print(proc.stdout[-4000:], proc.stderr[-3000:], sep="\n", flush=True)
    try:
        return {"ok": proc.returncode == 0, **json.loads(proc.stdout.strip().splitlines()[-1])}
    except (json.JSONDecodeError, IndexError):
        return {"ok": False, "error": f"exit {proc.returncode}, no JSON line"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-samples", type=int, default=400, help="images per outer iteration of the paper run")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per outer iteration of the paper run")
    ap.add_argument("--per-class", type=int, default=25, help="database images per class of the synthetic set")
    ap.add_argument("--skip", nargs="*", default=[], choices=("tests", "paper", "bench"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "gpu_check.json"))
    args = ap.parse_args()
    import torch
    if not torch.cuda.is_available():
        sys.exit("error: gpu-check needs a CUDA GPU and a CUDA build of torch "
                 f"(torch {torch.__version__} sees none); run it on a GPU machine")
    summary: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
    steps = {"tests": lambda: run_tests(timeout=1200),
             "paper": lambda: paper_run(args.num_samples, args.epochs, args.per_class),
             "bench": lambda: run_benchmark(timeout=1800)}
    for name, step in steps.items():
        if name in args.skip:
            continue
        print(f"== gpu-check: {name}", flush=True)
        try:
            summary[name] = step()
        except Exception as err:  # report and go on: one summary of everything
            summary[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
    ok = all(summary[n]["ok"] for n in steps if n in summary)
    summary["ok"] = ok

    print("\n== gpu-check summary")
    print(f"device: {summary['gpu']}, torch {summary['torch']}, CUDA {summary['cuda']}")
    if "tests" in summary:
        t = summary["tests"]
        print(f"tests (A2H_TEST_DEVICE=cuda): {t.get('summary', t.get('error'))} [{'ok' if t['ok'] else 'FAILED'}]")
    if "paper" in summary:
        p = summary["paper"]
        print("paper run, 12 bits, 2 outer iterations: " + (
            f"iterations {p['iteration_seconds']} s, second {p['second_iteration_img_s']} images/s, "
            f"{p['history_rows']}/{p['expected_rows']} history rows, final loss {p['final_loss']:.4g}, "
            f"query mAP {p['query_map']}, peak {p['gpu_peak_gb']} GB" if "error" not in p else p["error"])
              + f" [{'ok' if p['ok'] else 'FAILED'}]")
    if "bench" in summary:
        b = summary["bench"]
        print("benchmark: " + (
            f"feed {b['feed_shipped_img_s_per_core']} -> {b['feed_cached_img_s_per_core']} images/s per core; "
            + "; ".join(f"{k}b step eager {b[f'step_eager_img_s_{k}b']} -> optimised "
                        f"{b[f'step_optimised_img_s_{k}b']} images/s, projected H100 {b[f'projected_h100_min_{k}b']} min"
                        for k in (12, 48) if f"projected_h100_min_{k}b" in b)
            if "error" not in b else b["error"]) + f" [{'ok' if b['ok'] else 'FAILED'}]")
    print(f"result: {'ok' if ok else 'FAILED'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from a2hlib.fileio import write_json
    write_json(out, summary)
    print(json.dumps(summary))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
