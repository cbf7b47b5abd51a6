PY ?= .venv/bin/python

.PHONY: help install test test-all lint format train wheel-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## create .venv; install the package, dev tools and sweep plugins at CI's versions (CPU torch)
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -c constraints/ci.txt -e ".[dev,sweep]"

# `make test` runs the suite on TEST_WORKERS processes (pytest-xdist), one thread each.
TEST_WORKERS ?= 2

test:  ## run the default (fast) test suite, TEST_WORKERS processes in parallel
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15

test-all:  ## run every test, the slow ones included
	$(PY) -m pytest -q -m "slow or not slow"

lint:  ## ruff lint + format check
	$(PY) -m ruff check src tests scripts notebooks
	$(PY) -m ruff format --check src tests scripts notebooks

format:  ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix src tests scripts notebooks
	$(PY) -m ruff format src tests scripts notebooks

train:  ## train + evaluate on the built-in synthetic benchmark
	$(PY) -m asl_tal.train

wheel-check:  ## build the wheel, install it into a fresh venv, train debug=fast_dev_run elsewhere
	rm -rf build dist .venv-wheel
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist .
	python3 -m venv .venv-wheel
	.venv-wheel/bin/pip install --quiet --upgrade pip
	.venv-wheel/bin/pip install --quiet -c constraints/ci.txt dist/asl_tal-*.whl \
		> .venv-wheel/install.log 2>&1 || (cat .venv-wheel/install.log; exit 1)
	cd "$$(mktemp -d)" && ASL_TAL_DATA_DIR="$$PWD/data" "$(CURDIR)/.venv-wheel/bin/asl-train" debug=fast_dev_run \
		&& "$(CURDIR)/.venv-wheel/bin/asl-convert" --help > /dev/null \
		&& "$(CURDIR)/.venv-wheel/bin/asl-evaluate" --help > /dev/null \
		&& "$(CURDIR)/.venv-wheel/bin/asl-eval" --help > /dev/null \
		&& "$(CURDIR)/.venv-wheel/bin/asl-predict" --help > /dev/null \
		&& "$(CURDIR)/.venv-wheel/bin/asl-export" --help > /dev/null \
		&& "$(CURDIR)/.venv-wheel/bin/asl-publish" --help > /dev/null
	@echo "wheel-check: the installed wheel trains from an unrelated folder"

clean:  ## remove caches, run outputs and build folders
	rm -rf outputs multirun .pytest_cache .ruff_cache dist build .venv-wheel
