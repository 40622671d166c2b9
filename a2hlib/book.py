"""The rendered tutorial (`make book`): a static HTML site to read without running anything.

    python -m a2hlib.book [--runs-dir runs] [--out build/book] [--allow-unexecuted]

The site holds the notebooks 00..06 *as executed by `make demo`* (outputs, figures, equations),
`docs/METHOD.md`, `docs/ARCHITECTURE.md`, `docs/claims.md` and the README as its front page. Nothing is executed
here: the executed copies live in run folders under `runs/` (`a2hlib.demo.demo_steps` says where;
for 02/03 the showcase run, a2netpp at 24 bits, seed 0). They are staged with the documents into
`<out>/src`, which Sphinx + myst-nb (execution off, `docs/conf.py`) turns into `<out>/html`.
Everything is offline: the theme ships with its package and MathJax is served from a local copy
(`sphinx-mathjax-offline`); no page loads anything from the network.

With `CI` set (smoke mode) the smoke-executed copies under `<runs>/smoke` are used, so
`CI=1 make demo && CI=1 make book` gives a complete site without the real training (its numbers
mean nothing; each page says so).
A notebook without an executed copy stops the build with the list of what is missing and how to
produce it, before anything is written; `--allow-unexecuted` builds with the plain notebook and a
warning on its page instead. The previous site is replaced only by a finished build.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS, DOCS = ROOT / "notebooks", ROOT / "docs"
# documents staged next to the notebooks (repository layout kept, so the README's links work)
FRONT = "docs/index.md"  # the site's root page, staged at the top next to README.md, which it includes
DOCUMENTS = ("README.md", FRONT, "docs/METHOD.md", "docs/ARCHITECTURE.md", "docs/claims.md")
SHOWCASE = {"model": "a2netpp", "code_length": 24, "seed": 0}  # the run shown for 02 and 03
PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


@dataclass
class Page:
    """One notebook of the book and the executed copy that provides its outputs."""

    name: str                       # e.g. "02_training"
    source: pathlib.Path            # notebooks/<name>.ipynb (committed without outputs)
    executed: pathlib.Path          # the copy `make demo` executed
    problem: str = ""               # why the executed copy cannot be used ("" = usable)
    warnings: list[str] = field(default_factory=list)


def executed_copies(runs_dir: str | os.PathLike, notebooks_dir: pathlib.Path = NOTEBOOKS) -> dict[str, pathlib.Path]:
    """Notebook name → the executed copy `make demo` writes (the showcase run for per-run notebooks)."""
    from a2hlib.demo import demo_steps

    steps = demo_steps(pathlib.Path(runs_dir), notebooks_dir)
    out = {}
    for path in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")):
        candidates = [s for s in steps if s.notebook == path.stem]
        if len(candidates) > 1:
            candidates = [s for s in candidates
                          if all(s.parameters.get(k, v) == v for k, v in SHOWCASE.items())]
        if len(candidates) != 1:
            raise SystemExit(f"error: `make demo` has {len(candidates)} execution(s) of {path.name} matching "
                             f"{SHOWCASE}; the book needs exactly one (see a2hlib/demo.py)")
        out[path.stem] = candidates[0].output
    return out


def _cells(nb: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, source) of the cells a reader wrote, without the cells papermill adds."""
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]
            if not PAPERMILL_TAGS & set(c.get("metadata", {}).get("tags", []))]


def _outputs(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]


def inspect_page(name: str, source: pathlib.Path, executed: pathlib.Path) -> Page:
    """Whether `executed` is a finished execution of `source`; warnings for a stale or figureless copy."""
    page = Page(name, source, executed)
    if not executed.exists():
        page.problem = f"not executed yet ({executed} does not exist)"
        return page
    nb = json.loads(executed.read_text(encoding="utf-8"))
    errors = [o for o in _outputs(nb) if o["output_type"] == "error"]
    if errors:
        page.problem = f"its execution failed ({executed}: {errors[0]['ename']}: {errors[0]['evalue'][:120]})"
        return page
    if any(c["cell_type"] == "code" and c.get("execution_count") is None and "".join(c["source"]).strip()
           for c in nb["cells"]):
        page.problem = f"not fully executed ({executed} has cells that never ran)"
        return page
    if _cells(nb) != _cells(json.loads(source.read_text(encoding="utf-8"))):
        page.warnings.append(f"{executed} was executed from an older version of {source.name}; "
                             f"`make figures` re-executes every notebook (nothing finished is retrained)")
    if not any(k.startswith("image/") for o in _outputs(nb) for k in o.get("data", {})):
        page.warnings.append(f"{executed} holds no figures: it was executed with MPLBACKEND set "
                             f"(e.g. Agg), which kernels inherit; unset it and run `make figures`")
    return page


def _banner(kind: str, text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": f"```{{{kind}}}\n{text}\n```"}


def stage(pages: list[Page], staging: pathlib.Path, smoke: bool, root: pathlib.Path = ROOT) -> None:
    """Copy the documents, figures and one notebook per page into `staging` (repository layout)."""
    if staging.exists():
        shutil.rmtree(staging)
    for doc in DOCUMENTS:
        target = staging / (pathlib.Path(doc).name if doc == FRONT else doc)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / doc, target)
    if (root / "figures").is_dir():
        shutil.copytree(root / "figures", staging / "figures")
    (staging / "notebooks").mkdir()
    for page in pages:
        nb = json.loads((page.source if page.problem else page.executed).read_text(encoding="utf-8"))
        if page.problem:
            nb["cells"].insert(0, _banner("warning", f"This page shows the notebook **without outputs**: "
                                          f"{page.problem}. Run `make demo`, then `make book`."))
        else:
            if page.warnings:
                nb["cells"].insert(0, _banner("warning", "\n\n".join(page.warnings)))
            if smoke:
                nb["cells"].insert(0, _banner("note", "Built from a smoke run (`CI` set): tiny data and "
                                              "schedules, so the numbers and figures mean nothing. "
                                              "`make demo` then `make book` gives the real ones."))
        (staging / "notebooks" / page.source.name).write_text(json.dumps(nb, indent=1), encoding="utf-8")


def sphinx_build(staging: pathlib.Path, out: pathlib.Path, conf_dir: pathlib.Path = DOCS) -> list[str]:
    """Build `staging` into `out/html` with Sphinx; the old site stays until the new one is complete.

    Returns Sphinx's warnings; raises SystemExit with its output if the build fails."""
    partial, old = out / "html.partial", out / "html.old"
    for folder in (partial, old, out / "doctrees"):
        shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-q", "-c", str(conf_dir),
               "-d", str(out / "doctrees"), str(staging), str(partial)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: Sphinx failed (exit {done.returncode}); the previous site is kept.\n"
                         f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    html = out / "html"
    if html.exists():
        html.rename(old)
    partial.rename(html)
    shutil.rmtree(old, ignore_errors=True)
    return [line for line in done.stderr.splitlines() if "WARNING" in line or "ERROR" in line]


def build_book(runs_dir: str | os.PathLike, out: str | os.PathLike, allow_unexecuted: bool = False,
               notebooks_dir: pathlib.Path = NOTEBOOKS) -> tuple[pathlib.Path, list[Page], list[str]]:
    """Check, stage and build the site; (path of index.html, pages, Sphinx warnings)."""
    from a2hlib.notebook import smoke_mode

    for doc in DOCUMENTS:
        if not (ROOT / doc).exists():
            raise SystemExit(f"error: the book needs {ROOT / doc}, which does not exist (see docs/index.md)")
    pages = [inspect_page(name, notebooks_dir / f"{name}.ipynb", path)
             for name, path in executed_copies(runs_dir, notebooks_dir).items()]
    unusable = [p for p in pages if p.problem]
    if unusable and not allow_unexecuted:
        lines = "\n".join(f"  {p.name}: {p.problem}" for p in unusable)
        mode = "CI=1 make demo (smoke mode, as CI is set)" if smoke_mode() else "make demo"
        raise SystemExit(f"error: the book shows executed notebooks, and {len(unusable)} have no usable "
                         f"executed copy:\n{lines}\nRun `{mode}` (finished steps are skipped), then "
                         f"`make book` again; or `make book ARGS=--allow-unexecuted` to build without "
                         f"their outputs.")
    for page in pages:
        for text in page.warnings + ([f"{page.name}: {page.problem}; built without outputs"] if page.problem else []):
            log.warning(text)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage(pages, out / "src", smoke_mode())
    warnings = sphinx_build(out / "src", out)
    return out / "html" / "index.html", pages, warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a2hlib.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs", help="where `make demo` wrote its runs")
    parser.add_argument("--out", default=str(ROOT / "build" / "book"), help="staging (src/) and site (html/)")
    parser.add_argument("--allow-unexecuted", action="store_true",
                        help="build even where a notebook has no executed copy (its page says so)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    start = time.perf_counter()
    index, pages, warnings = build_book(args.runs_dir, args.out, args.allow_unexecuted)
    for line in warnings:
        print(line, file=sys.stderr)
    print(f"book built in {time.perf_counter() - start:.0f} s: {index} ({len(pages)} notebooks, "
          f"{sum(bool(p.problem) for p in pages)} without outputs, {len(warnings)} Sphinx warning(s)); "
          f"open it in a browser, no server or network needed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
