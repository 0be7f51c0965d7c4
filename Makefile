# A fresh clone needs only Python 3.11+: the first `make run` or `make test` builds .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint docs docs-serve bench faults chaos constraints clean screenshots

# The dev tools and every dependency at the versions pinned in constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## install: build .venv with the dev extra under constraints.txt
install: $(STAMP)

## run: the guestbook example (SQLite in the working directory; Postgres if DBOS_DATABASE_URL is set)
run: $(STAMP)
	$(PY) examples/guestbook.py

## test: the whole suite, on SQLite and on Postgres (127.0.0.1:5432, skipped if down unless CI=true):
## on TEST_WORKERS pytest-xdist workers (each test file on one worker), then the tests
## marked serial (they restart Postgres) alone; both parts run, and it fails if either does
## (a serial part that selects nothing, exit status 5, is not a failure)
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial"; parallel=$$?; \
	$(PY) -m pytest -m serial; serial=$$?; \
	test $$parallel -eq 0 && { test $$serial -eq 0 || test $$serial -eq 5; }

## screenshots: the dashboard's browser tests, saving their screenshots over docs/images/
screenshots: $(STAMP)
	DBOS_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q tests/test_dashboard_browser.py

## faults: the connection-cut and lost-reply tests 20 times in a row (they are probabilistic)
FAULT_TESTS := tests/test_faults.py tests/test_lost_replies.py \
	tests/test_queue_processes.py::test_queue_processes__connection_cuts_lose_and_repeat_nothing
ROUNDS ?= 20
faults: $(STAMP)
	for i in $$(seq 1 $(ROUNDS)); do echo "round $$i"; $(PY) -m pytest -q $(FAULT_TESTS) || exit 1; done

## chaos: the chaos harness, ten minutes per backend (Postgres, then SQLite): bank workers
## killed, paused past their lease, stopped, failpointed, cut off and Postgres restarted;
## prints the figures of each run and fails if a transfer is lost or applied twice.
## CHAOS_SECONDS=60 for a shorter run, CHAOS_SEED=N to fix the fault schedule,
## CHAOS_FLAGS=--keep-on-failure to keep the database and the logs of a failed run.
CHAOS_SECONDS ?= 600
CHAOS_ARGS = --seconds $(CHAOS_SECONDS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) $(CHAOS_FLAGS)
chaos: $(STAMP)
	$(PY) -m tests.chaos.harness --backend postgres $(CHAOS_ARGS); pg=$$?; \
	$(PY) -m tests.chaos.harness --backend sqlite $(CHAOS_ARGS); lite=$$?; \
	test $$pg -eq 0 && test $$lite -eq 0

## lint: ruff and mypy --strict
lint: $(STAMP)
	$(VENV)/bin/ruff check dbos_async tests examples benchmarks
	$(VENV)/bin/ruff format --check dbos_async tests examples benchmarks
	$(VENV)/bin/mypy dbos_async

## docs: build the documentation site (mkdocs, material, mkdocstrings) into site/; fails on
## any warning (a broken link, a missing page, a reference that does not resolve)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

## docs-serve: the documentation site at http://127.0.0.1:8000, rebuilt on every edit
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

## bench: dbos_async against DBOS on the local Postgres (installs the bench extra: dbos)
bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) benchmarks/run.py

## constraints: re-resolve '.[dev]' in a scratch venv and rewrite constraints.txt's pins
CVENV := /tmp/dbos_async-constraints-venv
constraints:
	rm -rf $(CVENV)
	$(PYTHON) -m venv $(CVENV)
	$(CVENV)/bin/python -m pip install --quiet --upgrade pip
	$(CVENV)/bin/python -m pip install --quiet -e '.[dev]'
	grep '^#' constraints.txt > constraints.txt.new
	$(CVENV)/bin/python -m pip freeze --exclude-editable >> constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(CVENV)

clean:
	rm -rf $(VENV) site *.sqlite *.sqlite-wal *.sqlite-shm .pytest_cache .mypy_cache .ruff_cache
