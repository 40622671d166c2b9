"""The paper's claims re-measured side by side in two settings: `python -m a2hlib.claims` (`make claims`).

Settings (both on the built-in birds, the same classes and images):

* `scratch`: the `cpu` config, a small ResNet trained from scratch at 64 px (dataset `synthetic`);
* `pretrained`: the `pretrained` config, an ImageNet-initialised EfficientNet-Lite0 with its stem
  frozen, fine-tuned at 128 px (dataset `synthetic128`, the same birds rendered at 128 px).

In each setting, through `a2hlib.batch` (one worker per core on a CPU machine): ADSH, A²-Net and
A²-Net++ at 12, 24 and 48 bits with seeds 0, 1 and 2 (02, 03), the simplicity-bias study (04,
planted shortcut at 12 bits) and the bit ↔ attribute study (05) at `ANALYSIS_BITS`. Then
retrieval on real data: the three models on Fashion-MNIST (Debian's `dataset-fashion-mnist` files;
`FASHION_LIMIT` database and query images, the `cpu` config at 32 px), 3 seeds.

The summary (`<runs>/claims.md`, `<runs>/claims.json`) puts the settings side by side, mean ± sd
over seeds, and states each verdict with the workbook's one rule (`a2hlib.stats`). Everything is
resumable: finished points are skipped, so a killed campaign continues where it stopped. On the
2-core build machine the whole campaign takes a few hours (the README gives the measured time).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

import pandas as pd

from a2hlib import batch
from a2hlib.fileio import atomic_write, read_json, write_json
from a2hlib.stats import compare, mean_sd, verdict

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS, BITS, SEEDS = ("adsh", "a2net", "a2netpp"), (12, 24, 48), (0, 1, 2)
ANALYSIS_BITS = 24
SETTINGS = {  # name → (dataset, config)
    "scratch": ("synthetic", "cpu"),
    "pretrained": ("synthetic128", "pretrained"),
}
FASHION = ("fashion_mnist", "cpu", {"image_size": 32})
FASHION_LIMIT = 5000
SUMMARY = "claims"  # <runs_dir>/claims.md and .json


def setting_args(name: str, runs_dir: pathlib.Path) -> list[str]:
    """The `python -m a2hlib.batch` command line of one setting."""
    dataset, config = SETTINGS[name]
    return ["--datasets", dataset, "--models", *MODELS, "--bits", *map(str, BITS), "--seeds", *map(str, SEEDS),
            "--config", config, "--analyses", "--analysis-bits", str(ANALYSIS_BITS), "--results",
            "--runs-dir", str(runs_dir / name), "--param", f"shortcut_config={config}"]


def fashion_args(runs_dir: pathlib.Path) -> list[str]:
    dataset, config, overrides = FASHION
    return ["--datasets", dataset, "--models", *MODELS, "--bits", *map(str, BITS), "--seeds", *map(str, SEEDS),
            "--config", config, "--prepare", "--results", "--runs-dir", str(runs_dir / "fashion_mnist"),
            "--param", f"overrides={overrides!r}", "--param", f"limit={FASHION_LIMIT}"]


def plans(runs_dir: pathlib.Path, workers: int, notebooks_dir: pathlib.Path) -> list[tuple[str, list[batch.Step], argparse.Namespace]]:
    """(name, steps, batch arguments) of every grid of the campaign; `workers` > 1: that many
    training workers, and 04/05 train their missing runs in as many processes."""
    grids = [(n, setting_args(n, runs_dir) + (["--param", f"workers={workers}"] if workers > 1 else []))
             for n in SETTINGS] + [("fashion_mnist", fashion_args(runs_dir))]
    out = []
    for name, argv in grids:
        args = batch.build_parser().parse_args(argv + (["--devices", ",".join(["cpu"] * workers)] if workers > 1 else []))
        out.append((name, batch.plan(args, batch.parse_params(args.param), notebooks_dir), args))
    return out


# --------------------------------------------------------------------------------------- summary
def _runs_frame(folder: pathlib.Path) -> pd.DataFrame:
    from a2hlib.results import collect_results
    return collect_results(batch.effective_runs_dir(folder))


def retrieval_table(frames: dict[str, pd.DataFrame], metric: str = "asym_map_all_stable") -> pd.DataFrame:
    """setting × model rows, one column per code length: mAP@all % "mean ± sd" over seeds, and for
    each A²-Net variant the verdict of "higher than ADSH" per code length."""
    rows = []
    for setting, frame in frames.items():
        if frame.empty:
            continue
        for model in MODELS:
            row: dict[str, Any] = {"setting": setting, "model": model}
            for bits in BITS:
                values = frame[(frame.model == model) & (frame.bits == bits)][metric]
                row[f"{bits} bits"] = mean_sd(values, digits=1, scale=100) if len(values) else "–"
                if model != "adsh" and len(values):
                    control = frame[(frame.model == "adsh") & (frame.bits == bits)][metric]
                    row[f"vs ADSH {bits}"] = verdict(compare(values, control), "higher")
            rows.append(row)
    return pd.DataFrame(rows)


def tie_gap_table(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """setting × protocol rows, one column per code length: how many mAP points the same codes lose
    when ties in Hamming distance are averaged (`ties="aware"`) instead of broken by database index
    (`ties="stable"`), mean and largest over models and seeds (03_retrieval_evaluation)."""
    rows = []
    for setting, frame in frames.items():
        if frame.empty:
            continue
        for protocol, prefix in (("asymmetric", "asym"), ("symmetric", "symm")):
            row: dict[str, Any] = {"setting": setting, "protocol": protocol}
            for bits in BITS:
                sub = frame[frame.bits == bits]
                gap = 100 * (sub[f"{prefix}_map_all_stable"] - sub[f"{prefix}_map_all_aware"])
                row[f"{bits} bits"] = f"{gap.mean():.1f} (max {gap.max():.1f})" if len(gap) else "–"
            rows.append(row)
    return pd.DataFrame(rows)


def simplicity_table(analyses: dict[str, dict]) -> pd.DataFrame:
    """setting × model: mAP with the cue, without it, the drop, and the share of IG attribution on
    the cue (mean ± sd over seeds); the verdicts of A²-Net++ against each model."""
    rows = []
    for setting, record in analyses.items():
        runs = pd.DataFrame(record["shortcut"]["runs"])
        share = "shortcut_share_ig"  # the method the notebook's statements use
        for model in MODELS:
            sub = runs[runs.model == model]
            row = {"setting": setting, "model": model, "mAP cue present": mean_sd(sub.map_same),
                   "mAP cue absent": mean_sd(sub.map_absent), "mAP drop": mean_sd(sub.map_drop),
                   "IG share on cue": mean_sd(sub[share])}
            if model != "a2netpp":
                row["a2netpp lower drop"] = verdict(compare(runs[runs.model == "a2netpp"].map_drop, sub.map_drop), "lower")
                row["a2netpp lower share"] = verdict(compare(runs[runs.model == "a2netpp"][share], sub[share]), "lower")
            rows.append(row)
    return pd.DataFrame(rows)


def alignment_table(analyses: dict[str, dict]) -> pd.DataFrame:
    """setting × model: best-attribute MI above chance (marginal) and above the class-shuffle level,
    mean ± sd over seeds, and the verdicts of each A²-Net variant against ADSH."""
    rows = []
    for setting, record in analyses.items():
        summaries = pd.DataFrame(record["summaries"])
        scopes = {"marginal, all": "MI above chance",
                  "class shuffle, class-determined": "MI above class-shuffle level"}
        for model in MODELS:
            row: dict[str, Any] = {"setting": setting, "model": model}
            for scope, label in scopes.items():
                values = summaries[(summaries.scope == scope) & (summaries.model == model)]["mi_best_above_chance"]
                row[label] = mean_sd(values, digits=4)
                if model != "adsh":
                    control = summaries[(summaries.scope == scope) & (summaries.model == "adsh")]["mi_best_above_chance"]
                    row[f"{label}: vs ADSH"] = verdict(compare(values, control), "higher")
            within = summaries[(summaries.scope == "within class, all") & (summaries.model == model)]
            row["within-class attributes captured"] = (f"{int(within.attributes_captured.sum())} of "
                                                       f"{int(within.attributes.sum())}")
            rows.append(row)
    return pd.DataFrame(rows)


def summarise(runs_dir: pathlib.Path) -> dict[str, Any]:
    """Read every grid's results and write the summary (`SUMMARY`.md and .json) into `runs_dir`."""
    frames = {name: _runs_frame(runs_dir / name) for name in SETTINGS}
    fashion = _runs_frame(runs_dir / "fashion_mnist")
    bias, bits, missing = {}, {}, []
    for name, (dataset, _) in SETTINGS.items():
        folder = batch.effective_runs_dir(runs_dir / name) / dataset / "analysis"
        for store, path in ((bias, folder / "simplicity_bias.json"),
                            (bits, folder / f"bit_attributes_{ANALYSIS_BITS}b.json")):
            if path.exists():
                store[name] = read_json(path)
            else:
                missing.append(str(path))
    tables = {"retrieval": retrieval_table(frames), "fashion_mnist": retrieval_table({"scratch": fashion}),
              "ties": tie_gap_table(frames), "simplicity": simplicity_table(bias), "alignment": alignment_table(bits)}
    statements = {name: {"simplicity": bias[name]["statements"] if name in bias else [],
                         "alignment": bits[name]["statements"] if name in bits else []}
                  for name in SETTINGS}
    record = {"tables": {k: v.to_dict("records") for k, v in tables.items()}, "statements": statements,
              "settings": {k: {"dataset": d, "config": c} for k, (d, c) in SETTINGS.items()},
              "seeds": SEEDS, "bits": BITS, "analysis_bits": ANALYSIS_BITS, "not_finished": missing}
    write_json(runs_dir / f"{SUMMARY}.json", record)
    titles = {"retrieval": "Retrieval, mAP@all % (asymmetric, stable ties), built-in dataset",
              "fashion_mnist": f"Retrieval on Fashion-MNIST ({FASHION_LIMIT:,} database and query images), mAP@all %",
              "ties": "mAP@all points lost to the tie rule (stable minus aware), mean (max) over models and seeds",
              "simplicity": "Simplicity bias: planted shortcut (12 bits)",
              "alignment": f"Bits ↔ attributes ({ANALYSIS_BITS} bits, query images)"}
    text = "\n\n".join(f"## {titles[k]}\n\n{v.fillna('').to_markdown(index=False)}" for k, v in tables.items()
                         if not v.empty)
    text += "\n\n" + "\n\n".join(f"## Statements, {name}\n\n" + "\n".join(f"- {s}" for part in st.values() for s in part)
                                 for name, st in statements.items())
    if missing:
        text += "\n\nNot finished yet (run `make claims` again to continue):\n" + "\n".join(f"- {m}" for m in missing)
    atomic_write(runs_dir / f"{SUMMARY}.md", lambda f: f.write((text + "\n").encode()))
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a2hlib.claims", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs/claims")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the summary from finished grids")
    args = parser.parse_args(argv)
    runs_dir = pathlib.Path(args.runs_dir)
    notebooks_dir = ROOT / "notebooks"
    start = time.perf_counter()
    status = 0
    if not args.summary_only:
        for name, steps, grid_args in plans(runs_dir, batch.cpu_workers(), notebooks_dir):
            print(f"== {name}", flush=True)
            status |= batch.run(steps, grid_args, notebooks_dir)
    summarise(runs_dir)
    print((runs_dir / f"{SUMMARY}.md").read_text())
    print(f"claims finished in {(time.perf_counter() - start) / 60:.1f} min")
    return status


if __name__ == "__main__":
    sys.exit(main())
