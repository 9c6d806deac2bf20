# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON := $(PYTHON)
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: env gpu-env demo test test-gpu lint format bench-forest bench-scoring clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	touch $@

env: $(VENV)/.synced

gpu-env: $(UV)
	$(UV) sync --frozen --extra gpu
	touch $(VENV)/.synced

demo: env
	$(VENV)/bin/tidewater demo

test: env
	$(VENV)/bin/python -m pytest

test-gpu: gpu-env
	$(VENV)/bin/python -m pytest -m gpu

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench-forest: env
	$(VENV)/bin/python -m benchmarks.forest --rows 100000 1000000 --repeats 5

bench-scoring: env
	$(VENV)/bin/python -m benchmarks.scoring --rows 1000000,10000000 --workers 1,2 --repeats 3

clean:
	rm -rf $(VENV) $(TOOLS) .tidewater .pytest_cache
