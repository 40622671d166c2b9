"""Every document the product mentions exists in the repository.

Scanned: README.md, docs/**/*.md, notebooks/*.ipynb (markdown and code cells), a2hlib/**/*.py and
data_prep/**/*.py. A reference is any word ending in `.md` or `.ipynb`, or a backticked path with a
slash ending in `.py`. It must name a file inside the repository, relative to the repository root
or to the mentioning file's folder. Skipped: URLs, templated names (`<`, `{`, `*`, `$`), and
places the workbook generates (runs/, analysis/, results.md, .venv, build/).
"""
from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# a word: a run of characters between whitespace, quotes, backticks, brackets, `|`, `,` and `;`
_WORD = re.compile(r"[^\s`'\"()\[\]|,;]+")
_BACKTICKED_PY = re.compile(r"`([^`\s]*/[^`\s]*\.py)`")
_DOCUMENT_SUFFIXES = (".md", ".ipynb")
_TEMPLATE_CHARS = set("<>{}*$")
_GENERATED_FOLDERS = {"runs", "analysis", ".venv", "build"}
_GENERATED_FILES = {"results.md"}


def scanned_files(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """The product's files whose references must resolve, in a fixed order."""
    files = [root / "README.md", *sorted((root / "docs").rglob("*.md")),
             *sorted((root / "notebooks").glob("*.ipynb")),
             *sorted((root / "a2hlib").rglob("*.py")), *sorted((root / "data_prep").rglob("*.py"))]
    return [f for f in files if f.is_file() and not _GENERATED_FOLDERS & set(f.relative_to(root).parts)]


def text_blocks(path: pathlib.Path) -> list[tuple[str, str]]:
    """(where, text) for every line of a file; for a notebook, of its markdown and code cells."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return [(f"cell {i} line {n}", line) for i, c in enumerate(cells)
                if c.get("cell_type") in ("markdown", "code")
                for n, line in enumerate("".join(c.get("source", "")).splitlines(), 1)]
    return [(f"line {n}", line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]


def _clean(word: str) -> str:
    word = word.split("#", 1)[0]                 # a link's #anchor
    word = re.sub(r"(:\d+)+$", "", word)         # file.md:12
    previous = None
    while word != previous:                      # markdown emphasis and sentence punctuation
        previous, word = word, word.strip("*_~").rstrip(".:!?")
    return word


def is_skipped(ref: str) -> bool:
    """URLs, templated names and generated places are not checked."""
    if "://" in ref or ref.startswith(("www.", "mailto:")):
        return True
    if _TEMPLATE_CHARS & set(ref):
        return True
    parts = pathlib.PurePosixPath(ref).parts
    if not parts or parts[-1] in _GENERATED_FILES or _GENERATED_FOLDERS & set(parts):
        return True
    name = parts[-1]
    return name.startswith(".") and name in _DOCUMENT_SUFFIXES  # a bare ".md" / ".ipynb"


def references(text: str) -> list[str]:
    """Document names and backticked .py paths mentioned in `text`, in order, skipped ones left out."""
    found = []
    for word in _WORD.findall(text):
        ref = _clean(word)
        if ref.endswith(_DOCUMENT_SUFFIXES) and not is_skipped(ref):
            found.append(ref)
    found += [ref for ref in _BACKTICKED_PY.findall(text) if not is_skipped(ref)]
    return found


def resolves(ref: str, mentioned_in: pathlib.Path, root: pathlib.Path = ROOT) -> bool:
    """Whether `ref` names an existing file inside `root`, read from the root or from the folder
    of the file that mentions it."""
    root = root.resolve()
    for base in (root, mentioned_in.resolve().parent):
        target = ((root / ref.lstrip("/")) if ref.startswith("/") else (base / ref)).resolve()
        if target.is_relative_to(root) and target.is_file():
            return True
    return False


def missing_references(root: pathlib.Path = ROOT) -> list[str]:
    """'file, where: reference' for every reference that does not resolve."""
    missing = []
    for path in scanned_files(root):
        for where, text in text_blocks(path):
            for ref in references(text):
                if not resolves(ref, path, root):
                    missing.append(f"{path.relative_to(root).as_posix()}, {where}: {ref}")
    return missing


# ------------------------------------------------------------------------------ the rules themselves
@pytest.mark.parametrize("text, expected", [
    ("The public logs (METHOD.md §7) put", ["METHOD.md"]),
    ("see [docs/ARCHITECTURE.md](docs/ARCHITECTURE.md).", ["docs/ARCHITECTURE.md", "docs/ARCHITECTURE.md"]),
    ("| [00_overview](notebooks/00_overview.ipynb) | one batch |", ["notebooks/00_overview.ipynb"]),
    ("explained in `notebooks/02_training.ipynb`, METHOD.md's §3", ["notebooks/02_training.ipynb", "METHOD.md"]),
    ("**docs/METHOD.md**: and docs/METHOD.md#3-losses", ["docs/METHOD.md", "docs/METHOD.md"]),
    ("lives in `data_prep/common.py`; a2hlib/models.py is not backticked", ["data_prep/common.py"]),
    ("`python -m data_prep` and `losses.py`", []),
    ("papermill --help-notebook notebooks/<name>.ipynb; `data_prep/<name>.py`", []),
    ('f"{name}.ipynb", bit_gallery_*_synthetic.md, $HOME/x.md, "name without .ipynb"', []),
    ("runs/results.md, results.md, runs/x/analysis/a.md, .venv/lib/README.md, build/html/index.md", []),
    ("https://github.com/aassxun/SEMICON/blob/main/README.md", []),
    ("error at README.md:12 and ../shared/docs/METHOD.md", ["README.md", "../shared/docs/METHOD.md"]),
])
def test_references_are_found_and_skipped_by_the_rules(text, expected):
    assert references(text) == expected


def test_references_resolve_from_the_root_or_the_mentioning_folder(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "docs" / "METHOD.md").write_text("x")
    (root / "notebooks" / "00_overview.ipynb").write_text("{}")
    (tmp_path / "outside.md").write_text("x")
    notebook, module = root / "notebooks" / "01.ipynb", root / "a2hlib" / "m.py"
    assert resolves("docs/METHOD.md", module, root)                   # from the root
    assert resolves("/docs/METHOD.md", module, root)                  # root-absolute
    assert resolves("00_overview.ipynb", notebook, root)              # from the notebook's folder
    assert resolves("../docs/METHOD.md", notebook, root)
    assert not resolves("00_overview.ipynb", module, root)
    assert not resolves("METHOD.md", module, root)
    assert not resolves("docs", module, root)                         # a folder is not a document
    assert not resolves("../outside.md", root / "README.md", root)    # outside the repository


def test_a_notebook_is_read_cell_by_cell(tmp_path):
    nb = tmp_path / "x.ipynb"
    nb.write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": ["See METHOD.md\n", "§1 of docs/METHOD.md"]},
        {"cell_type": "raw", "source": ["raw.md"]},
        {"cell_type": "code", "source": "open('notebooks/05_bit_attributes.ipynb')", "outputs": []},
    ]}))
    assert [(w, references(t)) for w, t in text_blocks(nb)] == [
        ("cell 0 line 1", ["METHOD.md"]), ("cell 0 line 2", ["docs/METHOD.md"]),
        ("cell 2 line 1", ["notebooks/05_bit_attributes.ipynb"])]


# ------------------------------------------------------------------------------ the repository
def test_the_scan_covers_the_product():
    names = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    assert {"README.md", "docs/ARCHITECTURE.md", "notebooks/00_overview.ipynb",
            "a2hlib/models.py", "data_prep/cub200.py"} <= names
    assert not any(n.startswith("tests/") for n in names)


def test_every_mentioned_document_exists():
    missing = missing_references()
    assert not missing, ("these references name no file of the repository (point them at a file "
                         "that exists, e.g. docs/METHOD.md §N):\n  " + "\n  ".join(missing))
