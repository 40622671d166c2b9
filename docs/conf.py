"""Sphinx configuration of the rendered tutorial (`make book`, built by `a2hlib/book.py`).

The source folder is a staging copy (build/book/src) laid out like the repository: README.md and
index.md at the top, docs/*.md, notebooks/*.ipynb (already executed by `make demo`), figures/.
Everything the pages load ships with the site: the theme with its package, MathJax from
`sphinx-mathjax-offline`; no widget or font is fetched from the network.
"""
project = "A²-Net++ hashing workbook"
author = "the workbook's authors"
extensions = ["myst_nb", "sphinx-mathjax-offline"]  # MathJax 3 copied into _static/mathjax
root_doc = "index"
exclude_patterns = ["README.md", "**/.ipynb_checkpoints"]  # README.md is included by index.md

# notebooks come executed (make demo); never execute them here
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no widget code from a CDN: widget outputs (tqdm bars) are left out
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = "A²-Net++ hashing workbook"
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_copy_source = False
html_show_sourcelink = False
html_show_copyright = False
