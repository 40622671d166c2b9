# The workbook's commands. `make demo` is the main job; `make test` runs every test.
# Both create the virtual environment .venv on first use (venv + pip, pinned requirements.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS ?= runs
export PYTHONHASHSEED := 0
# No MPLBACKEND here: kernels inherit it, and with it set (e.g. Agg) notebooks under `make lab`,
# `make demo` and `make grid` show no figures. Unset, ipykernel uses the inline backend; the tests
# select Agg for themselves (tests/conftest.py).
# `make lab` adds --allow-root only for root; extra options: make lab ARGS="--port 8890"
ALLOW_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup test demo figures claims grid bench bench-train gpu-check clean-runs lab book

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (a2h)" >/dev/null
	touch $@

setup: $(VENV)/.installed  ## create .venv and install everything

test: setup  ## unit tests + every notebook under nbval (smoke configuration), in parallel processes (pytest-xdist)
	CI=$${CI:-true} $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider -n auto --maxprocesses 4 $(ARGS)

demo: setup  ## the whole pipeline on the built-in dataset: data, 3 models x 2 code lengths x 3 seeds, evaluation, analyses, figures, table
	$(PY) -m a2hlib.demo --runs-dir $(RUNS)

figures: setup  ## regenerate every file in figures/ from existing runs (training only what is missing)
	$(PY) -m a2hlib.demo --runs-dir $(RUNS) --figures-only

claims: setup  ## the paper's claims in both settings (from scratch, pretrained) side by side, 3 seeds; hours on 2 cores
	$(PY) -m a2hlib.claims --runs-dir $(RUNS)/claims

grid: setup  ## a papermill grid: make grid ARGS="--datasets synthetic --models adsh a2net --bits 12 24"
	$(PY) -m a2hlib.batch $(ARGS)

bench: setup  ## mAP benchmark at Food-101 scale
	$(PY) benchmarks/bench_map.py

lab: setup  ## JupyterLab on http://127.0.0.1:8888 (the URL with its token is printed); open 00_overview first
	$(VENV)/bin/jupyter lab notebooks --ip 127.0.0.1 $(ALLOW_ROOT) $(ARGS)

book: setup  ## static HTML site of the notebooks executed by `make demo` + docs, in build/book/html (offline)
	$(PY) -m a2hlib.book --runs-dir $(RUNS) $(ARGS)

clean-runs:
	rm -rf $(RUNS)

bench-train: setup  ## training throughput: data feed, step, FLOPs, launches, projected H100 time of a CUB paper run
	$(PY) benchmarks/bench_train.py $(ARGS)

gpu-check: $(if $(filter $(VENV)/%,$(PY)),setup)  ## on a GPU machine: CUDA tests, a 2-iteration paper run at 12 bits, bench-train; one summary (PY=python3: skip .venv)
	$(PY) benchmarks/gpu_check.py $(ARGS)
