# A fresh clone needs only Python 3.11+: the first `make run` or `make test` builds .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: the guestbook example (SQLite in the working directory; Postgres if DBOS_DATABASE_URL is set)
run: $(STAMP)
	$(PY) examples/guestbook.py

## test: the whole suite, on SQLite and on Postgres (127.0.0.1:5432, skipped if down unless CI=true)
test: $(STAMP)
	$(PY) -m pytest

## lint: ruff and mypy --strict
lint: $(STAMP)
	$(VENV)/bin/ruff check dbos_async tests examples benchmarks
	$(VENV)/bin/ruff format --check dbos_async tests examples benchmarks
	$(VENV)/bin/mypy dbos_async

## bench: dbos_async against DBOS on the local Postgres (installs the bench extra: dbos)
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) *.sqlite *.sqlite-wal *.sqlite-shm .pytest_cache .mypy_cache .ruff_cache
