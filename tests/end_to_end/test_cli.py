"""The command line as a user runs it: subprocesses, exit statuses, one-line errors, no secrets."""

import datetime as dt
import time

import duckdb
import orjson
import pytest
from support import smsledger

from pipelines.config import DEMO_SECRET_KEY
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator


@pytest.fixture(scope="module")
def sim():
    now = time.time() - 3600
    with Simulator(SimulatorConfig(port=0, days=2, messages_per_day=300, seed=3, now=now, clock_runs=False)) as s:
        yield s


def test_api_prints_receipts_from_the_simulator_and_spools_them_first(sim, tmp_path):
    spool = tmp_path / "spool"
    result = smsledger("api", "PullSmsSendStatus", "--json", '{"Limit": 100, "SmsSdkAppId": "1400000000"}',
                       env={"SMSLEDGER_ENDPOINT": sim.url, "SMSLEDGER_SPOOL_DIR": str(spool)})
    assert result.returncode == 0, result.stderr
    response = orjson.loads(result.stdout)
    assert len(response["PullSmsSendStatusSet"]) == 100 and response["RequestId"]
    assert {"SerialNo", "ReportStatus", "UserReceiveTime"} <= set(response["PullSmsSendStatusSet"][0])
    # the queue handed these out once: they are in the spool for the next sync to load
    spooled = list((spool / "ready").iterdir())
    assert len(spooled) == 1 and orjson.loads(spooled[0].read_bytes())["Response"]["RequestId"] == response["RequestId"]


def test_api_error_is_one_line_with_code_message_and_request_id(sim):
    result = smsledger("api", "SendStatusStatistics", "--json",
                       '{"BeginTime": "2026010100", "EndTime": "2026010100", "Limit": 10, "Offset": 0}',
                       env={"SMSLEDGER_ENDPOINT": sim.url})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "InvalidParameterValue.LimitVerifyFail" in lines[0] and "RequestId" in lines[0]

    wrong_key = smsledger("api", "DescribeSmsSignList", "--json", '{"International": 0}',
                          env={"SMSLEDGER_ENDPOINT": sim.url, "TENCENTCLOUD_SECRET_ID": "AKIDsmsledgerDEMO0000000000000000000",
                               "TENCENTCLOUD_SECRET_KEY": "not-the-key-xyz"})
    assert wrong_key.returncode == 1
    assert "AuthFailure.SignatureFailure" in wrong_key.stderr and "TENCENTCLOUD_SECRET_KEY" in wrong_key.stderr
    assert "not-the-key-xyz" not in wrong_key.stderr + wrong_key.stdout


def test_missing_credentials_name_the_variables():
    result = smsledger("api", "PullSmsSendStatus")
    assert result.returncode == 1
    assert "TENCENTCLOUD_SECRET_ID" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """`smsledger demo` from a fresh folder: exit 0, the summary printed, marts filled; again: same."""
    env = {"DAGSTER_HOME": str(tmp_path / "dagster")}
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    args = ("demo", "--messages-per-day", "400", "--days", "3")
    first = smsledger(*args, env=env, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Delivery and conversion" in first.stdout and "Top failure reasons" in first.stdout
    assert "match the provider exactly" in first.stdout
    assert DEMO_SECRET_KEY not in first.stdout + first.stderr
    warehouse = tmp_path / "data" / "demo" / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse), read_only=True)
    counts = con.execute("select (select count(*) from marts.message_status), (select count(*) from marts.delivery_daily), "
                         "(select count(*) from marts.replies)").fetchone()
    con.close()
    assert all(n > 0 for n in counts)
    second = smsledger(*args, env=env, cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = lambda out: out[out.index("Delivery and conversion"): out.index("demo finished")]  # noqa: E731
    assert summary(second.stdout) == summary(first.stdout)
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert str(yesterday) in first.stdout
