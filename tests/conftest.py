"""Fixtures shared by every test folder; helpers that are not fixtures are in support.py.

Tests are grouped by what they prove: unit/ (pure functions, the client against mock
transports), simulator/ (the simulator, with the official SDK as oracle), warehouse/ (loading,
staging, marts and checks on DuckDB files), end_to_end/ (Dagster runs, the CLI as a user runs it,
and SIGKILLs in subprocesses, against the simulator over loopback HTTP).
"""

import pytest

from pipelines.warehouse.db import open_warehouse


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests reach only loopback; a proxy from the machine's environment must not be in the way."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def warehouse_path(tmp_path):
    """Where a test's warehouse file goes (created by whoever opens it first)."""
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def con(warehouse_path):
    """A writable connection to a new warehouse with every table."""
    with open_warehouse(warehouse_path) as connection:
        yield connection
