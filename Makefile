# scarce: `make demo` trains on the embedded demo data; `make test` runs the test suite.
# Both create (or reuse) .venv and install scarce into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint install bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scarce train --recipe demo --out runs/demo-$$(date +%Y%m%d-%H%M%S)

# One worker process per core, each on one torch thread: the suite is many tiny trainings, which
# gain nothing from threads (and threads of two processes contend), so processes scale better.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --dist worksteal

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

clean:
	rm -rf $(VENV) .pytest_cache  # not runs/: trained runs are results, not build output
