"""The paper-style results table: every finished run under a runs folder, aggregated over seeds.

Introduced in `notebooks/06_results.ipynb`. Each run folder holds `metrics.json` (written by
02_training) and `evaluation.json` (03_retrieval_evaluation); `collect_results` reads them into one
row per run, `results_table` pivots them into dataset × model rows and one column per code length,
"mean ± sd" over seeds (`a2hlib.stats.mean_sd`).
"""
from __future__ import annotations

import os
import pathlib

import pandas as pd

from a2hlib.fileio import read_json
from a2hlib.runs import METRICS
from a2hlib.stats import mean_sd

__all__ = ["collect_results", "results_table", "PUBLISHED", "published_map", "compare_with_published"]

def collect_results(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per finished run under `runs_dir` (from metrics.json and evaluation.json)."""
    rows = []
    for path in sorted(pathlib.Path(runs_dir).glob("*/*/" + METRICS)):
        record = read_json(path)
        cfg = record["config"]
        row = {"dataset": record["dataset"], "model": cfg["model"], "bits": cfg["code_length"],
               "seed": cfg["seed"], "config": record["parameters"].get("config", ""),
               "train_seconds": record["train_seconds"], "random_codes_map": record["random_codes_map"],
               **{f"asym_{k}": v for k, v in record["metrics"].items()}, "run": str(path.parent)}
        evaluation = path.parent / "evaluation.json"
        if evaluation.exists():
            for protocol, values in read_json(evaluation)["metrics"].items():
                row.update({f"{protocol[:4]}_{k}": v for k, v in values.items()})
        rows.append(row)
    return pd.DataFrame(rows)


MODEL_ORDER = ("adsh", "a2net", "a2netpp")


def results_table(results: pd.DataFrame, metric: str = "asym_map_all_stable") -> pd.DataFrame:
    """One row per dataset and model (models in the order ADSH, A²-Net, A²-Net++), one column per
    code length: "mean ± sd" over seeds (in %), and the number of seeds."""
    if results.empty:
        return pd.DataFrame()
    grouped = (results.groupby(["dataset", "model", "bits"])[metric]
               .agg(lambda v: mean_sd(v, digits=1, scale=100)).rename("cell").reset_index())
    table = grouped.pivot(index=["dataset", "model"], columns="bits", values="cell")
    table.columns = [f"{b} bits" for b in table.columns]
    table["seeds"] = results.groupby(["dataset", "model"])["seed"].nunique()
    rank = {m: i for i, m in enumerate(MODEL_ORDER)}
    table = table.reset_index()
    table = table.sort_values(["dataset", "model"], key=lambda c: c.map(rank).fillna(len(rank)) if c.name == "model"
                              else c, kind="stable")
    return table.reset_index(drop=True)


# ----------------------------------------------------------------------- published numbers
_DSH = ("aassxun/DSH_Analysis README (official A²-Net code; 95 % of the classes, seen@seen; "
        "docs/METHOD.md §8)")
# mAP@all in % at 12 / 24 / 32 / 48 bits, ResNet-50, from the authors' public repositories
# (docs/METHOD.md §8 gives the protocols). The TPAMI paper's own table is not available offline.
PUBLISHED: dict[tuple[str, str], tuple[tuple[float, float, float, float], str]] = {
    ("cub200", "a2net"): ((31.9, 62.5, 69.5, 80.6), _DSH),
    ("cub200", "adsh"): ((32.0, 57.3, 65.8, 76.5), _DSH),
    ("aircraft", "a2net"): ((46.3, 69.3, 77.0, 83.3), _DSH),
    ("aircraft", "adsh"): ((42.6, 65.3, 74.5, 79.1), _DSH),
    ("food101", "a2net"): ((44.8, 71.2, 78.0, 81.8), _DSH),
    ("food101", "adsh"): ((45.0, 69.2, 77.0, 81.4), _DSH),
    ("nabirds", "a2net"): ((8.3, 21.6, 26.5, 37.6), _DSH),
    ("nabirds", "adsh"): ((8.3, 20.2, 24.2, 30.3), _DSH),
    ("vegfru", "a2net"): ((24.5, 46.6, 57.1, 67.6), _DSH),
    ("vegfru", "adsh"): ((22.2, 46.0, 51.5, 64.8), _DSH),
    ("stanford_dogs", "a2net"): ((70.8, 84.0, 86.2, 86.7), _DSH),
    ("stanford_dogs", "adsh"): ((73.0, 84.1, 85.7, 87.4), _DSH),
}
PUBLISHED_BITS = (12, 24, 32, 48)
TOLERANCE = 3.0  # mAP points: "matches" when our mean is within this of the published number


def published_map(dataset: str, model: str, bits: int) -> tuple[float, str] | None:
    """(published mAP@all in %, source) for a dataset, model and code length, or None."""
    entry = PUBLISHED.get((dataset, model))
    if entry is None or bits not in PUBLISHED_BITS:
        return None
    return entry[0][PUBLISHED_BITS.index(bits)], entry[1]


def compare_with_published(results: pd.DataFrame, metric: str = "asym_map_all_stable") -> pd.DataFrame:
    """One row per (dataset, model, bits) of `results` that has a published number: our mean over
    seeds (in %), the published number and its source, the difference and a verdict: "matches"
    within ±TOLERANCE points, else "below" or "above"."""
    rows = []
    if results.empty:
        return pd.DataFrame(rows)
    for (dataset, model, bits), group in results.groupby(["dataset", "model", "bits"]):
        published = published_map(dataset, model, int(bits))
        if published is None:
            continue
        ours = 100 * float(group[metric].mean())
        diff = ours - published[0]
        verdict = "matches" if abs(diff) <= TOLERANCE else ("below" if diff < 0 else "above")
        rows.append({"dataset": dataset, "model": model, "bits": int(bits), "seeds": len(group),
                     "ours": round(ours, 1), "published": published[0], "difference": round(diff, 1),
                     f"verdict (±{TOLERANCE:g})": verdict, "source": published[1]})
    return pd.DataFrame(rows)
