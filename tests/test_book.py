"""The rendered tutorial (`make book`, a2hlib/book.py): which executed copies it takes, what it
refuses, and the offline site it builds (from smoke-executed 00 and 02; the browser test looks at it)."""
import json
import pathlib
import re

import pytest

from a2hlib import book


def notebook(*cells, **meta):
    return {"cells": list(cells), "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def code(source, outputs=(), count=1, tags=()):
    return {"cell_type": "code", "source": source, "outputs": list(outputs), "execution_count": count,
            "metadata": {"tags": list(tags)}}


def markdown(source):
    return {"cell_type": "markdown", "source": source, "metadata": {}}


PNG = {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}, "metadata": {}}


@pytest.fixture
def pair(tmp_path):
    source = tmp_path / "nb.ipynb"
    source.write_text(json.dumps(notebook(markdown("# t\n$u=\\tanh(Wx)$"), code("a = 1", count=None, tags=["parameters"]),
                                          code("plot(a)", count=None))))
    return source, tmp_path / "executed.ipynb"


def write(path, nb):
    path.write_text(json.dumps(nb))


def test_a_finished_execution_of_the_same_cells_is_used_without_warnings(pair):
    source, executed = pair
    write(executed, notebook(markdown("# t\n$u=\\tanh(Wx)$"), code("a = 1", tags=["parameters"]),
                             code("a = 2", tags=["injected-parameters"]), code("plot(a)", [PNG], 2)))
    page = book.inspect_page("nb", source, executed)
    assert (page.problem, page.warnings) == ("", [])


def test_missing_failed_and_unfinished_copies_are_problems(pair):
    source, executed = pair
    assert "does not exist" in book.inspect_page("nb", source, executed).problem
    error = {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": []}
    write(executed, notebook(markdown("# t\n$u=\\tanh(Wx)$"), code("a = 1"), code("plot(a)", [error], 2)))
    assert book.inspect_page("nb", source, executed).problem.endswith("ValueError: bad)")
    write(executed, notebook(markdown("# t\n$u=\\tanh(Wx)$"), code("a = 1"), code("plot(a)", count=None)))
    assert "never ran" in book.inspect_page("nb", source, executed).problem


def test_a_stale_or_figureless_copy_is_used_with_warnings(pair):
    source, executed = pair
    write(executed, notebook(markdown("# old title"), code("a = 1"), code("plot(a)", [], 2)))
    page = book.inspect_page("nb", source, executed)
    assert page.problem == "" and len(page.warnings) == 2
    assert "older version of nb.ipynb" in page.warnings[0] and "MPLBACKEND" in page.warnings[1]


def test_every_notebook_has_one_executed_copy_in_the_demo(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    copies = book.executed_copies(tmp_path / "runs")
    assert list(copies) == sorted(p.stem for p in book.NOTEBOOKS.glob("0*.ipynb"))
    showcase = tmp_path / "runs" / "synthetic" / "a2netpp-24b-s0"
    assert copies["02_training"] == showcase / "02_training.ipynb"
    assert copies["03_retrieval_evaluation"] == showcase / "03_retrieval_evaluation.ipynb"


def test_without_executed_notebooks_the_build_stops_before_writing(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(SystemExit) as stop:
        book.build_book(tmp_path / "runs", tmp_path / "out")
    message = str(stop.value)
    assert all(p.stem in message for p in book.NOTEBOOKS.glob("0*.ipynb"))
    assert "Run `make demo`" in message and "--allow-unexecuted" in message
    assert not (tmp_path / "out").exists()


# a URL that leaves the machine: http(s)://… or protocol-relative //…
REMOTE = re.compile(r"^(https?:)?//", re.I)


def loaded_urls(html_dir: pathlib.Path):
    """(file, url) of everything a page or stylesheet makes the browser load: scripts, styles,
    icons, images, fonts and CSS imports."""
    for page in html_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for url in re.findall(r"<script[^>]*\ssrc=\"([^\"]+)\"", text):
            yield page, url
        for tag in re.findall(r"<link[^>]*>", text):
            if re.search(r"rel=\"(stylesheet|icon|preload|shortcut icon)\"", tag):
                yield page, re.search(r"href=\"([^\"]+)\"", tag).group(1)
        for url in re.findall(r"<img[^>]*\ssrc=\"([^\"]+)\"", text):
            yield page, url
    for sheet in html_dir.rglob("*.css"):
        text = sheet.read_text(encoding="utf-8", errors="replace")
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", text) + re.findall(r"@import\s+['\"]([^'\"]+)", text):
            yield sheet, url


def test_the_site_is_complete_and_loads_nothing_from_the_network(smoke_site):
    index, pages, warnings = smoke_site
    html = index.parent
    assert warnings == []
    front = index.read_text()
    assert "<h1>The A²-Net++ hashing workbook<" in front  # the README is the front page
    names = [p.stem for p in sorted(book.NOTEBOOKS.glob("0*.ipynb"))]
    for target in [f"notebooks/{n}.html" for n in names] + ["docs/METHOD.html", "docs/ARCHITECTURE.html", "docs/claims.html"]:
        assert (html / target).exists() and f'href="{target}' in front, target  # in the table of contents
    remote = [(str(f.relative_to(html)), u) for f, u in loaded_urls(html) if REMOTE.match(u)]
    assert remote == []
    local = [(f, u) for f, u in loaded_urls(html) if not u.startswith("data:")]
    missing = [(str(f.relative_to(html)), u) for f, u in local if not (f.parent / u.split("?")[0].split("#")[0]).exists()]
    assert missing == [] and any("mathjax/tex-chtml.js" in u for _, u in local)


def test_pages_show_outputs_figures_and_maths_and_say_what_they_are_built_from(smoke_site):
    index, pages, _ = smoke_site
    overview = (index.parent / "notebooks" / "00_overview.html").read_text()
    assert len(re.findall(r"<img[^>]+src=\"\.\./_images/", overview)) == 3  # the three figures of 00
    assert r"\(u=\tanh(Wx)\)" in overview and 'class="math' in overview  # inline maths for MathJax
    assert "Built from a smoke run" in overview and "older version" not in overview  # executed from today's 00
    without = [p.name for p in pages if p.problem]
    assert without == ["01_data_preparation", "03_retrieval_evaluation", "04_simplicity_bias",
                       "05_bit_attributes", "06_results"]
    unexecuted = (index.parent / "notebooks" / "03_retrieval_evaluation.html").read_text()
    assert re.search(r'class="admonition warning">\s*<p class="admonition-title">Warning</p>\s*<p>This page shows '
                     r'the notebook <strong>without outputs</strong>', unexecuted)
