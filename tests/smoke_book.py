"""Session fixtures for the figure, book and browser tests (imported by conftest.py): notebooks 00
and 02 executed in smoke mode exactly where and how `make demo` executes them, and the site
`make book` builds from them (the other notebooks without outputs)."""
from __future__ import annotations

import pathlib

import pytest

from a2hlib import book

EXECUTED = ("02_training", "00_overview")  # 02 first, as in the demo


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory) -> pathlib.Path:
    """A runs folder in which `make demo`'s executions of 00 and 02 ran under CI=1."""
    import papermill

    from a2hlib.demo import demo_steps

    runs = tmp_path_factory.mktemp("book") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CI", "1")
        copies = book.executed_copies(runs)
        steps = {s.output: s for s in demo_steps(runs, book.NOTEBOOKS)}
        for name in EXECUTED:
            step = steps[copies[name]]
            step.output.parent.mkdir(parents=True, exist_ok=True)
            papermill.execute_notebook(str(book.NOTEBOOKS / f"{name}.ipynb"), str(step.output),
                                       parameters=step.parameters, kernel_name="python3",
                                       cwd=str(book.NOTEBOOKS), execution_timeout=300, progress_bar=False)
    return runs


@pytest.fixture(scope="session")
def smoke_site(smoke_runs, tmp_path_factory) -> tuple[pathlib.Path, list[book.Page], list[str]]:
    """(index.html, pages, Sphinx warnings) of the book built from `smoke_runs` under CI=1."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CI", "1")
        return book.build_book(smoke_runs, tmp_path_factory.mktemp("site"), allow_unexecuted=True)
