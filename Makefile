# Two commands set up a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install postgres test demo lake-demo demo-ui bench dev clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The lake tests (tests/warehouse/test_lake_*.py) start a throwaway PostgreSQL server from Debian's
# package (pipelines/app/local_postgres.py) and are skipped without it; `make lake-demo` needs it too.
# Installs it (as root) if missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

test: install
	$(BIN)/python -m pytest

demo: install
	$(BIN)/smsledger demo

# The demo on a DuckLake: its catalog in a throwaway PostgreSQL (Debian's package, installed by
# `make postgres` as root), its Parquet files in data/demo-lake/lake/; then two backfills writing it
# at once (pipelines/app/lake_demo.py).
lake-demo: install postgres
	$(BIN)/python -m pipelines.app.lake_demo

# The Dagster UI on the demo's own instance and warehouse: its runs, each day's figures, the checks.
demo-ui: install
	DAGSTER_HOME=$(CURDIR)/data/demo/dagster SMSLEDGER_WAREHOUSE=data/demo/warehouse.duckdb \
		SMSLEDGER_SPOOL_DIR=data/demo/spool $(BIN)/dagster dev

bench: install
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.run

dev: install
	DAGSTER_HOME=$(CURDIR) $(BIN)/dagster dev

# Only what the demo and the local Dagster instance made: data/ may also hold your warehouse and
# the spool of responses not yet loaded, which the provider will not hand out again.
clean:
	rm -rf data/demo data/demo-lake data/dagster .pytest_cache
