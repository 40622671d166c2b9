"""Run the workbook's notebooks over a grid with papermill: `python -m a2hlib.batch --help`.

For every dataset × model × code length × seed, `02_training` then `03_retrieval_evaluation`
execute into their own run folder (`runs/<dataset>/<model>-<bits>b-s<seed>/`, git-ignored) with
the executed notebooks and `metrics.json`. `--analyses` adds the per-dataset notebooks
(`04_simplicity_bias`, `05_bit_attributes`), `--prepare` runs `01_data_preparation` first and
`--results` aggregates everything with `06_results`. A failing point is recorded (notebook path and
error) and the others go on; the exit status is 1 if any point failed, after a summary table.
A finished point (its output notebooks and done files exist) is skipped unless `--force`.
The grid's own options and unknown `--param` names are refused before any kernel starts.

Where points run (`--executor`): `loop` (default) runs them in this process, one after the other,
or with `--devices 0,1,…` in one worker process per device (`CUDA_VISIBLE_DEVICES` set to it;
`cpu` hides every GPU), each worker taking the next point when it is free. `slurm` submits every
point as a SLURM job (an array per stage) through submitit; `local` runs the same submitit path as
processes on this machine. The stages run in order: data preparation, then the training points (in
parallel), then the analyses and the results table (one at a time: they share run folders).

Each point runs under a lock (`.<notebook>.lock` in its folder; an OS lock that dies with its
process): a second runner on the same runs folder skips a point another one holds (status
`locked`, with the holder's host and pid) and waits for it before any later stage. The worker
records its step statuses in `<notebook>.status.json` beside the lock.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import itertools
import json
import logging
import multiprocessing
import os
import pathlib
import re
import socket
import sys
import time
from typing import Any, Callable, Sequence

from a2hlib.fileio import read_json, write_json
from a2hlib.notebook import RULES, ParameterError, check, declared_types, each, smoke_mode, smoke_paths

# a2hlib.runs (and so torch) is imported where it is used: workers and jobs import this module, and
# only the notebooks they start need torch.

log = logging.getLogger(__name__)
NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
TRAIN, EVALUATE = "02_training", "03_retrieval_evaluation"
PREPARE, BIAS, BITS, RESULTS = "01_data_preparation", "04_simplicity_bias", "05_bit_attributes", "06_results"
# Stages run in this order; points of a parallel stage run side by side, the others one at a time
# (analyses train missing runs into folders other points share).
STAGE_PREPARE, STAGE_RUNS, STAGE_ANALYSES, STAGE_REPORT = range(4)
PARALLEL_STAGES = frozenset({STAGE_PREPARE, STAGE_RUNS})
CPU_WORKERS = 2  # one-thread workers on a machine without CUDA (the build machine has 2 cores)
EXECUTORS = ("loop", "local", "slurm")
BLOCKED = "an earlier notebook of this point failed"


def cpu_workers() -> int:
    """How many one-thread workers the demo and the claims campaign use here: 1 with CUDA (one
    GPU), else up to `CPU_WORKERS`, at most the cores."""
    import torch
    return 1 if torch.cuda.is_available() else max(1, min(CPU_WORKERS, os.cpu_count() or 1))


@dataclasses.dataclass
class Step:
    """One notebook execution."""

    notebook: str                     # name without .ipynb
    output: pathlib.Path              # executed notebook
    parameters: dict[str, Any]
    done_marker: pathlib.Path         # exists when the step has finished
    point: str                        # grid point label for the summary
    status: str = "pending"           # pending | done | skipped | failed | blocked | locked
    error: str = ""
    seconds: float = 0.0
    stage: int = STAGE_RUNS

    def finished(self) -> bool:
        return self.done_marker.exists() and self.output.exists()


@dataclasses.dataclass
class Point:
    """The steps of one grid point: they run in order, in one worker, under one lock."""

    label: str
    steps: list[Step]

    @property
    def folder(self) -> pathlib.Path:
        return self.steps[0].output.parent

    @property
    def lock_path(self) -> pathlib.Path:
        return self.folder / f".{self.steps[0].notebook}.lock"

    @property
    def status_path(self) -> pathlib.Path:
        return self.folder / f"{self.steps[0].notebook}.status.json"


def points_of(steps: list[Step]) -> list[Point]:
    """The steps grouped by point label, in plan order."""
    points: dict[str, Point] = {}
    for step in steps:
        points.setdefault(step.point, Point(step.point, [])).steps.append(step)
    return list(points.values())


def _parse_value(text: str) -> Any:
    import ast
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(pairs: Sequence[str], option: str = "--param") -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"error: {option} {pair!r} must look like name=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


@functools.lru_cache(maxsize=None)
def declared_parameters(notebooks_dir: pathlib.Path, name: str) -> dict[str, type]:
    """The parameters (name → type) of the `parameters` cell of `<notebooks_dir>/<name>.ipynb`."""
    path = notebooks_dir / f"{name}.ipynb"
    if not path.exists():
        raise SystemExit(f"error: notebook {path} does not exist")
    return declared_types(path)


def check_parameters(steps: list[Step], notebooks_dir: pathlib.Path, local: bool = True) -> None:
    """Check every step's parameters with its notebook's own checks (`a2hlib.notebook.check`: unknown
    names, types, allowed values) before any kernel starts; values given as text are coerced.
    `local`: the steps run on this machine, so e.g. device='cuda' must find a GPU here."""
    for step in steps:
        try:
            step.parameters = check(step.parameters, declared_parameters(notebooks_dir, step.notebook), local=local)
        except ParameterError as err:
            path = notebooks_dir / f"{step.notebook}.ipynb"
            raise SystemExit(f"error: {path.name} ({step.point}): {err} (see `papermill --help-notebook {path}`)")


def effective_runs_dir(runs_dir: str | os.PathLike) -> pathlib.Path:
    """Where the notebooks write for `--runs-dir` (under `smoke/` in smoke mode, CI set)."""
    return pathlib.Path(smoke_paths(str(pathlib.Path(runs_dir).resolve()), "", smoke_mode())[0])


def plan(args: argparse.Namespace, extra: dict[str, Any], notebooks_dir: pathlib.Path) -> list[Step]:
    """The ordered list of notebook executions for a command line."""
    from a2hlib.runs import analysis_dir, run_dir
    given = pathlib.Path(args.runs_dir).resolve()
    runs = effective_runs_dir(given)
    steps: list[Step] = []
    common = {"runs_dir": str(given), **({"config": args.config} if args.config else {})}
    # a --param applies to every notebook that declares it (checked by name below)
    for dataset in args.datasets:
        data = {"dataset": dataset}
        if args.prepare:
            out = runs / dataset / "_notebooks" / f"{PREPARE}.ipynb"
            steps.append(Step(PREPARE, out, {**data, "runs_dir": str(given)}, out, f"{dataset} prepare",
                              stage=STAGE_PREPARE))
        for model, bits, seed in itertools.product(args.models, args.bits, args.seeds):
            folder = run_dir(runs, dataset, model, bits, seed)
            params = {**common, **data, "model": model, "code_length": bits, "seed": seed}
            label = f"{dataset} {model} {bits}b s{seed}"
            steps.append(Step(TRAIN, folder / f"{TRAIN}.ipynb", params, folder / "metrics.json", label))
            steps.append(Step(EVALUATE, folder / f"{EVALUATE}.ipynb", {k: v for k, v in params.items() if k != "config"},
                              folder / "evaluation.json", label))
        if args.analyses:
            bits = args.analysis_bits or max(args.bits)
            for name, marker in ((BIAS, "simplicity_bias.json"), (BITS, f"bit_attributes_{bits}b.json")):
                folder = analysis_dir(runs, dataset)
                params = {**common, **data, "code_length": bits}
                steps.append(Step(name, folder / f"{name}.ipynb", params, folder / marker, f"{dataset} {name[3:]}",
                                  stage=STAGE_ANALYSES))
    if args.results:
        steps.append(Step(RESULTS, runs / f"{RESULTS}.ipynb", {"runs_dir": str(given)}, runs / "results.csv", "results",
                          stage=STAGE_REPORT))
    unknown = sorted(k for k in extra if not any(k in declared_parameters(notebooks_dir, s.notebook) for s in steps))
    if unknown:
        raise SystemExit(f"error: no notebook in this grid declares parameter(s) {unknown}")
    for step in steps:
        step.parameters.update({k: v for k, v in extra.items() if k in declared_parameters(notebooks_dir, step.notebook)})
    return steps


# ------------------------------------------------------------------------------- one grid point
@functools.lru_cache(maxsize=None)
def _local_kernel_manager() -> type:
    """A kernel manager whose kernels talk over local (IPC) sockets instead of TCP ports: nothing
    is exposed on the network, and ipykernel has no reason to warn about unencrypted TCP. Each
    kernel's sockets live in a private temporary folder (kernels started at once in one folder
    would otherwise race for the same socket names), removed when the kernel is cleaned up."""
    import shutil
    import tempfile

    import traitlets
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        transport = traitlets.CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @traitlets.default("ip")
        def _private_socket_path(self) -> str:
            return os.path.join(tempfile.mkdtemp(prefix="a2h-kernel-"), "socket")

        async def cleanup_resources(self, restart: bool = False) -> None:
            await super().cleanup_resources(restart=restart)
            if not restart:
                shutil.rmtree(os.path.dirname(self.ip), ignore_errors=True)

    return LocalKernelManager


def run_notebook(source: pathlib.Path, output: pathlib.Path, parameters: dict[str, Any], kernel: str,
                 cwd: pathlib.Path, timeout: int | None) -> None:
    """Execute one notebook with papermill (no per-cell time limit when `timeout` is None)."""
    import papermill
    papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name=kernel, cwd=str(cwd),
                               execution_timeout=timeout, progress_bar=False,
                               kernel_manager_class=_local_kernel_manager())


@dataclasses.dataclass(frozen=True)
class Settings:
    """How every point of one grid run executes; picklable, so it travels to worker processes and jobs."""

    notebooks_dir: pathlib.Path
    force: bool = False
    timeout: int | None = None            # seconds per cell; None: no limit
    kernel: str = "python3"
    grid: str = ""                        # this grid run, as recorded in locks and status files
    execute: Callable[..., Any] = run_notebook


def point_lock(path: pathlib.Path, grid: str = ""):
    """An OS-level lock on `path` (`flock`, via filelock): the kernel drops it when its process
    ends, however it ends, so a killed runner leaves no stale lock. The holder's host, pid, grid
    run and start time are written into the lock file for whoever finds it held."""
    import filelock

    def record_holder(fd: int) -> None:
        text = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "grid": grid,
                           "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text.encode())

    # no fallback to an existence lock: without OS locks a killed runner would block the point forever
    return filelock.FileLock(path, on_acquired=record_holder, fallback_to_soft=False, preserve_lock_file=True)


def lock_holder(path: pathlib.Path) -> str:
    """Who holds the lock at `path`, as its holder recorded it."""
    try:
        h = json.loads(path.read_text())
        return f"pid {h['pid']} on {h['host']} since {h['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another runner"


def _error_text(err: BaseException) -> str:
    if hasattr(err, "ename"):  # papermill.PapermillExecutionError: the notebook's own exception
        return f"{err.ename}: {err.evalue}"
    return f"{type(err).__name__}: {err}"  # kernel died, cell timeout, bad notebook


def run_point(point: Point, settings: Settings) -> dict[str, Any]:
    """Run one point's notebooks in order under its lock; returns (and, once a notebook runs,
    writes to `point.status_path`) the record {grid, point, host, pid, devices, steps: [{notebook,
    status, error, seconds}]}. Runs wherever the executor puts it: this process, a device worker
    or a submitit job."""
    import filelock
    record = {"grid": settings.grid, "point": point.label, "host": socket.gethostname(), "pid": os.getpid(),
              "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
              "steps": [{"notebook": s.notebook, "status": "pending", "error": "", "seconds": 0.0} for s in point.steps]}
    point.folder.mkdir(parents=True, exist_ok=True)
    lock = point_lock(point.lock_path, settings.grid)
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        holder = f"held by {lock_holder(point.lock_path)}"
        log.info("%s: %s; skipped", point.label, holder)
        for entry in record["steps"]:
            entry.update(status="locked", error=holder)
        return record
    except OSError as err:  # e.g. ENOSYS: a file system without flock
        for entry in record["steps"]:
            entry.update(status="failed", error=f"the runs folder's file system has no file locks ({err.strerror}): put it "
                         f"on one that has (README 'GPU machines and clusters'); lock file {point.lock_path}")
        return record
    try:
        ran, failed = False, False
        for step, entry in zip(point.steps, record["steps"]):
            if failed:
                entry.update(status="blocked", error=BLOCKED)
                continue
            if not settings.force and step.finished():
                entry["status"] = "skipped"
                continue
            entry["status"], ran = "running", True
            write_json(point.status_path, record)
            start = time.perf_counter()
            try:
                settings.execute(settings.notebooks_dir / f"{step.notebook}.ipynb", step.output, step.parameters,
                                 settings.kernel, settings.notebooks_dir, settings.timeout)
                entry["status"] = "done"
            except Exception as err:
                entry.update(status="failed", error=_error_text(err))
                failed = True
            entry["seconds"] = time.perf_counter() - start
        if ran:
            write_json(point.status_path, record)
        return record
    finally:
        lock.release()


# ----------------------------------------------------------------------------------- executors
Outcome = tuple["dict[str, Any] | None", str]  # (the record a worker returned, else why there is none)


def _guarded(point: Point, settings: Settings) -> Outcome:
    try:
        return run_point(point, settings), ""
    except Exception as err:
        return None, _error_text(err)


class Here:
    """Points run in this process, one after the other."""

    def run(self, points: list[Point], settings: Settings, tick: Callable[[], None]) -> list[Outcome]:
        out = []
        for point in points:
            out.append(_guarded(point, settings))
            tick()
        return out

    def close(self) -> None:
        pass


def _claim_device(devices: "multiprocessing.Queue[str]") -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = devices.get()


class Devices:
    """One worker process per device, each with `CUDA_VISIBLE_DEVICES` set to its device ('' hides
    every GPU); a free worker takes the next point, and runs its steps in order."""

    def __init__(self, visible: list[str]):
        context = multiprocessing.get_context("spawn")  # fresh workers: nothing inherited from this process
        queue = context.Queue()
        for device in visible:
            queue.put(device)
        self.pool = concurrent.futures.ProcessPoolExecutor(len(visible), mp_context=context,
                                                           initializer=_claim_device, initargs=(queue,))

    def run(self, points: list[Point], settings: Settings, tick: Callable[[], None]) -> list[Outcome]:
        futures = [self.pool.submit(_guarded, point, settings) for point in points]
        out = []
        for future in futures:
            try:
                out.append(future.result())
            except Exception as err:  # the worker process died
                out.append((None, _error_text(err)))
            tick()
        return out

    def close(self) -> None:
        self.pool.shutdown()


class Jobs:
    """Every point a submitit job: `slurm` (an array per stage, `--array-parallelism` at once) or
    `local` (processes on this machine, `--array-parallelism` at once)."""

    def __init__(self, kind: str, folder: pathlib.Path, args: argparse.Namespace):
        import submitit
        self.kind = kind
        self.parallelism = args.array_parallelism or (256 if kind == "slurm" else os.cpu_count() or 1)
        self.executor = submitit.AutoExecutor(folder=folder / "%j", cluster=kind)
        year = 365 * 24 * 60  # local jobs: no limit unless asked
        options = dict(name="a2h-grid", timeout_min=args.time_limit or year,
                       gpus_per_node=1 if args.gpus_per_job is None else args.gpus_per_job)
        if kind == "slurm":
            options.update(cpus_per_task=args.cpus_per_job, mem_gb=args.mem_gb, slurm_partition=args.partition,
                           slurm_array_parallelism=self.parallelism,
                           slurm_additional_parameters=parse_params(args.slurm_option, "--slurm-option") or None)
        self.executor.update_parameters(**options)

    def submit(self, points: list[Point], settings: Settings) -> list[Any]:
        """Submit the points (as one array on SLURM); returns their submitit jobs."""
        with self.executor.batch():
            jobs = [self.executor.submit(run_point, point, settings) for point in points]
        return jobs

    def run(self, points: list[Point], settings: Settings, tick: Callable[[], None]) -> list[Outcome]:
        out: list[Outcome] = []
        size = len(points) if self.kind == "slurm" else self.parallelism
        for start in range(0, len(points), size):
            for job in self.submit(points[start:start + size], settings):
                try:
                    out.append((job.result(), ""))
                except Exception as err:  # killed, out of time or memory: the status file may say more
                    out.append((None, f"job {job.job_id} ended without a result ({type(err).__name__}); "
                                      f"log: {job.paths.stderr}"))
                tick()
        return out

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------- the grid
def _apply(point: Point, outcome: Outcome, grid: str) -> None:
    """Copy a worker's record onto the point's steps; without one, use the status file the worker
    left (if it is this grid run's), and mark the step it was in as failed."""
    record, error = outcome
    if record is None and point.status_path.exists():
        try:
            saved = read_json(point.status_path)
            record = saved if saved.get("grid") == grid else None
        except ValueError:
            record = None
    entries = record["steps"] if record else [{"status": "running", "error": "", "seconds": 0.0}] + \
        [{"status": "pending", "error": "", "seconds": 0.0}] * (len(point.steps) - 1)
    for step, entry in zip(point.steps, entries):
        step.status, step.error, step.seconds = entry["status"], entry["error"], entry["seconds"]
        if step.status == "running":
            step.status, step.error = "failed", error or "the worker stopped during this notebook"
        elif step.status == "pending":
            step.status, step.error = "blocked", BLOCKED


def _wait_for(points: list[Point]) -> None:
    """Block until other runners release these points (the next stage may read their runs)."""
    print(f"waiting for {len(points)} point(s) that other runners hold: "
          + "; ".join(f"{p.label} ({lock_holder(p.lock_path)})" for p in points), flush=True)
    for point in points:
        with point_lock(point.lock_path):
            pass


def execute(steps: list[Step], settings: Settings, executor: Here | Devices | Jobs | None = None,
            progress: bool = True) -> None:
    """Run the steps stage by stage on `executor` (default: this process) and set their statuses."""
    from tqdm.auto import tqdm

    executor = executor or Here()
    points = points_of(steps)
    bar = tqdm(total=len(points), desc="grid", disable=not progress)
    stages = sorted({p.steps[0].stage for p in points})
    for stage in stages:
        todo = []
        for point in (p for p in points if p.steps[0].stage == stage):
            if not settings.force and all(s.finished() for s in point.steps):
                for s in point.steps:
                    s.status = "skipped"
                bar.update()
            else:
                todo.append(point)
        groups = ([todo] if todo else []) if stage in PARALLEL_STAGES else [[p] for p in todo]
        for group in groups:
            for point, outcome in zip(group, executor.run(group, settings, bar.update)):
                _apply(point, outcome, settings.grid)
        held = [p for p in todo if p.steps[0].status == "locked"]
        if held and stage != stages[-1]:
            _wait_for(held)
    bar.close()


def summary(steps: list[Step]) -> str:
    rows = [("point", "notebook", "status", "seconds", "output / error")]
    for s in steps:
        rows.append((s.point, s.notebook, s.status, f"{s.seconds:.0f}",
                     f"{s.output}" + (f"  {s.error.splitlines()[0][:200]}" if s.error else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows)


def worker_devices(devices: Sequence[str]) -> list[str]:
    """`CUDA_VISIBLE_DEVICES` for each `--devices` entry: '' for cpu; an index counts among the
    GPUs this process sees (so it respects a CUDA_VISIBLE_DEVICES already set); ids pass through."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        shown = [v.strip() for v in visible.split(",") if v.strip()]
    elif any(d.isdigit() for d in devices):
        import torch
        shown = [str(i) for i in range(torch.cuda.device_count())]
    else:
        shown = []
    out = []
    for device in devices:
        if device.isdigit() and int(device) >= len(shown):
            raise ValueError(f"GPU {device} is not there: this process sees {len(shown)} GPU(s)"
                             + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else "")
                             + "; count from 0, or use cpu")
        out.append("" if device == "cpu" else shown[int(device)] if device.isdigit() else device)
    return out


def make_executor(args: argparse.Namespace, runs: pathlib.Path) -> Here | Devices | Jobs:
    """The executor a command line asks for (options already checked by `check_execution_options`)."""
    if args.executor in ("local", "slurm"):
        return Jobs(args.executor, runs / "_submitit", args)
    if args.devices:
        return Devices(worker_devices(args.devices))
    return Here()


def run(steps: list[Step], args: argparse.Namespace, notebooks_dir: pathlib.Path, force: bool = False) -> int:
    """Check, execute and summarise planned steps (what `make grid` and `make demo` do); the
    exit status: 1 if any step failed, else 0."""
    check_parameters(steps, notebooks_dir, local=args.executor != "slurm")
    grid = f"{socket.gethostname()}:{os.getpid()}:{time.strftime('%Y%m%dT%H%M%S')}"
    settings = Settings(notebooks_dir, force=force, timeout=args.timeout, kernel=args.kernel, grid=grid,
                        execute=run_notebook)  # looked up now: tests swap in a fake notebook runner
    executor = make_executor(args, effective_runs_dir(args.runs_dir))
    try:
        execute(steps, settings, executor)
    finally:
        executor.close()
    print(summary(steps))
    count = {status: sum(s.status == status for s in steps) for status in ("done", "skipped", "failed", "blocked", "locked")}
    print(", ".join(f"{n} {status}" for status, n in count.items()))
    return 1 if count["failed"] else 0


# ----------------------------------------------------------------------------------------- CLI
def _devices(text: str) -> list[str]:
    entries = [d.strip() for d in text.split(",")]
    bad = [d for d in entries if not re.fullmatch(r"cpu|\d+|(GPU|MIG)-[\w/.-]+", d)]
    if bad:
        raise argparse.ArgumentTypeError(f"{text!r}: each entry must be cpu, a GPU index (0, 1, …) or a GPU/MIG "
                                         f"id, e.g. --devices 0,1 or --devices cpu,cpu")
    return entries


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be ≥ 1")
    return value


JOB_OPTIONS = ("time_limit", "gpus_per_job", "array_parallelism")          # local and slurm
SLURM_OPTIONS = ("partition", "cpus_per_job", "mem_gb", "slurm_option")    # slurm only


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """How and where notebooks run: shared by `a2hlib.batch` and `a2hlib.demo`."""
    group = parser.add_argument_group("execution")
    group.add_argument("--timeout", type=_positive, default=None, metavar="SECONDS",
                       help="seconds one notebook cell may take (default: no limit; training is one cell)")
    group.add_argument("--kernel", default="python3")
    group.add_argument("--executor", choices=EXECUTORS, default="loop",
                       help="loop: here (with --devices: one worker per device); slurm: one SLURM job per point "
                            "(submitit); local: the submitit path as processes on this machine")
    group.add_argument("--devices", type=_devices, default=None, metavar="D,D,…",
                       help="with --executor loop: one worker per entry, e.g. 0,1 (GPU indices) or cpu,cpu")
    group.add_argument("--time-limit", type=_positive, default=None, metavar="MINUTES",
                       help="per job (required with slurm; local: none unless given)")
    group.add_argument("--gpus-per-job", type=int, default=None, metavar="N", help="GPUs per job (default 1)")
    group.add_argument("--array-parallelism", type=_positive, default=None, metavar="N",
                       help="jobs running at once (slurm default 256, local: the CPU count)")
    group.add_argument("--partition", default=None, help="SLURM partition")
    group.add_argument("--cpus-per-job", type=_positive, default=None, metavar="N", help="SLURM CPUs per job")
    group.add_argument("--mem-gb", type=float, default=None, metavar="GB", help="SLURM memory per job in GB")
    group.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. account=proj or qos=high (repeatable)")


def check_execution_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse options that do not fit the executor (argparse errors, before anything runs)."""
    import shutil

    def given(dest: str) -> bool:
        return getattr(args, dest) not in (None, [])

    flag = lambda dest: "--" + dest.replace("_", "-")  # noqa: E731
    if args.devices and args.executor != "loop":
        parser.error(f"argument --devices: only with --executor loop (jobs of --executor {args.executor} get "
                     "their GPUs from --gpus-per-job)")
    for dest in JOB_OPTIONS + SLURM_OPTIONS:
        allowed = ("local", "slurm") if dest in JOB_OPTIONS else ("slurm",)
        if given(dest) and args.executor not in allowed:
            parser.error(f"argument {flag(dest)}: only with --executor {' or '.join(allowed)}")
    if args.gpus_per_job is not None and args.gpus_per_job < 0:
        parser.error("argument --gpus-per-job: must be ≥ 0")
    for pair in args.slurm_option:
        if "=" not in pair:
            parser.error(f"argument --slurm-option: {pair!r} must look like key=value")
    if args.executor == "slurm":
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            parser.error(f"argument --executor: slurm needs {' and '.join(missing)} on PATH; run on a SLURM "
                         "login node, or try the same path here with --executor local")
        if args.time_limit is None:
            parser.error("argument --time-limit: required with --executor slurm (minutes per job, e.g. 1440)")
    if args.devices:
        try:
            worker_devices(args.devices)
        except ValueError as err:
            parser.error(f"argument --devices: {err}")


def check_grid(args: argparse.Namespace, extra: dict[str, Any], parser: argparse.ArgumentParser,
               notebooks_dir: pathlib.Path) -> None:
    """The grid's own values, before planning: argparse errors naming the option; nothing is created."""
    from a2hlib.runs import BUILTINS, data_dir_for
    from data_prep import PREPARERS
    for option, values, rule in (("--datasets", args.datasets, each(RULES["dataset"])),
                                 ("--models", args.models, RULES["models"]),
                                 ("--bits", args.bits, each(RULES["code_length"])),
                                 ("--seeds", args.seeds, RULES["seeds"])):
        problem = rule(values)
        if problem:
            parser.error(f"argument {option}: {problem}")
    if args.analysis_bits is not None and (problem := RULES["code_length"](args.analysis_bits)):
        parser.error(f"argument --analysis-bits: {args.analysis_bits} {problem}")
    if args.config is not None and (problem := RULES["config"](args.config)):
        parser.error(f"argument --config: {args.config!r} {problem}")
    runs = effective_runs_dir(args.runs_dir)
    data_dir = extra.get("data_dir", "")
    if data_dir:  # relative to notebooks/, where the kernels start
        data_dir = (notebooks_dir / str(data_dir)).resolve()
    for name in args.datasets:
        folder = data_dir_for(name, runs, data_dir)
        if name in BUILTINS or (args.prepare and name in PREPARERS) or (folder / "dataset.json").exists():
            continue
        how = (f"prepare it (python -m data_prep {name} --root RAW --out {folder}) or add --prepare "
               f"--param root=RAW" if name in PREPARERS else f"known datasets: {', '.join(PREPARERS)}")
        parser.error(f"argument --datasets: {name!r} is not prepared ({folder} has no dataset.json); {how}")


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
    p.add_argument("--analysis-bits", type=int, default=None, metavar="K",
                   help="code length of the runs the analyses compare (default: the largest of --bits)")
    p.add_argument("--results", action="store_true", help="aggregate with 06_results at the end")
    p.add_argument("--force", action="store_true", help="re-execute finished points")
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)
    add_execution_options(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    notebooks_dir = pathlib.Path(args.notebooks_dir).resolve()
    extra = parse_params(args.param)
    check_grid(args, extra, parser, notebooks_dir)
    check_execution_options(args, parser)
    return run(plan(args, extra, notebooks_dir), args, notebooks_dir, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
