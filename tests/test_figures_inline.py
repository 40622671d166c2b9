"""Notebooks executed with papermill (as `make demo` and `make grid` do) hold their figures inline,
and `plotting.save_figure` still writes them as files."""
import base64
import io
import json
import os

from PIL import Image

from a2hlib import book


def inline_pngs(path):
    """(cell index, PIL image) of every image/png output of an executed notebook."""
    nb = json.loads(path.read_text())
    return [(i, Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))))
            for i, c in enumerate(nb["cells"]) for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


def figure_cells(path):
    """Indices of the code cells that draw a new figure (`fig, ... = ...`)."""
    nb = json.loads(path.read_text())
    return [i for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code" and any(line.lstrip().startswith("fig, ") for line in "".join(c["source"]).splitlines())]


def test_papermill_executed_notebooks_show_every_figure_inline(smoke_runs, monkeypatch):
    monkeypatch.setenv("CI", "1")
    copies = book.executed_copies(smoke_runs)
    hint = f"MPLBACKEND={os.environ.get('MPLBACKEND')!r} in the environment: kernels inherit it"
    for name in ("00_overview", "02_training"):
        images = inline_pngs(copies[name])
        # one figure per drawing cell (00: batch, attention maps, reconstructions; 02: loss terms)
        assert [i for i, _ in images] == figure_cells(copies[name]) != [], hint
        assert all(img.format == "PNG" and min(img.size) > 50 for _, img in images)


def test_figures_are_also_saved_as_files(smoke_runs):
    # 02 of the demo's showcase run saves its loss curves into the run folder and the figures
    # folder (smoke runs: both under <runs>/smoke, never into figures/)
    smoke = smoke_runs / "smoke"
    for folder in (smoke / "synthetic" / "a2netpp-24b-s0", smoke / "figures"):
        with Image.open(folder / "loss_terms_a2netpp_24b.png") as img:
            assert img.format == "PNG" and min(img.size) > 100
