"""mAP@all at Food-101 scale: a2hlib.metrics against a plain per-query argsort loop.

    python benchmarks/bench_map.py           # 25,250 queries × 75,750 database items, 48 bits
    python benchmarks/bench_map.py --small   # a tenth of each, for a quick check

Codes are noisy class prototypes: every class has a random ±1 prototype, and each item's code is
its class prototype with every bit flipped with probability --flip (fixed seed). The loop baseline
(what the DSH/ADSH evaluation code does: float distances, here with a stable argsort) is timed on
--loop-queries queries and extrapolated to all of them (`loop_s`, `speedup`); a2hlib is also run
on that subset and `abs_diff` is the difference of the two subset mAPs. A second loop with int16
distances, which numpy's stable argsort sorts by radix, is reported as `loop_int_s` and
`speedup_vs_int_loop`. a2hlib uses torch.get_num_threads() worker threads (`threads`); the
loops are single-threaded numpy.

Memory: `peak_mb` is the growth of the process's resident-set high-water mark
(resource.getrusage ru_maxrss) during the full a2hlib call, so it counts torch and numpy
allocations alike; `rss_peak_mb` is the process's whole high-water mark (Python, torch libraries,
the codes). The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from a2hlib.metrics import mean_average_precision  # noqa: E402


def maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if platform.system() == "Darwin" else r / 1024  # bytes on macOS, KiB on Linux


def make_codes(rng, labels, prototypes, flip):
    codes = prototypes[labels].copy()
    codes[rng.random(codes.shape) < flip] *= -1
    return codes


def loop_map(query_codes, db_codes, query_labels, db_labels, integer: bool = False) -> float:
    """The plain evaluation loop: per query, Hamming distances, a stable argsort, AP.

    integer=False is the DSH/ADSH code (float distances, whose stable argsort is a merge sort);
    integer=True sorts int16 distances, which numpy's stable argsort does by radix sort."""
    k = db_codes.shape[1]
    dtype = np.int32 if integer else np.float32
    db = db_codes.astype(dtype)
    aps = []
    for q, label in zip(query_codes.astype(dtype), query_labels):
        hamming = ((k - db @ q) // 2).astype(np.int16) if integer else 0.5 * (k - db @ q)
        relevant = (db_labels[np.argsort(hamming, kind="stable")] == label)
        total = relevant.sum()
        if total == 0:
            aps.append(0.0)
            continue
        count = np.arange(1, total + 1)
        positions = np.flatnonzero(relevant) + 1
        aps.append(float(np.mean(count / positions)))
    return float(np.mean(aps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a tenth of the queries and database")
    ap.add_argument("--queries", type=int, default=25250)
    ap.add_argument("--database", type=int, default=75750)
    ap.add_argument("--bits", type=int, default=48)
    ap.add_argument("--classes", type=int, default=101)
    ap.add_argument("--flip", type=float, default=0.2, help="bit-flip probability around prototypes")
    ap.add_argument("--loop-queries", type=int, default=200, help="queries timed with the loop")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.small:
        args.queries, args.database = args.queries // 10, args.database // 10

    rng = np.random.default_rng(args.seed)
    prototypes = np.where(rng.random((args.classes, args.bits)) < 0.5, -1, 1).astype(np.int8)
    db_labels = rng.permutation(np.arange(args.database) % args.classes)
    query_labels = rng.permutation(np.arange(args.queries) % args.classes)
    db_codes = make_codes(rng, db_labels, prototypes, args.flip)
    query_codes = make_codes(rng, query_labels, prototypes, args.flip)
    subset = np.sort(rng.choice(args.queries, size=min(args.loop_queries, args.queries), replace=False))

    # warm-up on a few queries (library loading, first-call kernel setup), not timed
    mean_average_precision(query_codes[:4], db_codes[:1000], query_labels[:4], db_labels[:1000])

    rss0 = maxrss_mb()
    t0 = time.perf_counter()
    ours_map = mean_average_precision(query_codes, db_codes, query_labels, db_labels)
    ours_s = time.perf_counter() - t0
    peak_mb = maxrss_mb() - rss0

    ours_subset = mean_average_precision(query_codes[subset], db_codes, query_labels[subset], db_labels)
    t0 = time.perf_counter()
    loop_subset = loop_map(query_codes[subset], db_codes, query_labels[subset], db_labels)
    loop_subset_s = time.perf_counter() - t0
    loop_s = loop_subset_s * args.queries / len(subset)
    t0 = time.perf_counter()
    loop_int_subset = loop_map(query_codes[subset], db_codes, query_labels[subset], db_labels, integer=True)
    loop_int_s = (time.perf_counter() - t0) * args.queries / len(subset)

    result = {
        "ours_s": round(ours_s, 3),
        "loop_s": round(loop_s, 3),
        "speedup": round(loop_s / ours_s, 2),
        "abs_diff": abs(ours_subset - loop_subset),
        "loop_int_s": round(loop_int_s, 3),
        "speedup_vs_int_loop": round(loop_int_s / ours_s, 2),
        "abs_diff_int_loop": abs(ours_subset - loop_int_subset),
        "peak_mb": round(peak_mb, 1),
        "rss_peak_mb": round(maxrss_mb(), 1),
        "map": ours_map,
        "n_query": args.queries,
        "n_db": args.database,
        "bits": args.bits,
        "classes": args.classes,
        "flip": args.flip,
        "loop_queries": len(subset),
        "loop_subset_s": round(loop_subset_s, 3),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    print(f"mAP@all (stable ties) of {args.queries} queries × {args.database} items, {args.bits} bits: "
          f"{ours_map:.6f}")
    print(f"a2hlib: {ours_s:.2f} s, resident-set growth {peak_mb:.0f} MB "
          f"(process peak {result['rss_peak_mb']:.0f} MB), {result['threads']} torch threads")
    print(f"plain loop: {loop_subset_s:.2f} s for {len(subset)} queries -> {loop_s:.1f} s for all "
          f"(speedup {result['speedup']:.1f}x); subset mAP {loop_subset:.6f} vs {ours_subset:.6f}")
    print(f"loop with int16 distances (radix argsort): {loop_int_s:.1f} s for all "
          f"(speedup {result['speedup_vs_int_loop']:.1f}x)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
