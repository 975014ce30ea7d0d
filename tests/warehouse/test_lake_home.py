"""A lake used by a process without a home: HOME unset (a systemd system service, some
containers) or naming no folder. DuckDB installs and loads the lake's extensions under its home
folder, and without one both fail ("Can't find the home directory at ''"); lake.duckdb_home gives
it one. The commands run in subprocesses, as such a service runs them, against a real PostgreSQL
(tests/postgres_support.py)."""

import os
import stat

import pytest
import postgres_support
from support import smsledger

from pipelines.config import LakeConfigError
from pipelines.warehouse import lake
from pipelines.warehouse.db import open_warehouse

lake_location = postgres_support.lake_location
postgres = postgres_support.postgres


@pytest.fixture
def lake_with_rows(lake_location):
    with open_warehouse(lake_location) as con:
        con.execute("insert into raw.signs (sign_id, sign_name, pulled_at) select range, 'sign ' || range, now() from range(25)")
    return lake_location


def _env_without_home(location, **more: str) -> dict[str, str]:
    return {"SMSLEDGER_WAREHOUSE": str(location), "SMSLEDGER_LAKE_DATA_PATH": location.data_path,
            "PGPASSWORD": os.environ["PGPASSWORD"], **more}


@pytest.mark.parametrize("home", [None, "/nonexistent/home"], ids=["unset", "not-a-folder"])
def test_sql_on_a_lake_works_without_a_home(lake_with_rows, tmp_path, monkeypatch, home):
    monkeypatch.delenv("HOME")  # support.smsledger passes the test's environment on
    env = _env_without_home(lake_with_rows, **({"HOME": home} if home else {}))
    done = smsledger("sql", "select count(*) as signs from raw.signs", "--format", "csv", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["signs", "25"]


def test_without_any_home_the_extensions_go_to_a_folder_of_the_user_alone(monkeypatch, tmp_path):
    monkeypatch.delenv("HOME")
    monkeypatch.setattr(lake.pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    monkeypatch.setattr(lake.tempfile, "gettempdir", lambda: str(tmp_path))
    home = lake.duckdb_home()
    assert home == str(tmp_path / f"smsledger-duckdb-{os.getuid()}")
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    # a folder others may write to is not taken: one line naming the variable to set
    os.chmod(home, 0o777)
    with pytest.raises(LakeConfigError) as refused:
        lake.duckdb_home()
    assert "set HOME to a writable folder" in str(refused.value) and "\n" not in str(refused.value)


def test_with_a_home_duckdb_keeps_its_own(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert lake.duckdb_home() is None
