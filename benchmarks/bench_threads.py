"""How many torch CPU threads should the workbook use? Times the same short training run with 1, 2
and (if more cores) all threads, in one process, alternating the settings so load changes hit them
alike. The last line is one JSON object: the load average, the median seconds per setting and the
ratio to one thread.

    .venv/bin/python benchmarks/bench_threads.py [--repeats 5] [--config cpu]

`a2hlib.notebook.DEFAULT_THREADS` (used when neither the `threads` notebook parameter nor
A2H_THREADS is set) was chosen from this benchmark on the 2-core build machine, idle and busy; the
README ("Threads") quotes both lines.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from a2hlib import synthetic, training
from a2hlib.datasets import ArrayDataset, train_transform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", default="cpu", help="training config whose model and batch are timed")
    parser.add_argument("--steps", type=int, default=3, help="outer iterations per timed run (1 epoch each)")
    args = parser.parse_args()
    cfg = training.get_config(args.config, model="a2netpp", code_length=12, outer_iterations=args.steps,
                              epochs=1, lr_step_at=None, device="cpu")
    data = synthetic.load("default", image_size=cfg.image_size).subset("database")
    database = ArrayDataset(data.images, torch.as_tensor(data.labels), train_transform(cfg.image_size, cfg.crop_scale))
    settings = sorted({1, 2, os.cpu_count() or 1})
    times: dict[int, list[float]] = {t: [] for t in settings}
    training.train(cfg, database, progress=False)  # warm-up
    for _ in range(args.repeats):
        for t in settings:
            torch.set_num_threads(t)
            start = time.perf_counter()
            training.train(cfg, database, progress=False)
            times[t].append(time.perf_counter() - start)
    medians = {t: statistics.median(v) for t, v in times.items()}
    print(json.dumps({"load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count(), "config": args.config,
                      "images_per_run": cfg.outer_iterations * cfg.num_samples,
                      "median_s": {str(t): round(m, 3) for t, m in medians.items()},
                      "ratio_to_1_thread": {str(t): round(m / medians[1], 3) for t, m in medians.items()},
                      "repeats": args.repeats}))


if __name__ == "__main__":
    main()
