"""The main job (`make demo`): every notebook on the built-in dataset, figures, and the results table.

    python -m a2hlib.demo [--runs-dir runs] [--figures-only] [--devices 0,1 | --executor slurm ...]

Steps (all through `a2hlib.batch`, papermill, cwd = notebooks/): prepare the synthetic birds (01);
train and evaluate adsh, a2net, a2netpp at 12 and 24 bits, seeds 0, 1 and 2, with the `cpu`
config (02, 03); simplicity-bias and bit↔attribute analyses (04, 05); the results table, mean ± sd
over the seeds (06); the overview (00) on the trained a2netpp. Gallery figures go to `figures/`.
Finished steps are skipped; `--figures-only` (`make figures`) re-executes every notebook, which
retrains nothing that is finished (checkpoints are reused) and so only redraws the figures.

The execution options are `a2hlib.batch`'s (`--devices`, `--executor`, `--timeout`, …). Without
them, on a machine without CUDA the training points run in one worker per CPU core (at most
`a2hlib.batch.CPU_WORKERS`, one thread each), and 04 and 05 train their missing runs in as many
processes.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

from a2hlib import batch

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIGURES = ROOT / "figures"
MODELS, BITS, SEEDS, DATASET, CONFIG = ("adsh", "a2net", "a2netpp"), (12, 24), (0, 1, 2), "synthetic", "cpu"
OVERVIEW = "00_overview"


def demo_steps(runs_dir: pathlib.Path, notebooks_dir: pathlib.Path, workers: int = 1) -> list[batch.Step]:
    """The batch plan of the demo, with gallery figures directed to figures/; `workers`: processes
    with which 04 and 05 train missing runs."""
    args = batch.build_parser().parse_args(
        ["--datasets", DATASET, "--models", *MODELS, "--bits", *map(str, BITS), "--seeds", *map(str, SEEDS),
         "--config", CONFIG, "--prepare", "--analyses", "--results", "--runs-dir", str(runs_dir)])
    steps = batch.plan(args, {"workers": workers} if workers > 1 else {}, notebooks_dir)
    showcase = None
    for step in steps:
        per_run = step.notebook in (batch.TRAIN, batch.EVALUATE)
        is_showcase = (step.parameters.get("model") == "a2netpp" and step.parameters.get("code_length") == max(BITS)
                       and step.parameters.get("seed") == SEEDS[0])
        if not per_run or is_showcase:
            step.parameters["figures_dir"] = str(FIGURES)
        if per_run and is_showcase:
            showcase = step.output.parent
    out = steps[0].output.parent / f"{OVERVIEW}.ipynb"
    steps.append(batch.Step(OVERVIEW, out, {"run_dir": str(showcase), "code_length": max(BITS),
                                            "figures_dir": str(FIGURES)}, out, "overview", stage=batch.STAGE_REPORT))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a2hlib.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--figures-only", action="store_true", help="re-execute every notebook (no retraining)")
    batch.add_execution_options(parser)
    args = parser.parse_args(argv)
    batch.check_execution_options(args, parser)
    runs_dir = pathlib.Path(args.runs_dir)
    notebooks_dir = ROOT / "notebooks"
    workers = batch.cpu_workers() if args.executor == "loop" and args.devices is None else 1
    if workers > 1:
        args.devices = ["cpu"] * workers
    start = time.perf_counter()
    status = batch.run(demo_steps(runs_dir, notebooks_dir, workers), args, notebooks_dir, force=args.figures_only)
    table = runs_dir / "results.md"
    if table.exists():
        print("\n" + table.read_text())
    print(f"demo finished in {(time.perf_counter() - start) / 60:.1f} min; figures in {FIGURES}")
    return status


if __name__ == "__main__":
    sys.exit(main())
