"""Run folders: where a training run keeps its checkpoint, codes and `metrics.json`.

One run = one (dataset, model, code length, seed[, tag]) under a runs folder:
`runs/<dataset>/<model>-<bits>b-s<seed>[-<tag>]/`. Notebooks 02–06 and `a2hlib.batch` share these
helpers, so a notebook can train what is missing (`ensure_run`) and reuse what is finished
(`notebooks/02_training.ipynb` explains the layout). Prepared datasets live under
`runs/data/<dataset>/` (`open_dataset`); `provenance` is what every results file records.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import platform
import subprocess
import sys
import time
from importlib import metadata
from typing import Any, Sequence

import torch

from a2hlib.checkpoints import load_checkpoint, model_from_state
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
# built-in datasets: name → preset of `a2hlib.synthetic` (the same birds; `synthetic128` is rendered
# at 128 px for the pretrained backbone, whose features need more pixels than the 64-px default)
BUILTINS = {"synthetic": "default", "synthetic128": "large"}


def data_dir_for(dataset: str, runs_dir: str | os.PathLike, data_dir: str | os.PathLike = "") -> pathlib.Path:
    """Where a prepared dataset lives: `data_dir` if given, else `<runs_dir>/data/<dataset>`."""
    return pathlib.Path(data_dir) if data_dir else pathlib.Path(runs_dir) / "data" / dataset


def open_dataset(dataset: str, runs_dir: str | os.PathLike, data_dir: str | os.PathLike = "",
                 smoke: bool = False):
    """The prepared dataset (`a2hlib.manifest.PreparedDataset`); a built-in one (`BUILTINS`) is
    generated on first use (preset `smoke` when `smoke`), every other dataset must be prepared with
    data_prep."""
    from a2hlib import manifest, synthetic
    folder = data_dir_for(dataset, runs_dir, data_dir)
    if not (folder / "dataset.json").exists():
        if dataset not in BUILTINS:
            raise FileNotFoundError(f"{folder} holds no prepared dataset; prepare it first: "
                                    f"python -m data_prep {dataset} --root RAW --out {folder}")
        log.info("generating the built-in dataset %s into %s", dataset, folder)
        synthetic.write_to_disk(synthetic.load("smoke" if smoke else BUILTINS[dataset]), folder)
    return manifest.read_dataset(folder)


def ensure_run(runs_dir: str | os.PathLike, dataset: str, model: str, code_length: int, seed: int, *,
               config: str = "cpu", overrides: dict[str, Any] | None = None, data_dir: str | os.PathLike = "",
               smoke: bool = False, tag: str = "", database=None, progress: bool = False) -> pathlib.Path:
    """Train the run if it is not finished, and return its folder: the one "train if missing".

    The run is `run_dir(runs_dir, dataset, model, code_length, seed, tag)`, trained with the named
    `config` (`smoke` in smoke mode) and `overrides`, on `database` if given (e.g. the planted-
    shortcut data of 04) or else on the prepared dataset's database split. A finished run is
    reused as it is; an unfinished one resumes from its checkpoint. Used by 03 (smoke mode),
    04 and 05, so each runs on its own; `notebooks/02_training.ipynb` shows the steps.
    """
    from a2hlib.datasets import build_dataset
    from a2hlib.training import get_config
    folder = run_dir(runs_dir, dataset, model, code_length, seed, tag)
    if not is_complete(folder):
        cfg = get_config("smoke" if smoke else config, model=model, code_length=code_length, seed=seed,
                         **(overrides or {}))
        if database is None:
            prepared = open_dataset(dataset, runs_dir, data_dir, smoke)
            database = build_dataset(prepared, "database", cfg.image_size, train=True, scale=cfg.crop_scale,
                                     cache=True)
        train_or_resume(cfg, database, folder, progress=progress)
    return folder


def demo_run(runs_dir: str | os.PathLike, code_length: int | None = None, *, smoke: bool = False,
             model: str = "a2netpp", seed: int = 0, progress: bool = False) -> pathlib.Path:
    """The folder of the demo's run of `model` (`a2hlib.demo`: its dataset, the `cpu` config, seed 0),
    trained first when missing or unfinished (`ensure_run`; the `smoke` config in smoke mode).

    code_length None: the demo's showcase, its longest code (`max(demo.BITS)`). What
    `notebooks/00_overview.ipynb` explains when it is given no run folder."""
    from a2hlib import demo
    bits = max(demo.BITS) if code_length is None else code_length
    return ensure_run(runs_dir, demo.DATASET, model, bits, seed, config="cpu", smoke=smoke, progress=progress)


@dataclasses.dataclass
class TrainedRun:
    """A finished run, loaded: the model (eval mode, on its device), database codes B, its config
    and folder."""

    model: Any
    B: torch.Tensor
    config: TrainConfig
    folder: pathlib.Path


def trained_runs(runs_dir: str | os.PathLike, dataset: str, models: Sequence[str], seeds: Sequence[int],
                 code_length: int, *, config: str = "cpu", overrides: dict[str, Any] | None = None,
                 data_dir: str | os.PathLike = "", smoke: bool = False, tag: str = "", database=None,
                 device: str | torch.device = "cpu", workers: int = 1) -> dict[tuple[str, int], TrainedRun]:
    """Every (model, seed) run at `code_length`, trained first where missing (`ensure_run`, which
    takes the other arguments), loaded (`load_run`): what the analyses of 04 and 05 compare.

    `workers` > 1 trains the missing runs in that many processes at once, each with one CPU thread
    (on a CPU machine with that many cores; on a GPU leave it at 1)."""
    keys = [(model, seed) for model in models for seed in seeds]
    train_options = dict(config=config, overrides=overrides, data_dir=data_dir, smoke=smoke, tag=tag,
                         database=database)
    missing = [k for k in keys if not is_complete(run_dir(runs_dir, dataset, k[0], code_length, k[1], tag))]
    if workers > 1 and len(missing) > 1:
        if database is None:  # prepare (generate) the data once, before the workers need it
            open_dataset(dataset, runs_dir, data_dir, smoke)
        import concurrent.futures
        import multiprocessing
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(missing)),
                                                    mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [pool.submit(_train_in_worker, runs_dir, dataset, model, code_length, seed, train_options)
                    for model, seed in missing]
            for job in jobs:
                job.result()
    out = {}
    for model, seed in keys:
        folder = ensure_run(runs_dir, dataset, model, code_length, seed, **train_options)
        net, B, cfg = load_run(folder)
        out[model, seed] = TrainedRun(net.to(device), B, cfg, folder)
    return out


def _train_in_worker(runs_dir, dataset, model, code_length, seed, options) -> pathlib.Path:
    from a2hlib.notebook import set_threads
    set_threads(1)
    return ensure_run(runs_dir, dataset, model, code_length, seed, **options)
