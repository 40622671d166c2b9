"""A stand-in for papermill in the grid tests (`a2hlib.batch.run_notebook`'s signature): it logs
each execution and writes what a finished notebook leaves (the executed notebook and its done
file) at once. It is importable by worker processes and submitit jobs (tests put tests/ on their
path), and set up through the environment, which they inherit:

- FAKE_NOTEBOOK_LOG: the file each execution appends one JSON line to (required);
- FAKE_NOTEBOOK_SECONDS: how long each execution takes (default 0);
- FAKE_NOTEBOOK_RENDEZVOUS=N: every 02_training waits until N of them have started, so a grid
  whose points do not run side by side fails (after 60 s) instead of passing.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
import uuid

DONE_FILES = {"02_training": "metrics.json", "03_retrieval_evaluation": "evaluation.json",
              "04_simplicity_bias": "simplicity_bias.json", "06_results": "results.csv"}


def run_notebook(source, output, parameters, kernel, cwd, timeout) -> None:
    name, output = pathlib.Path(source).stem, pathlib.Path(output)
    log = pathlib.Path(os.environ["FAKE_NOTEBOOK_LOG"])
    meet = int(os.environ.get("FAKE_NOTEBOOK_RENDEZVOUS", "0"))
    if meet and name == "02_training":
        started = log.parent / "rendezvous"
        started.mkdir(exist_ok=True)
        (started / uuid.uuid4().hex).touch()
        deadline = time.monotonic() + 60
        while len(list(started.iterdir())) < meet:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(list(started.iterdir()))} of {meet} points started within 60 s: "
                                   "they did not run side by side")
            time.sleep(0.02)
    time.sleep(float(os.environ.get("FAKE_NOTEBOOK_SECONDS", "0")))
    entry = {"notebook": name, "output": str(output), "parameters": parameters, "pid": os.getpid(), "timeout": timeout,
             "devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "time": time.time()}
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("{}")
    done = DONE_FILES.get(name) or (f"bit_attributes_{parameters['code_length']}b.json"
                                    if name == "05_bit_attributes" else None)
    if done:
        (output.parent / done).write_text("{}")


def executions(log: str | os.PathLike) -> list[dict]:
    """The logged executions, in the order they finished."""
    path = pathlib.Path(log)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# Stand-ins run through real papermill and a real kernel (the grid test of batch's papermill path):
# the notebook's own parameters cell, then one cell that fails like a bad dataset does or writes the
# done file. nbval executes the notebooks themselves.
STAND_IN_CELL = """\
import pathlib

class DatasetError(ValueError):
    pass

if dataset == "broken":
    raise DatasetError(f"{dataset}: dataset.json lists no splits")
pathlib.Path(done_file).write_text("{}")
"""


def stand_in(source: str | os.PathLike, folder: pathlib.Path) -> pathlib.Path:
    """A copy of notebook `source` in `folder`: its parameters cell and STAND_IN_CELL."""
    source = pathlib.Path(source)
    notebook = json.loads(source.read_text())
    parameters = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    work = {"cell_type": "code", "id": "stand-in", "execution_count": None, "metadata": {}, "outputs": [],
            "source": STAND_IN_CELL}
    notebook["cells"] = [parameters, work]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / source.name
    path.write_text(json.dumps(notebook))
    return path


def stand_in_runner(folder: pathlib.Path):
    """`a2hlib.batch.run_notebook` (real papermill) executing stand-ins, with `done_file` injected."""
    from a2hlib.batch import run_notebook  # the real one, before a test puts `run` in its place

    def run(source, output, parameters, kernel, cwd, timeout) -> None:
        done = pathlib.Path(output).parent / DONE_FILES[pathlib.Path(source).stem]
        run_notebook(stand_in(source, folder), output, {**parameters, "done_file": str(done)}, kernel, cwd, timeout)
    return run
