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

__all__ = ["collect_results", "results_table"]

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


def results_table(results: pd.DataFrame, metric: str = "asym_map_all_stable") -> pd.DataFrame:
    """dataset × model rows, one column per code length: mean ± sd over seeds (in %)."""
    if results.empty:
        return pd.DataFrame()
    grouped = (results.groupby(["dataset", "model", "bits"])[metric]
               .agg(lambda v: mean_sd(v, digits=1, scale=100)).rename("cell").reset_index())
    table = grouped.pivot(index=["dataset", "model"], columns="bits", values="cell")
    table.columns = [f"{b} bits" for b in table.columns]
    return table
