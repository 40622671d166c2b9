"""Run folders: where a training run keeps its checkpoint, codes and `metrics.json`.

One run = one (dataset, model, code length, seed[, tag]) under a runs folder:
`runs/<dataset>/<model>-<bits>b-s<seed>[-<tag>]/`. Notebooks 02–06 and `a2hlib.batch` share these
helpers, so a notebook can train what is missing and reuse what is finished
(`notebooks/02_training.ipynb` explains the layout).
"""
from __future__ import annotations

import logging
import os
import pathlib
import platform
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

import torch

from a2hlib.checkpoints import load_checkpoint, model_from_state
from a2hlib.fileio import read_json, save_array, write_json  # noqa: F401  (used by the notebooks)
from a2hlib.fileio import remove_stale_temporaries
from a2hlib.training import TrainConfig, TrainState, train

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
PACKAGES = ("torch", "torchvision", "numpy", "captum", "a2hlib")


def run_name(model: str, bits: int, seed: int, tag: str = "") -> str:
    return f"{model}-{bits}b-s{seed}" + (f"-{tag}" if tag else "")


def run_dir(runs_dir: str | os.PathLike, dataset: str, model: str, bits: int, seed: int, tag: str = "") -> pathlib.Path:
    return pathlib.Path(runs_dir) / dataset / run_name(model, bits, seed, tag)


def git_revision() -> str | None:
    """The workbook's git commit (with '-dirty' if files changed), or None outside a checkout."""
    here = pathlib.Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(device: str | torch.device | None = None) -> dict[str, Any]:
    """Git revision, package versions, Python, platform and device, for metrics.json."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    dev = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    info = {"git_revision": git_revision(), "versions": versions, "python": sys.version.split()[0],
            "platform": platform.platform(), "device": dev, "torch_threads": torch.get_num_threads(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if dev.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def analysis_dir(runs_dir: str | os.PathLike, dataset: str) -> pathlib.Path:
    """`<runs_dir>/<dataset>/analysis/`: results of the per-dataset analyses (04, 05)."""
    return pathlib.Path(runs_dir) / dataset / "analysis"


def _finished_checkpoint(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The run's checkpoint dict if it holds every outer iteration of its config, else None."""
    path = pathlib.Path(directory) / CHECKPOINT
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    return ckpt if ckpt["iteration"] >= ckpt["config"]["outer_iterations"] else None


def is_complete(directory: str | os.PathLike) -> bool:
    """True when the run's checkpoint holds every outer iteration of its config."""
    return _finished_checkpoint(directory) is not None


def train_or_resume(config: TrainConfig, database, directory: str | os.PathLike, select=None,
                    progress: bool = True) -> TrainState:
    """Train into `directory` (checkpoint after every outer iteration; resumes if one exists).
    Temporary files that killed writes left in `directory` are removed first."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_temporaries(directory)
    if removed:
        log.warning("removed %d temporary file(s) of interrupted writes in %s", len(removed), directory)
    return train(config, database, checkpoint=directory / CHECKPOINT, select=select, progress=progress)


def load_run(directory: str | os.PathLike, best: bool = False):
    """(model in eval mode, database codes B, config) of a finished run."""
    ckpt = _finished_checkpoint(directory)  # read once: paper-scale checkpoints are large
    if ckpt is None:
        raise FileNotFoundError(f"{pathlib.Path(directory) / CHECKPOINT} is missing or unfinished; train it "
                                "with notebooks/02_training.ipynb or `python -m a2hlib.batch`")
    return model_from_state(ckpt, best=best)


# ------------------------------------------------------------------------------ data locations
BUILTIN = "synthetic"


def data_dir_for(dataset: str, runs_dir: str | os.PathLike, data_dir: str | os.PathLike = "") -> pathlib.Path:
    """Where a prepared dataset lives: `data_dir` if given, else `<runs_dir>/data/<dataset>`."""
    return pathlib.Path(data_dir) if data_dir else pathlib.Path(runs_dir) / "data" / dataset


def open_dataset(dataset: str, runs_dir: str | os.PathLike, data_dir: str | os.PathLike = "",
                 smoke: bool = False):
    """The prepared dataset (`a2hlib.manifest.PreparedDataset`); the built-in one is generated on
    first use (preset `smoke` when `smoke`), every other dataset must be prepared with data_prep."""
    from a2hlib import manifest, synthetic
    folder = data_dir_for(dataset, runs_dir, data_dir)
    if not (folder / "dataset.json").exists():
        if dataset != BUILTIN:
            raise FileNotFoundError(f"{folder} holds no prepared dataset; prepare it first: "
                                    f"python -m data_prep {dataset} --root RAW --out {folder}")
        log.info("generating the built-in dataset into %s", folder)
        synthetic.write_to_disk(synthetic.load("smoke" if smoke else "default"), folder)
    return manifest.read_dataset(folder)


def smoke_mode(smoke_test: bool = False) -> bool:
    """A notebook's smoke switch (pyro's `smoke_test`): on when asked or when CI is set."""
    return bool(smoke_test) or os.environ.get("CI", "").lower() not in ("", "0", "false")


def smoke_paths(runs_dir: str, figures_dir: str, smoke: bool) -> tuple[str, str]:
    """Smoke runs write under `<runs_dir>/smoke` (figures too), never over real runs or figures/."""
    if not smoke:
        return runs_dir, figures_dir
    runs_dir = os.path.join(runs_dir, "smoke")
    return runs_dir, (os.path.join(runs_dir, "figures") if figures_dir else "")


def notebook_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """The plain-valued names defined so far in a notebook (call it right after the parameters
    cell, nanoGPT's `config_keys` idea): what metrics.json records as the run's parameters."""
    plain = (int, float, bool, str, type(None), list, dict, tuple)
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in ("In", "Out") and isinstance(v, plain)}


def ensure_run(runs_dir: str | os.PathLike, dataset: str, model: str, code_length: int, seed: int,
               config: str = "cpu", data_dir: str | os.PathLike = "", smoke: bool = False, tag: str = "",
               progress: bool = False, **overrides) -> pathlib.Path:
    """Train a run if it is not finished (what 02_training does, without its plots); its folder.

    Analysis notebooks (03 in smoke mode, 04, 05) call this so that they run on their own; runs
    already trained by 02 or `a2hlib.batch` are reused as they are.
    """
    from a2hlib.datasets import build_dataset
    from a2hlib.training import get_config
    folder = run_dir(runs_dir, dataset, model, code_length, seed, tag)
    if not is_complete(folder):
        prepared = open_dataset(dataset, runs_dir, data_dir, smoke)
        cfg = get_config("smoke" if smoke else config, model=model, code_length=code_length, seed=seed, **overrides)
        database = build_dataset(prepared, "database", cfg.image_size, train=True, scale=cfg.crop_scale, cache=True)
        train_or_resume(cfg, database, folder, progress=progress)
    return folder


# ------------------------------------------------------------------------------------ results
def collect_results(runs_dir: str | os.PathLike) -> "pd.DataFrame":
    """One row per finished run under `runs_dir` (from metrics.json and evaluation.json)."""
    import pandas as pd
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


def results_table(results: "pd.DataFrame", metric: str = "asym_map_all_stable") -> "pd.DataFrame":
    """dataset × model rows, one column per code length: mean ± std over seeds (in %)."""
    import pandas as pd
    if results.empty:
        return pd.DataFrame()
    grouped = results.groupby(["dataset", "model", "bits"])[metric].agg(["mean", "std", "count"]).reset_index()

    def cell(r):
        text = f"{100 * r['mean']:.1f}"
        return text + (f" ± {100 * r['std']:.1f}" if r["count"] > 1 else "")

    grouped["cell"] = grouped.apply(cell, axis=1)
    table = grouped.pivot(index=["dataset", "model"], columns="bits", values="cell")
    table.columns = [f"{b} bits" for b in table.columns]
    return table
