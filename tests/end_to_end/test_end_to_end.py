"""End to end against the simulator over loopback HTTP: the Dagster jobs drain, load, fill gaps,
stage and build marts, and the marts match the simulator's ground truth message by message, with
late receipts, repeated and dirty records in the traffic."""

import datetime as dt
import statistics as stats
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from support import pipeline_settings

from pipelines.app.runner import run_days, run_drain
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator
from pipelines.warehouse.db import connect

DAYS = 7  # a backfill of 7 days is compared with the daily runs over the same days
RATE_SCALE = 5  # the simulator and the client both scale the documented limits
OPT_OUT = {"td", "t", "退订", "stop", "unsubscribe"}


class Pipeline:
    def __init__(self, root: Path, sim: Simulator, first: dt.date, last: dt.date, **settings):
        self.root, self.sim, self.first, self.last = root, sim, first, last
        self.settings = pipeline_settings(root, sim, first - dt.timedelta(days=3), rate_limit_scale=RATE_SCALE, **settings)
        self.warehouse = self.settings.warehouse

    def sync(self, first=None, last=None):
        run_drain(self.settings, log=lambda _: None)
        run_days(self.settings, first or self.first, last or self.last, log=lambda _: None)

    def query(self, sql, params=None) -> pl.DataFrame:
        con = connect(self.warehouse, read_only=True)  # a DuckDB file or a lake (test_lake_end_to_end.py)
        try:
            return con.execute(sql, params or {}).pl()
        finally:
            con.close()

    def expected_messages(self) -> pl.DataFrame:
        """Per Ok message sent in the days: its latest receipt due by the simulator clock."""
        now = self.sim.state.now()
        rows = []
        for m in self.sim.state.truth_messages():
            day = dt.datetime.fromtimestamp(m["send_time"], dt.UTC).date()
            if m["code"] != "Ok" or not self.first <= day <= self.last:
                continue
            due = [r for r in m["receipts"] if r["user_receive_time"] <= now]
            final = max(due, key=lambda r: r["user_receive_time"]) if due else None
            conversion = m["conversion_time"]
            converted = conversion is not None and conversion <= now and 0 <= conversion - m["send_time"] < 7 * 86400
            rows.append({
                "serial_no": m["serial_no"], "send_date": day, "phone_e164": m["phone_e164"],
                "country_code": m["country_code"], "iso_code": m["iso_code"], "sign_name": m["sign_name"],
                "template_id": str(m["template_id"]), "fee": m["fee"], "sent_at_s": m["send_time"],
                "report_status": final and final["report_status"], "description": final and final["description"],
                "receive_s": final and final["user_receive_time"], "converted_s": conversion if converted else None,
            })
        return pl.DataFrame(rows)

    def zero_time_replies(self) -> set[tuple]:
        """Replies that reached us only with ReplyTime 0: unplaceable, so quarantined."""
        seen: dict[tuple, set[str]] = {}
        for response in self.sim.state.truth_handed_out():
            if response["outcome"] == "delivered" and response["action"].startswith("PullSmsReplyStatus"):
                for record in response["records"]:
                    key = (record["PhoneNumber"], record["ReplyTime"], record["ReplyContent"])
                    seen.setdefault(key, set()).update(record["dirty"] or ["clean"])
        return {key for key, variants in seen.items() if variants == {"time_zero"}}

    def zero_time_serials(self) -> set[str]:
        """Messages one of whose receipts reached us only with UserReceiveTime 0 (a dirty variant):
        its order among the message's receipts is unknown, so those are compared by status only."""
        seen: dict[tuple, set[str]] = {}
        for response in self.sim.state.truth_handed_out():
            if response["outcome"] != "delivered" or not response["action"].startswith("PullSmsSendStatus"):
                continue
            for record in response["records"]:
                key = (record["SerialNo"], record["ReportStatus"], record["UserReceiveTime"])
                seen.setdefault(key, set()).update(record["dirty"] or ["clean"])
        return {key[0] for key, variants in seen.items() if variants == {"time_zero"}}


def synced_pipeline(root: Path, **settings) -> Iterator[Pipeline]:
    """A simulated week, drained and built by the daily job; `settings` override the pipeline's
    (the warehouse: a lake, in test_lake_end_to_end.py)."""
    # The simulator's clock stands three days back, so that advancing it (late receipts) never
    # moves record times beyond the real present, where they would be flagged as far future.
    midnight = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(0), dt.UTC) - dt.timedelta(days=3)
    config = SimulatorConfig(port=0, seed=41, days=DAYS, messages_per_day=450, out_dir=root / "sim",
                             now=midnight.timestamp(), clock_runs=False, rate_scale=RATE_SCALE,
                             faults="PullSmsSendStatus:dirty=0.08;PullSmsReplyStatus:dirty=0.08")
    with Simulator(config) as sim:
        first = midnight.date() - dt.timedelta(days=DAYS)
        last = midnight.date() - dt.timedelta(days=1)
        p = Pipeline(root, sim, first, last, **settings)
        p.sync()
        yield p


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    yield from synced_pipeline(tmp_path_factory.mktemp("e2e"))


def compare(pipeline: Pipeline) -> tuple[pl.DataFrame, set[str]]:
    # whole seconds, as the simulator generates them (a millisecond copy keeps its fraction)
    ours = pipeline.query("select *, floor(epoch(sent_at))::bigint as sent_at_s, "
                          "floor(epoch(user_receive_time))::bigint as receive_s, "
                          "floor(epoch(converted_at))::bigint as converted_s from marts.message_status")
    expected = pipeline.expected_messages()
    joined = expected.join(ours, on="serial_no", how="full", suffix="_ours", coalesce=True)
    return joined, pipeline.zero_time_serials()


def test_every_message_matches_the_ground_truth(pipeline):
    joined, zero_time = compare(pipeline)
    assert joined.filter(pl.col("send_date").is_null() | pl.col("send_date_ours").is_null()).is_empty()
    for column in ("send_date", "phone_e164", "country_code", "iso_code", "sign_name", "template_id", "fee",
                   "sent_at_s", "report_status", "converted_s"):
        mismatched = joined.filter(pl.col(column).ne_missing(pl.col(f"{column}_ours")))
        assert mismatched.is_empty(), (column, mismatched.select("serial_no", column, f"{column}_ours").head())
    exact = joined.filter(~pl.col("serial_no").is_in(list(zero_time)))
    for column in ("receive_s", "description"):
        mismatched = exact.filter(pl.col(column).ne_missing(pl.col(f"{column}_ours")))
        assert mismatched.is_empty(), (column, mismatched.select("serial_no", column, f"{column}_ours").head())
    # the dirty traffic really was dirty, and little was compared by status only
    assert len(zero_time) < 0.02 * joined.height
    dirty = pipeline.query("select count(*) filter (extra_fields is not null) as extra from raw.send_status")
    assert dirty["extra"][0] > 0


def test_repeated_records_are_stored_once(pipeline):
    counts = pipeline.query("select count(*) as n, count(distinct record_key) as keys from raw.send_status")
    assert counts["n"][0] == counts["keys"][0]
    handed = [r for h in pipeline.sim.state.truth_handed_out() if h["action"] == "PullSmsSendStatus" for r in h["records"]]
    distinct = {(r["SerialNo"], r["ReportStatus"], r["UserReceiveTime"]) for r in handed}
    assert len(handed) > len(distinct)  # the simulator repeated some records
    # zero-time copies get a key of their own (their time is unknown), the rest count once
    assert len(distinct) <= counts["n"][0] <= len(distinct) + sum(1 for r in handed if "time_zero" in r["dirty"])


def test_replies_are_attributed_by_the_rule(pipeline):
    now = pipeline.sim.state.now()
    messages = pipeline.expected_messages().filter(pl.col("report_status") == "SUCCESS")
    by_phone: dict[str, list[dict]] = {}
    for m in messages.iter_rows(named=True):
        by_phone.setdefault(m["phone_e164"], []).append(m)
    expected = {}
    for r in pipeline.sim.state.truth_replies():
        day = dt.datetime.fromtimestamp(r["time"], dt.UTC).date()
        if r["time"] > now or not pipeline.first <= day <= pipeline.last:
            continue
        candidates = [m for m in by_phone.get(r["phone"], []) if m["sign_name"] == r["sign"]
                      and r["time"] - 72 * 3600 < m["sent_at_s"] <= r["time"]]
        latest = max(candidates, key=lambda m: m["sent_at_s"], default=None)
        expected[(r["phone"], r["time"], r["content"])] = (latest and latest["serial_no"], r["is_opt_out"])
    ours = pipeline.query("select phone_e164, floor(epoch(reply_time))::bigint as t, reply_content, serial_no, is_opt_out "
                          "from marts.replies")
    got = {(p, t, c): (s, o) for p, t, c, s, o in ours.iter_rows()}
    quarantined = pipeline.zero_time_replies()
    assert {k for k in expected if k not in got} == {k for k in expected if k in quarantined}
    reasons = pipeline.query("select reason from raw.quarantine where source like 'PullSmsReply%'")["reason"].to_list()
    assert reasons.count("reply without a usable ReplyTime") >= len(quarantined & set(expected))
    expected = {k: v for k, v in expected.items() if k not in quarantined}
    # messages sent before the first day can be attributed by us but are not in `messages`
    early = {k for k, v in got.items() if v[0] is not None and v[0] not in set(messages["serial_no"])}
    assert {k: v for k, v in got.items() if k not in early} == {k: v for k, v in expected.items() if k not in early}
    assert sum(o for _, o in got.values()) > 0 and sum(s is not None for s, _ in got.values()) > 0


def test_delivery_metrics_match_the_ground_truth(pipeline):
    expected = pipeline.expected_messages().with_columns(latency=pl.col("receive_s") - pl.col("sent_at_s"))
    zero_time = pipeline.zero_time_serials()
    ours = pipeline.query("select day, iso_code, sum(submitted) submitted, sum(delivered) delivered, sum(failed) failed, "
                          "sum(pending) pending from marts.delivery_daily group by all")
    truth = expected.group_by(pl.col("send_date").alias("day"), "iso_code").agg(
        submitted=pl.len(), delivered=(pl.col("report_status") == "SUCCESS").sum(),
        failed=(pl.col("report_status") == "FAIL").sum(), pending=pl.col("report_status").is_null().sum(),
    )
    joined = truth.join(ours, on=["day", "iso_code"], how="full", coalesce=True, suffix="_ours")
    for column in ("submitted", "delivered", "failed", "pending"):
        assert (joined[column].cast(pl.Int64) == joined[f"{column}_ours"].cast(pl.Int64)).all(), column

    # latency percentiles of one well-populated group, within a second
    group = pipeline.query("select day, iso_code, sign_name, template_id, delivered, latency_p50_s, latency_p95_s, "
                           "delivery_rate, submitted from marts.delivery_daily order by delivered desc limit 1").row(0, named=True)
    lat = expected.filter((pl.col("send_date") == group["day"]) & (pl.col("iso_code") == group["iso_code"])
                          & (pl.col("sign_name") == group["sign_name"]) & (pl.col("template_id") == group["template_id"])
                          & (pl.col("report_status") == "SUCCESS") & ~pl.col("serial_no").is_in(list(zero_time)))
    values = sorted(lat["latency"].to_list())
    assert abs(stats.quantiles(values, n=100, method="inclusive")[49] - group["latency_p50_s"]) <= 1
    assert abs(stats.quantiles(values, n=100, method="inclusive")[94] - group["latency_p95_s"]) <= 1
    assert group["delivery_rate"] == pytest.approx(group["delivered"] / group["submitted"])


def test_without_a_price_table_fee_counts_stay_and_cost_is_null(pipeline):
    spend = pipeline.query("select sum(messages) messages, sum(fee) fee, count(cost) priced, count(currency) currencies "
                           "from marts.spend_daily").row(0, named=True)
    expected = pipeline.expected_messages()
    assert (spend["messages"], spend["fee"]) == (expected.height, expected["fee"].sum())
    assert (spend["priced"], spend["currencies"]) == (0, 0)
    assert pipeline.query("select count(cost) n from marts.message_status")["n"][0] == 0


def test_conversion_and_reply_metrics_match_the_ground_truth(pipeline):
    expected = pipeline.expected_messages()
    ours = pipeline.query("select day, sum(conversions) conversions, sum(delivered) delivered, sum(replies) replies, "
                          "sum(opt_outs) opt_outs from marts.conversion_daily group by day order by day")
    truth = expected.group_by(pl.col("send_date").alias("day")).agg(
        conversions=pl.col("converted_s").is_not_null().sum(), delivered=(pl.col("report_status") == "SUCCESS").sum(),
    ).sort("day")
    assert ours["conversions"].to_list() == truth["conversions"].to_list()
    assert ours["delivered"].to_list() == truth["delivered"].to_list()
    attributed = pipeline.query(
        "select m.send_date as day, count(*) replies, count(*) filter (is_opt_out) opt_outs "
        "from marts.replies r join marts.message_status m using (serial_no) group by all order by day")
    merged = ours.join(attributed, on="day", how="left", suffix="_replies").fill_null(0)
    assert merged["replies"].to_list() == merged["replies_replies"].to_list()
    assert merged["opt_outs"].to_list() == merged["opt_outs_replies"].to_list()


def test_reconciliation_with_the_provider_is_exact(pipeline):
    recon = pipeline.query("select * from marts.reconciliation_daily where day between $a and $b",
                           {"a": pipeline.first, "b": pipeline.last})
    assert recon.height == DAYS
    for column in ("submitted_diff", "receipts_diff", "delivered_diff", "failed_diff"):
        assert recon[column].to_list() == [0] * DAYS, column


def test_each_partition_of_the_range_run_carries_its_own_days_figures(pipeline):
    """The UI's plots over partitions: after one run over the whole range, each day's
    materialization holds that day's counts (not the run's totals), and each day has its own
    check result, with no result outside a partition."""
    from dagster._core.storage.event_log.base import AssetRecordsFilter

    expected = pipeline.expected_messages()
    per_day = dict(expected.group_by("send_date").len().iter_rows())
    with dg.DagsterInstance.from_config(str(pipeline.settings.dagster_home)) as instance:
        seen = {}
        for day in [pipeline.first + dt.timedelta(days=i) for i in range(DAYS)]:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=dg.AssetKey(["marts", "delivery_daily"]), asset_partitions=[day.isoformat()]),
                limit=1).records
            metadata = records[0].asset_materialization.metadata
            seen[day] = metadata["submitted"].value
            assert metadata["dagster/row_count"].value > 0
            assert "dagster/column_schema" in metadata
        assert seen == per_day
        assert len(set(seen.values())) > 1  # days differ: these are not run totals
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(["marts", "reconciliation_daily"]), "matches_provider_statistics"), limit=50)
        latest_run = history[0].run_id
        latest = [record for record in history if record.run_id == latest_run]
        assert sorted(record.partition for record in latest) == sorted(d.isoformat() for d in per_day)


def test_rematerializing_gives_identical_tables_and_daily_runs_equal_the_backfill(pipeline):
    tables = ["marts.message_status", "marts.replies", "marts.delivery_daily", "marts.conversion_daily",
              "marts.failure_reasons_daily", "marts.reconciliation_daily", "staging.receipts", "staging.replies"]

    def snapshot():
        return {t: pipeline.query(f"select * from {t} order by all") for t in tables}

    before = snapshot()
    run_days(pipeline.settings, pipeline.first, pipeline.last, log=lambda _: None)
    again = snapshot()
    for day in [pipeline.first + dt.timedelta(days=i) for i in range(DAYS)]:
        run_days(pipeline.settings, day, day, log=lambda _: None)
    daily = snapshot()
    for t in tables:
        assert before[t].equals(again[t]), t
        assert before[t].equals(daily[t]), t


def test_late_receipts_move_messages_from_pending(pipeline):
    pending_before = pipeline.query("select count(*) n from marts.message_status where report_status is null")["n"][0]
    pipeline.sim.advance(2 * 86400)
    pipeline.sync()
    joined, _ = compare(pipeline)
    assert joined.filter(pl.col("report_status").ne_missing(pl.col("report_status_ours"))).is_empty()
    pending_after = pipeline.query("select count(*) n from marts.message_status where report_status is null")["n"][0]
    assert pending_after < pending_before


def test_statistics_are_asked_again_for_hours_whose_receipts_came_late(pipeline):
    """After late receipts (the test above moved the simulator's clock two days on), the hours they
    belong to were pulled long after their send time by our clock, yet the provider's counts moved:
    a backfill asks again for those hours, and every day matches the provider exactly."""
    outcome = run_days(pipeline.settings, pipeline.first, pipeline.last, log=lambda _: None)
    assert outcome.errors == []
    test_reconciliation_with_the_provider_is_exact(pipeline)
