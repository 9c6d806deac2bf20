# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
# The newest Python we support: `make test` also runs the fast tests there, in its own venv.
# pyenv's shims run only its global version, so ask pyenv for the path; else use PATH.
NEWEST := 3.13
NEWEST_PYTHON ?= $(or $(addsuffix /bin/python$(NEWEST),$(shell pyenv prefix $(NEWEST) 2>/dev/null)),python$(NEWEST))
NEWEST_VENV := .venv-py$(NEWEST)
FAST := not slow and not integration and not gpu
export UV_PYTHON := $(PYTHON)
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Installed packages are compiled to bytecode once, at install: every process (the CLI, the
# Prefect worker's flow runs, Dask workers) then imports in about 5 s instead of 12 s, also
# where PYTHONDONTWRITEBYTECODE keeps Python from caching it on first import.
export UV_COMPILE_BYTECODE := 1

.PHONY: env env-newest gpu-env gpu-bundle gpu-install gpu-check test-python demo test test-newest test-slow test-gpu mutation lint format bench-forest bench-scoring clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	touch $@

env: $(VENV)/.synced

$(NEWEST_VENV)/.synced: $(UV) pyproject.toml uv.lock
	UV_PYTHON=$(NEWEST_PYTHON) UV_PROJECT_ENVIRONMENT=$(NEWEST_VENV) $(UV) sync --frozen
	touch $@

env-newest: $(NEWEST_VENV)/.synced

gpu-env: $(UV)
	$(UV) sync --frozen --extra gpu
	touch $(VENV)/.synced

demo: env
	$(VENV)/bin/tidewater demo

# The suite on $(PYTHON) (slow cases apart), then the fast subset on the newest Python.
test: env
	$(VENV)/bin/python -m pytest -m "not slow"
	$(MAKE) --no-print-directory test-newest

# The slow cases (the operator's path through serve/deploy/worker, the browser, the hardened
# server on PostgreSQL, worker loss, drift false alarms): CI runs them after `make test`.
test-slow: env
	$(VENV)/bin/python -m pytest -m slow --durations=15

# The CUDA emulation is C++ whatever the Python: its cases run once, in `test`.
test-newest: env-newest
	$(NEWEST_VENV)/bin/python -m pytest -m "$(FAST)" --ignore=tests/kernels/test_kernels_cuda_emulated.py

# The fast tests on another supported Python, e.g. the GPU machines' 3.12 (not part of `make
# test`): make test-python PY=3.12
PY ?= 3.12
test-python: $(UV)
	UV_PYTHON=$(or $(addsuffix /bin/python$(PY),$(shell pyenv prefix $(PY) 2>/dev/null)),python$(PY)) \
		UV_PROJECT_ENVIRONMENT=.venv-py$(PY) $(UV) sync --frozen
	.venv-py$(PY)/bin/python -m pytest -m "$(FAST)"

test-gpu: gpu-env
	$(VENV)/bin/python -m pytest -m gpu

# The GPU check on a lent device (README: "Checking the GPU path on a device"). Here:
# `make gpu-bundle` fetches the cp312 manylinux wheels the device lacks into .gpu-bundle/,
# in parts that each fit one device call with the working tree (XGBOOST=cpu: no CUDA XGBoost,
# fewer parts). There, one call per part: `make gpu-install PART=N`, then `make gpu-check`
# (STEPS=tests,sanitizer,forest,scoring to choose). No venv, uv or index needed there.
XGBOOST ?= cuda
GPU_PYTHON ?= python3
gpu-bundle: env
	$(VENV)/bin/python -m benchmarks.gpu_bundle --xgboost $(XGBOOST) --pip $(TOOLS)/bin/pip

gpu-install:
	$(GPU_PYTHON) -m benchmarks.gpu_check install $(PART)

gpu-check:
	$(GPU_PYTHON) -m benchmarks.gpu_check run $(if $(STEPS),--steps $(STEPS))

# Mutation testing of the five core modules with their fast tests (docs/MUTATION.md): mutmut,
# one child at a time, from scratch; prints killed / total per module. `.ci/mutation.py
# --score` prints the last run's score again; `mutmut results` lists its survivors.
mutation: env
	rm -rf mutants
	$(VENV)/bin/python .ci/mutation.py

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench-forest: env
	$(VENV)/bin/python -m benchmarks.forest --rows 1000000 --repeats 5

bench-scoring: env
	$(VENV)/bin/python -m benchmarks.scoring --rows 1000000,10000000 --workers 1,2 --repeats 3

clean:
	rm -rf $(VENV) $(NEWEST_VENV) $(TOOLS) .tidewater .pytest_cache mutants .gpu-bundle .gpu-env .gpu-results
