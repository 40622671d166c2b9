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
