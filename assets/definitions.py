"""The code location: one `Definitions` with the asset graph, resources, jobs and schedules.

Loaded by `dagster dev` from the repository root (`[tool.dagster]` in pyproject.toml) and by the
`smsledger` CLI, each from one `Settings`. Partitions and schedules follow SMSLEDGER_TIMEZONE /
SMSLEDGER_START_DATE. Secrets reach the resources only through `dg.EnvVar` when a run starts, so
they are never part of a definition, a run's config or the instance's storage; the one exception
is the simulator's public demo key pair.
"""

from __future__ import annotations

import warnings

import dagster as dg

# Single-run backfill policies and partitioned asset checks are marked beta/preview in 1.13; we
# rely on them knowingly, and the warnings would bury every CLI run's output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from assets.checks import build_checks  # noqa: E402
from assets.housekeeping import release_dead_runs_sensor  # noqa: E402
from assets.ingestion import (  # noqa: E402
    daily_assets, gap_fill, personal_data_purge, prices, queue_pages, raw_queue_records, sending_app_records,
    signs_and_templates,
)
from assets.maintenance import maintenance_definitions  # noqa: E402
from assets.marts import mart_assets  # noqa: E402
from assets.options import PARTITION_RANGE_END, PARTITION_RANGE_START  # noqa: E402
from assets.resources import (  # noqa: E402
    MetricsConfig, PersonalDataConfig, SmsApiResource, SourcesResource, WarehouseResource,
)
from assets.sensors import LOAD_SPOOL_JOB, push_sensors  # noqa: E402
from assets.staging import staging_assets  # noqa: E402
from pipelines.config import Settings  # noqa: E402
from pipelines.days import daily_partitions  # noqa: E402

DRAIN_JOB = "drain_queues"
DAILY_JOB = "daily_partitions"


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings.start_date, settings.timezone)
    daily = [*daily_assets(partitions), *staging_assets(partitions),
             *mart_assets(partitions, reply_window_days=settings.reply_window_days)]
    drain_assets = [queue_pages, raw_queue_records, sending_app_records, gap_fill, signs_and_templates, prices,
                    personal_data_purge]

    drain_job = dg.define_asset_job(
        DRAIN_JOB, selection=dg.AssetSelection.assets(*drain_assets),
        description="Drain the provider's queues into the spool and raw tables; load the sending application's files; "
                    "ask by phone number for what lost pulls took off the queues.",
    )
    load_job = dg.define_asset_job(
        LOAD_SPOOL_JOB, selection=dg.AssetSelection.assets(raw_queue_records),
        description="Load what the spool holds (pushed callbacks, responses a failed drain left) into the raw tables.",
    )
    daily_job = dg.define_asset_job(
        DAILY_JOB, selection=dg.AssetSelection.assets(*daily), partitions_def=partitions,
        description="Statistics, staging and marts of daily partitions.",
    )

    maintenance, maintenance_job, maintenance_schedule = maintenance_definitions(settings)

    drain_schedule = dg.ScheduleDefinition(
        name="drain_every_10_minutes", job=drain_job, cron_schedule=settings.drain_cron,
        execution_timezone=settings.timezone, default_status=dg.DefaultScheduleStatus.STOPPED,
    )

    @dg.schedule(name="daily_with_lookback", job=daily_job, cron_schedule=settings.daily_cron,
                 execution_timezone=settings.timezone, default_status=dg.DefaultScheduleStatus.STOPPED)
    def daily_schedule(context: dg.ScheduleEvaluationContext):
        """Yesterday and the days before it again, in one run (one range, so the marts of a day are
        built after the replies and receipts of the days after it): receipts arrive late and move
        messages from pending to delivered or failed; conversions count for 7 days after sending."""
        keys = partitions.get_partition_keys(current_time=context.scheduled_execution_time)
        if not keys:
            return dg.SkipReason("no complete partition yet")
        window = keys[-(settings.rematerialize_days + 1):]
        return dg.RunRequest(
            run_key=f"{window[0]}..{window[-1]}",
            tags={PARTITION_RANGE_START: window[0], PARTITION_RANGE_END: window[-1]},
        )

    return dg.Definitions(
        assets=[*drain_assets, *daily, maintenance],
        asset_checks=build_checks(partitions),
        jobs=[drain_job, daily_job, load_job, maintenance_job],
        schedules=[drain_schedule, daily_schedule, maintenance_schedule],
        sensors=[release_dead_runs_sensor, *push_sensors(settings, load_job, daily_job)],
        resources={
            "sms_api": SmsApiResource.from_settings(settings),
            "warehouse": WarehouseResource.from_settings(settings),
            "sources": SourcesResource(sends_path=settings.sends_path, conversions_path=settings.conversions_path,
                                       prices_path=str(settings.prices_path) if settings.prices_path else None),
            "metrics": MetricsConfig.from_settings(settings),
            "personal_data": PersonalDataConfig.from_settings(settings),
        },
    )


defs = build_definitions(Settings.from_env(require_credentials=False))
