"""Gap filling runs in the drain job, after the queues are loaded: its metadata says how many
by-number calls it made and why, a drain stopped by its time budget makes none, and the daily job
no longer asks anything."""

import datetime as dt
import time

import dagster as dg
from support import pipeline_settings

from assets.definitions import DAILY_JOB, DRAIN_JOB, build_definitions
from pipelines.app.runner import instance, run_drain
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator
from pipelines.tencent import actions as A


def gap_fill_metadata(settings, outcome):
    """The metadata of raw/gap_fill in the drain run that gave `outcome`."""
    with instance(settings) as dagster_instance:
        event = dagster_instance.get_latest_materialization_event(dg.AssetKey(["raw", "gap_fill"]))
    assert event.run_id == outcome.run_id
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_the_drain_job_fills_gaps_of_lost_pulls_only_and_says_why(tmp_path):
    now = time.time() - 3600
    config = SimulatorConfig(port=0, seed=21, days=2, messages_per_day=3000, out_dir=tmp_path / "sim", now=now,
                             clock_runs=False, rate_scale=0)
    with Simulator(config) as sim:
        first = dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(days=2)
        settings = pipeline_settings(tmp_path, sim, first)
        defs = build_definitions(settings)
        for job, included in ((DRAIN_JOB, True), (DAILY_JOB, False)):
            keys = {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer.executable_asset_keys}
            assert ("raw/gap_fill" in keys) == included

        # a time budget too short to drain: a backlog, which is no loss
        backlog = gap_fill_metadata(settings, run_drain(settings, time_budget_seconds=0.0, log=lambda _: None))
        assert sim.state.queue_positions()[A.PULL_SEND_STATUS]["waiting"] > 1000
        assert backlog["calls"] == 0 and backlog["lost_pulls_searched"] == 0

        # broken pulls: each one is searched in the same run, once the queue is loaded, within twice
        # what it can have held
        sim.set_faults("PullSmsSendStatus:truncate=0.05")
        before = sum(sim.service.stats.requests[a] for a in A.BY_NUMBER_ACTIONS)
        lost = gap_fill_metadata(settings, run_drain(settings, log=lambda _: None))
        calls = sum(sim.service.stats.requests[a] for a in A.BY_NUMBER_ACTIONS) - before
        sim.set_faults("")
        # the next run: only what the last one left (a pull lost at the very end waits for the next)
        again = gap_fill_metadata(settings, run_drain(settings, log=lambda _: None))
    print(f"drain job with 5% truncated receipt pulls: {lost}")
    assert lost["lost_pulls_searched"] > 0 and 0 < lost["calls"] == calls <= 2 * lost["possible_lost_records"]
    assert lost["calls"] == sum(v for k, v in lost.items() if k.startswith("calls_"))
    assert lost["records_found"] == lost["new_records"] > 0
    assert again["calls"] <= 2 * again["possible_lost_records"] and again["searches_left"] == 0
