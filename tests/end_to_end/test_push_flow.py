"""Push callbacks beside the pulls, through Dagster: the simulator pushes to `smsledger receive`,
the sensor pushed_batches has them loaded, the sensor pushed_receipt_days rebuilds the send days
of their messages (not the day they arrived), and the check receipts_by_channel counts, per day,
the receipts that came by push, by pull and by both."""

import datetime as dt

import dagster as dg
from support import pipeline_settings, wait_for_pushes

from assets.definitions import build_definitions
from pipelines.app.receive import Receiver
from pipelines.app.runner import instance, run_days, run_drain
from pipelines.config import Settings
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator

TOKEN = "tok_cHVzaGVkLWZsb3ctdGVzdA"


def test_pushed_receipts_rebuild_their_send_days_and_are_counted_by_channel(tmp_path):
    midnight = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(0), dt.UTC)
    first = midnight.date() - dt.timedelta(days=2)
    receiver_settings = Settings(secret_id="", secret_key="", spool_dir=tmp_path / "spool", callback_token=TOKEN)
    with Receiver(receiver_settings) as receiver:
        config = SimulatorConfig(port=0, seed=19, days=2, messages_per_day=250, out_dir=tmp_path / "sim",
                                 now=midnight.timestamp(), clock_runs=False, rate_scale=5,
                                 callback_url=f"{receiver.url}/callbacks/{TOKEN}", callback_retry_seconds=0.2)
        with Simulator(config) as sim:
            pushes = wait_for_pushes(sim)
            assert all(p["acknowledged"] for p in pushes)
            pushed_receipts = sum(len(p["records"]) for p in pushes if p["kind"] == "status")
            settings = pipeline_settings(tmp_path, sim, first, rate_limit_scale=5)
            defs = build_definitions(settings)
            with instance(settings) as dagster_instance:
                # the spool holds the pushes: the first sensor asks for a load of them
                requested = defs.get_sensor_def("pushed_batches")(dg.build_sensor_context(instance=dagster_instance))
                assert isinstance(requested, dg.RunRequest)
                again = defs.get_sensor_def("pushed_batches")(
                    dg.build_sensor_context(instance=dagster_instance, cursor=requested.run_key.removeprefix("pushed-")))
                assert isinstance(again, dg.SkipReason)  # nothing new since its cursor
                loaded = defs.resolve_job_def("load_spool").execute_in_process(instance=dagster_instance)
                metadata = loaded.get_asset_materialization_events()[0].materialization.metadata
                assert metadata["new_records"].value >= pushed_receipts > 0
                assert metadata["pushed_send_days"].value == [first.isoformat(),
                                                             (first + dt.timedelta(days=1)).isoformat()]
                # the load names the send days: the second sensor asks for one run over them
                evaluated = defs.get_sensor_def("pushed_receipt_days")(dg.build_sensor_context(instance=dagster_instance))
                (days,) = list(evaluated) if not isinstance(evaluated, dg.RunRequest) else [evaluated]
                assert isinstance(days, dg.RunRequest)
                assert (days.tags["dagster/asset_partition_range_start"],
                        days.tags["dagster/asset_partition_range_end"]) == (first.isoformat(),
                                                                            (first + dt.timedelta(days=1)).isoformat())
            # the drain keeps pulling beside the pushes (this simulator keeps pushed records queued)
            run_drain(settings, log=lambda _: None)
            outcome = run_days(settings, first, first + dt.timedelta(days=1), log=lambda _: None)
    assert not outcome.errors
    with instance(settings) as dagster_instance:
        history = dagster_instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(["marts", "message_status"]), "receipts_by_channel"), limit=10)
    by_day = {record.partition: record.evaluation for record in history if record.run_id == history[0].run_id}
    assert sorted(by_day) == [first.isoformat(), (first + dt.timedelta(days=1)).isoformat()]
    both = sum(e.metadata["both"].value for e in by_day.values())
    assert both > 0 and all(e.passed for e in by_day.values())
    assert sum(e.metadata["callback_only"].value for e in by_day.values()) == 0
