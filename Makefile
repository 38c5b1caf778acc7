# The two commands: `make run` (train the default experiment) and `make test`.
# Both create .venv on first use. Extra Hydra overrides: make run ARGS="model=lenet5 data=digits".
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers: 2 measured 1.22x faster than 1 for the whole suite on a 2-core machine
# (CONTRIBUTING.md, "Testing"); WORKERS=0 runs in this process.
WORKERS ?= 2

.PHONY: run test test-fast bench setup clean

run: $(STAMP)
	$(VENV)/bin/convnetlab-train $(ARGS)

# Every test, as CI runs it; --durations=25 shows where the time goes.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(WORKERS) --durations=25 $(PYTEST_ARGS)

# The edit-test loop: everything except the end-to-end CLI runs (tests marked slow).
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(WORKERS) -m "not slow" --durations=10 $(PYTEST_ARGS)

# All benchmarks of scripts/bench/ one after another (~30 min on 2 cores); tables in bench-results/<date>/.
bench: $(STAMP)
	$(VENV)/bin/python scripts/bench/run_all.py

setup: $(STAMP)

$(STAMP): pyproject.toml hatch_build.py src/convnetlab/data/_jpeg_region.c
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e '.[dev,sweep]'
	touch $(STAMP)

clean:
	rm -rf outputs multirun .pytest_cache
