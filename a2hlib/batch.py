"""Run the workbook's notebooks over a grid with papermill: `python -m a2hlib.batch --help`.

For every dataset × model × code length × seed, `02_training` then `03_retrieval_evaluation`
execute into their own run folder (`runs/<dataset>/<model>-<bits>b-s<seed>/`, git-ignored) with
the executed notebooks and `metrics.json`. `--analyses` adds the per-dataset notebooks
(`04_simplicity_bias`, `05_bit_attributes`), `--prepare` runs `01_data_preparation` first and
`--results` aggregates everything with `06_results`. A failing point is recorded (notebook path and
error) and the others go on; the exit status is 1 if any point failed, after a summary table.
A finished point (its output notebooks and metrics.json exist) is skipped unless `--force`.
Unknown `--param` names are refused before anything runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import logging
import os
import pathlib
import sys
import time
from typing import Any, Sequence

from a2hlib.notebook import smoke_mode, smoke_paths
from a2hlib.runs import analysis_dir, run_dir

log = logging.getLogger(__name__)
NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
TRAIN, EVALUATE = "02_training", "03_retrieval_evaluation"
PREPARE, BIAS, BITS, RESULTS = "01_data_preparation", "04_simplicity_bias", "05_bit_attributes", "06_results"


@dataclasses.dataclass
class Step:
    """One notebook execution."""

    notebook: str                     # name without .ipynb
    output: pathlib.Path              # executed notebook
    parameters: dict[str, Any]
    done_marker: pathlib.Path         # exists when the step has finished
    point: str                        # grid point label for the summary
    status: str = "pending"           # pending | done | skipped | failed | blocked
    error: str = ""
    seconds: float = 0.0


def _parse_value(text: str) -> Any:
    import ast
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"error: --param {pair!r} must look like name=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def notebook_parameters(notebook: pathlib.Path) -> dict[str, Any]:
    """The notebook's `parameters` cell, as papermill sees it (name → info)."""
    import papermill
    return papermill.inspect_notebook(str(notebook))


@functools.lru_cache(maxsize=None)
def declared(notebooks_dir: pathlib.Path, name: str) -> frozenset[str]:
    """Names in the `parameters` cell of notebooks_dir/name.ipynb."""
    path = notebooks_dir / f"{name}.ipynb"
    if not path.exists():
        raise SystemExit(f"error: notebook {path} does not exist")
    return frozenset(notebook_parameters(path))


def check_parameters(steps: list[Step], notebooks_dir: pathlib.Path) -> None:
    """Refuse any parameter a notebook does not declare, before anything runs."""
    for step in steps:
        known = declared(notebooks_dir, step.notebook)
        unknown = sorted(set(step.parameters) - known)
        if unknown:
            path = notebooks_dir / f"{step.notebook}.ipynb"
            raise SystemExit(f"error: {path.name} has no parameter(s) {unknown}; it declares "
                             f"{sorted(known)} (see `papermill --help-notebook {path}`)")


def plan(args: argparse.Namespace, extra: dict[str, Any], notebooks_dir: pathlib.Path) -> list[Step]:
    """The ordered list of notebook executions for a command line."""
    given = pathlib.Path(args.runs_dir).resolve()
    # notebooks in smoke mode (CI set) write under <runs>/smoke: look for their outputs there
    runs = pathlib.Path(smoke_paths(str(given), "", smoke_mode())[0])
    steps: list[Step] = []
    common = {"runs_dir": str(given), **({"config": args.config} if args.config else {})}
    # a --param applies to every notebook that declares it (checked by name below)
    for dataset in args.datasets:
        data = {"dataset": dataset}
        if args.prepare:
            out = runs / dataset / "_notebooks" / f"{PREPARE}.ipynb"
            steps.append(Step(PREPARE, out, {**data, "runs_dir": str(given)}, out, f"{dataset} prepare"))
        for model, bits, seed in itertools.product(args.models, args.bits, args.seeds):
            folder = run_dir(runs, dataset, model, bits, seed)
            params = {**common, **data, "model": model, "code_length": bits, "seed": seed}
            label = f"{dataset} {model} {bits}b s{seed}"
            steps.append(Step(TRAIN, folder / f"{TRAIN}.ipynb", params, folder / "metrics.json", label))
            steps.append(Step(EVALUATE, folder / f"{EVALUATE}.ipynb", {k: v for k, v in params.items() if k != "config"},
                              folder / "evaluation.json", label))
        if args.analyses:
            for name, marker in ((BIAS, "simplicity_bias.json"), (BITS, f"bit_attributes_{max(args.bits)}b.json")):
                folder = analysis_dir(runs, dataset)
                params = {**common, **data, "code_length": max(args.bits)}
                steps.append(Step(name, folder / f"{name}.ipynb", params, folder / marker, f"{dataset} {name[3:]}"))
    if args.results:
        steps.append(Step(RESULTS, runs / f"{RESULTS}.ipynb", {"runs_dir": str(given)}, runs / "results.csv", "results"))
    unknown = sorted(k for k in extra if not any(k in declared(notebooks_dir, s.notebook) for s in steps))
    if unknown:
        raise SystemExit(f"error: no notebook in this grid declares parameter(s) {unknown}")
    for step in steps:
        step.parameters.update({k: v for k, v in extra.items() if k in declared(notebooks_dir, step.notebook)})
    return steps


def execute(steps: list[Step], notebooks_dir: pathlib.Path, force: bool, timeout: int, kernel: str,
            progress: bool = True) -> None:
    import papermill
    from tqdm.auto import tqdm

    failed_points: set[str] = set()
    for step in tqdm(steps, desc="grid", disable=not progress):
        if step.point in failed_points:
            step.status, step.error = "blocked", "an earlier notebook of this point failed"
            continue
        if not force and step.done_marker.exists() and step.output.exists():
            step.status = "skipped"
            continue
        step.output.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebooks_dir / f"{step.notebook}.ipynb"), str(step.output), parameters=step.parameters,
                kernel_name=kernel, cwd=str(notebooks_dir), execution_timeout=timeout, progress_bar=False)
            step.status = "done"
        except papermill.PapermillExecutionError as err:
            step.status, step.error = "failed", f"{err.ename}: {err.evalue}"
            failed_points.add(step.point)
        except Exception as err:  # kernel died, timeout, bad notebook
            step.status, step.error = "failed", f"{type(err).__name__}: {err}"
            failed_points.add(step.point)
        step.seconds = time.perf_counter() - start


def summary(steps: list[Step]) -> str:
    rows = [("point", "notebook", "status", "seconds", "output / error")]
    for s in steps:
        rows.append((s.point, s.notebook, s.status, f"{s.seconds:.0f}",
                     f"{s.output}" + (f"  {s.error.splitlines()[0][:200]}" if s.error else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m a2hlib.batch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["synthetic"], help="dataset names (prepared under RUNS/data/<name> "
                   "or passed with --param data_dir=...)")
    p.add_argument("--models", nargs="+", default=["adsh", "a2net", "a2netpp"], choices=["adsh", "a2net", "a2netpp"])
    p.add_argument("--bits", nargs="+", type=int, default=[12, 24], help="code lengths")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--config", default=None, help="named training config (cpu, paper, smoke); default: the notebook's")
    p.add_argument("--runs-dir", default="runs", help="output root (git-ignored)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="extra notebook parameter, given to every notebook that declares it")
    p.add_argument("--prepare", action="store_true", help="run 01_data_preparation first")
    p.add_argument("--analyses", action="store_true", help="also run 04_simplicity_bias and 05_bit_attributes")
    p.add_argument("--results", action="store_true", help="aggregate with 06_results at the end")
    p.add_argument("--force", action="store_true", help="re-execute finished points")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per notebook cell")
    p.add_argument("--kernel", default="python3")
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    notebooks_dir = pathlib.Path(args.notebooks_dir).resolve()
    steps = plan(args, parse_params(args.param), notebooks_dir)
    check_parameters(steps, notebooks_dir)
    execute(steps, notebooks_dir, args.force, args.timeout, args.kernel)
    print(summary(steps))
    failed = [s for s in steps if s.status == "failed"]
    print(f"{sum(s.status == 'done' for s in steps)} done, {sum(s.status == 'skipped' for s in steps)} skipped, "
          f"{len(failed)} failed, {sum(s.status == 'blocked' for s in steps)} blocked")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
