# The workbook's commands. `make demo` is the main job; `make test` runs every test.
# Both create the virtual environment .venv on first use (venv + pip, pinned requirements.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS ?= runs
export PYTHONHASHSEED := 0
# Keep notebooks' progress bars and figures headless.
export MPLBACKEND := Agg

.PHONY: setup test demo figures grid bench clean-runs lab

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (a2h)" >/dev/null
	touch $@

setup: $(VENV)/.installed  ## create .venv and install everything

test: setup  ## unit tests + every notebook under nbval (smoke configuration)
	CI=$${CI:-true} $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider

demo: setup  ## the whole pipeline on the built-in dataset: data, 3 models x 2 code lengths, evaluation, analyses, figures, table
	$(PY) -m a2hlib.demo --runs-dir $(RUNS)

figures: setup  ## regenerate every file in figures/ from existing runs (training only what is missing)
	$(PY) -m a2hlib.demo --runs-dir $(RUNS) --figures-only

grid: setup  ## a papermill grid: make grid ARGS="--datasets synthetic --models adsh a2net --bits 12 24"
	$(PY) -m a2hlib.batch $(ARGS)

bench: setup  ## mAP benchmark at Food-101 scale
	$(PY) benchmarks/bench_map.py

lab: setup
	$(VENV)/bin/jupyter lab notebooks

clean-runs:
	rm -rf $(RUNS)
