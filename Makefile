# Quick start: `make demo` and `make test` (each creates .venv if needed).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo
# pytest-xdist workers for `make test` (the suite leaves about a third of
# two cores idle when run serially: subprocess start-ups, TensorFlow
# tracing, waits on child commands; BUILD_NOTES, "Session 7").
TEST_WORKERS ?= 2

.PHONY: install demo test test-slow lint bench clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Trains on the built-in synthetic benchmark, evaluates ZSL/GZSL beside the
# ESZSL baseline, exports a SavedModel, then re-evaluates the export.
demo: $(STAMP)
	$(PY) train.py --model_dir=$(DEMO_DIR)
	$(PY) eval.py --saved_model=$(DEMO_DIR)/export/$$(ls $(DEMO_DIR)/export | grep -E '^[0-9]+$$' | sort -n | tail -1) --metrics_out=$(DEMO_DIR)/saved_model_metrics.json

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs cache
