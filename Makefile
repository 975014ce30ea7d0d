# Two commands set up a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test demo bench dev clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

demo: install
	$(BIN)/smsledger demo

bench: install
	$(BIN)/python -m benchmarks.run

dev: install
	DAGSTER_HOME=$(CURDIR) $(BIN)/dagster dev

# Only what the demo and the local Dagster instance made: data/ may also hold your warehouse and
# the spool of responses not yet loaded, which the provider will not hand out again.
clean:
	rm -rf data/demo data/dagster .pytest_cache
