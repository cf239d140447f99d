# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-bench test test-slow lint bench docs clean

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -e '.[dev,experiments]'
	touch $(STAMP)

# The main job: dropout's effect on mnist1d (MLP and CNN, 6 techniques, 5 seeds), resumable,
# with a table and an HTML report in runs/demo.
demo: $(STAMP)
	$(VENV)/bin/dropkit compare --out runs/demo

demo-bench: $(STAMP)
	$(VENV)/bin/dropkit bench

# The suite runs on every core (pytest-xdist); a file's tests stay on one worker so that each
# file compiles its numba kernels once.
TEST_WORKERS ?= auto

# `make test` runs the default suite (tests marked slow deselected); CI (CI=true) runs the slow
# tests too, after it, since they fit its time limit.
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)
ifeq ($(CI),true)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m slow $(PYTEST_ARGS)
endif

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy src

bench: $(STAMP)
	$(VENV)/bin/dropkit bench --full

# The docs site (MkDocs Material + mkdocstrings API pages) into site/; strict: broken links fail.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site build *.egg-info src/*.egg-info .pytest_cache .ruff_cache .mypy_cache
