"""The lake tests' PostgreSQL (pipelines/app/local_postgres.py starts it) as pytest fixtures.

Where no server can be started the tests are skipped, with the reason; where
SMSLEDGER_REQUIRE_POSTGRES=1 (CI sets it) they fail instead, so a machine that lost its server
cannot pass CI by skipping.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.app.local_postgres import PostgresServer, PostgresUnavailable, postgres_server

__all__ = ["PostgresServer", "PostgresUnavailable", "postgres_server", "postgres_or_skip", "postgres", "lake_location"]


@contextlib.contextmanager
def postgres_or_skip() -> Iterator[PostgresServer]:
    """postgres_server(), or the test skipped with the reason (failed where
    SMSLEDGER_REQUIRE_POSTGRES=1)."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(postgres_server())
        except PostgresUnavailable as exc:
            if os.environ.get("SMSLEDGER_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"SMSLEDGER_REQUIRE_POSTGRES=1 but no PostgreSQL server could be started: {exc}")
            pytest.skip(f"no PostgreSQL server could be started: {exc}")
        yield server


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A server for the test module (import this fixture into the module)."""
    with postgres_or_skip() as server:
        yield server


@pytest.fixture
def lake_location(postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A new, empty lake: its own catalog database on the server and its own data folder; the
    password in PGPASSWORD, as a user would give it."""
    from pipelines.warehouse.lake import LakeLocation

    monkeypatch.setenv("PGPASSWORD", postgres.password)
    return LakeLocation(postgres.conninfo(postgres.create_database()), str(tmp_path / "lake") + "/")
