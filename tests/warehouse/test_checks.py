"""Asset checks on the marts, run through Dagster on a warehouse of hand-made rows: they pass on
consistent data and fail, naming the day, when receipts go missing or keys repeat."""

import datetime as dt

import dagster as dg
import pytest

from assets import checks as C
from assets.marts import mart_assets
from pipelines.days import daily_partitions
from assets.resources import MetricsConfig, WarehouseResource
from pipelines.warehouse.db import open_warehouse

PARTITIONS = daily_partitions(dt.date(2026, 1, 1), "UTC")
DAY = dt.date(2026, 1, 5)  # long settled: older than any lookback window
DERIVED = [dg.AssetKey(["marts", name]) for name in (
    "delivery_daily", "conversion_daily", "failure_reasons_daily", "provider_statistics_hourly", "reconciliation_daily")]


def add_day(con, day, delivered=9, failed=1, provider=None, statistics=True):
    """`delivered + failed` sends-log messages of the day and, with `statistics`, the provider's
    hour that matches them (`provider` = (requested, callbacks, succeeded, failed) to differ)."""
    sent = dt.datetime.combine(day, dt.time(9), dt.UTC)
    for i in range(delivered + failed):
        con.execute(
            "insert into marts.message_status (send_date, serial_no, iso_code, sign_name, template_id, sent_at, fee, "
            "report_status, user_receive_time, latency_seconds, receipts, in_sends_log, sms_sdk_app_id) "
            "values ($day, $serial, 'CN', 'Acme', '100', $sent, 1, $status, $received, 5, 1, true, '1400000000')",
            {"day": day, "serial": f"{day}-{i}", "sent": sent, "received": sent + dt.timedelta(seconds=5),
             "status": "SUCCESS" if i < delivered else "FAIL"},
        )
    if not statistics:
        return
    requested, callbacks, succeeded, fails = provider or (delivered + failed, delivered + failed, delivered, failed)
    con.execute(
        "insert into raw.statistics_hourly (provider_hour, hour, request_success_count, callback_count, "
        "callback_success_count, callback_fail_count, pulled_at, sms_sdk_app_id) "
        "values ($ph, $hour, $requested, $callbacks, $succeeded, $fails, $hour, '1400000000')",
        {"ph": f"{day:%Y%m%d}17", "hour": sent, "requested": requested, "callbacks": callbacks,
         "succeeded": succeeded, "fails": fails},
    )


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "w.duckdb"
    with open_warehouse(path) as con:
        add_day(con, DAY)
    return path


def run(warehouse, *, partition_key=None, tags=None, expect_success=True, **metrics):
    """Materialize the daily metric marts of a partition (or a range, by tags) with their checks
    and the checks of marts.message_status and marts.replies (whose rows the test wrote itself).
    Returns the evaluations by check name: one, or a list per day for a partitioned check."""
    result = dg.materialize(
        [*mart_assets(PARTITIONS), *C.build_checks(PARTITIONS)],
        selection=dg.AssetSelection.assets(*DERIVED)
        | dg.AssetSelection.checks_for_assets(dg.AssetKey(["marts", "message_status"]), dg.AssetKey(["marts", "replies"])),
        partition_key=partition_key,
        tags=tags,
        resources={
            "warehouse": WarehouseResource(path=str(warehouse), spool_dir=str(warehouse.parent / "spool")),
            "metrics": MetricsConfig(coverage_threshold=0.9, lookback_days=3, **metrics),
        },
        raise_on_error=False,
    )
    assert result.success is expect_success
    evaluations = {}
    for e in result.get_asset_check_evaluations():
        if e.partition is None:
            evaluations[e.check_name] = e
        else:
            evaluations.setdefault(e.check_name, []).append(e)
    return {name: (found[0] if isinstance(found, list) and len(found) == 1 else found)
            for name, found in evaluations.items()}


def test_every_check_passes_on_consistent_data(warehouse):
    evaluations = run(warehouse, partition_key=DAY.isoformat())
    assert set(evaluations) == {C.ONE_ROW_PER_SERIAL_NO, C.ONE_ROW_PER_GROUP, C.ONE_ROW_PER_REPLY,
                                C.ALLOWED_REPORT_STATUS, C.RECEIPT_COVERAGE, C.MATCHES_PROVIDER_STATISTICS,
                                C.RECEIPTS_BY_CHANNEL}
    assert {name: e.passed for name, e in evaluations.items() if not e.passed} == {}
    assert evaluations[C.MATCHES_PROVIDER_STATISTICS].partition == DAY.isoformat()
    assert evaluations[C.MATCHES_PROVIDER_STATISTICS].metadata["receipts"].value == {"ours": 10, "provider": 10}
    assert evaluations[C.RECEIPT_COVERAGE].metadata["coverage"].value == 1.0


def test_missing_receipts_fail_reconciliation_and_coverage_naming_the_counts(warehouse):
    with open_warehouse(warehouse) as con:
        con.execute("update marts.message_status set report_status = null, user_receive_time = null "
                    "where serial_no in ('2026-01-05-0', '2026-01-05-1', '2026-01-05-9')")
    evaluations = run(warehouse, partition_key=DAY.isoformat())

    reconciliation = evaluations[C.MATCHES_PROVIDER_STATISTICS]
    assert (reconciliation.passed, reconciliation.severity, reconciliation.partition) == (
        False, dg.AssetCheckSeverity.ERROR, "2026-01-05")
    assert reconciliation.description == ("differs from the provider's statistics: receipts ours 7 vs provider 10 (-3); "
                                          "delivered ours 7 vs provider 9 (-2); failed ours 0 vs provider 1 (-1)")

    coverage = evaluations[C.RECEIPT_COVERAGE]
    assert (coverage.passed, coverage.severity, coverage.partition) == (False, dg.AssetCheckSeverity.WARN, "2026-01-05")
    assert coverage.metadata["coverage"].value == 0.7
    assert "3 of 10 messages have no receipt" in coverage.description
    assert evaluations[C.ONE_ROW_PER_SERIAL_NO].passed


def test_tolerance_is_a_fraction_of_the_providers_number(warehouse):
    with open_warehouse(warehouse) as con:
        con.execute("update marts.message_status set report_status = null where serial_no = '2026-01-05-0'")
    assert not run(warehouse, partition_key=DAY.isoformat())[C.MATCHES_PROVIDER_STATISTICS].passed
    # 1 of 10 receipts and 1 of 9 delivered missing: within 12 %.
    assert run(warehouse, partition_key=DAY.isoformat(), reconciliation_tolerance=0.12)[C.MATCHES_PROVIDER_STATISTICS].passed


def test_a_difference_inside_the_lookback_window_only_warns(warehouse):
    recent = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    with open_warehouse(warehouse) as con:
        add_day(con, recent, provider=(10, 10, 10, 0))  # receipts still arriving: 9 + 1 ours
    evaluations = run(warehouse, partition_key=recent.isoformat())
    reconciliation = evaluations[C.MATCHES_PROVIDER_STATISTICS]
    assert not reconciliation.passed
    assert reconciliation.severity == dg.AssetCheckSeverity.WARN
    # Coverage is judged only once the day has left the lookback window.
    coverage = evaluations[C.RECEIPT_COVERAGE]
    assert coverage.passed and "receipts still arrive" in coverage.description


def test_a_range_run_records_one_result_per_day_and_nothing_else(warehouse):
    with open_warehouse(warehouse) as con:
        add_day(con, DAY + dt.timedelta(days=1), statistics=False)
        add_day(con, DAY + dt.timedelta(days=2), provider=(11, 10, 9, 1))
    evaluations = run(warehouse, tags={"dagster/asset_partition_range_start": "2026-01-05",
                                       "dagster/asset_partition_range_end": "2026-01-08"})
    by_day = {e.partition: e for e in evaluations[C.MATCHES_PROVIDER_STATISTICS]}
    assert sorted(by_day) == ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"]
    assert by_day["2026-01-05"].passed
    assert by_day["2026-01-06"].passed and "no provider statistics" in by_day["2026-01-06"].description
    assert not by_day["2026-01-07"].passed
    assert by_day["2026-01-07"].description == ("differs from the provider's statistics: "
                                                "submitted ours 10 vs provider 11 (-1)")
    assert by_day["2026-01-08"].passed  # an empty day: nothing to compare
    coverage = {e.partition: e.passed for e in evaluations[C.RECEIPT_COVERAGE]}
    assert coverage == {"2026-01-05": True, "2026-01-06": True, "2026-01-07": True, "2026-01-08": True}


def test_without_a_sends_log_reconciliation_says_it_is_not_comparable(warehouse):
    """Receipts placed by their receipt's day against counts by send hour: not a difference."""
    with open_warehouse(warehouse) as con:
        con.execute("update marts.message_status set in_sends_log = false")
        con.execute("update raw.statistics_hourly set callback_count = 12")  # bucketed elsewhere
    reconciliation = run(warehouse, partition_key=DAY.isoformat())[C.MATCHES_PROVIDER_STATISTICS]
    assert reconciliation.passed
    assert "not comparable" in reconciliation.description


def test_repeated_keys_and_unknown_statuses_fail_and_duplicated_messages_block_the_metrics(warehouse):
    with open_warehouse(warehouse) as con:
        con.execute("insert into marts.message_status select * from marts.message_status where serial_no = '2026-01-05-3'")
        con.execute("update marts.message_status set report_status = 'DELIVRD' where serial_no = '2026-01-05-4'")
        for _ in range(2):
            con.execute("insert into marts.replies (reply_date, is_opt_out, record_key) values ($d, false, 'k')",
                        {"d": DAY})
    evaluations = run(warehouse, partition_key=DAY.isoformat(), expect_success=False)

    serials = evaluations[C.ONE_ROW_PER_SERIAL_NO]
    assert (serials.passed, serials.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert serials.metadata["duplicated_keys"].value == [{"sms_sdk_app_id": "1400000000", "serial_no": "2026-01-05-3", "rows": 2}]
    assert not evaluations[C.ONE_ROW_PER_REPLY].passed
    statuses = evaluations[C.ALLOWED_REPORT_STATUS]
    assert not statuses.passed
    assert statuses.metadata["unexpected_statuses"].value == {"DELIVRD": 1}
    # The check is blocking: the metrics built on marts.message_status did not run this time.
    assert C.ONE_ROW_PER_GROUP not in evaluations and C.MATCHES_PROVIDER_STATISTICS not in evaluations


def test_delivery_daily_uniqueness_treats_null_keys_as_equal(warehouse):
    with open_warehouse(warehouse) as con:
        for _ in range(2):
            con.execute("insert into marts.delivery_daily (day, iso_code, sign_name, template_id, receipts, delivered, "
                        "failed) values ('2026-02-01', 'CN', null, null, 1, 1, 0)")
    evaluations = run(warehouse, partition_key=DAY.isoformat())
    groups = evaluations[C.ONE_ROW_PER_GROUP]
    assert not groups.passed
    assert groups.metadata["duplicated_keys"].value == [
        {"sms_sdk_app_id": None, "day": "2026-02-01", "iso_code": "CN", "sign_name": None, "template_id": None, "rows": 2}]
