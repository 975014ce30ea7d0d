"""The code location: one `Definitions` with the asset graph, resources, jobs and schedules.

Loaded by `dagster dev` from the repository root (`[tool.dagster]` in pyproject.toml) and by the
`smsledger` CLI. Partitions and schedules follow SMSLEDGER_TIMEZONE / SMSLEDGER_START_DATE;
secrets reach the resources only through `dg.EnvVar` when a run starts.
"""

from __future__ import annotations

import os
import warnings

import dagster as dg

# Single-run backfill policies and partitioned asset checks are marked beta/preview in 1.13; we
# rely on them knowingly, and the warnings would bury every CLI run's output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from assets.checks import build_checks
from assets.ingestion import daily_assets, queue_pages, raw_queue_records, sending_app_records, signs_and_templates
from assets.marts import mart_assets
from assets.staging import staging_assets
from pipelines.config import Settings
from pipelines.days import daily_partitions
from assets.resources import MetricsConfig, SmsApiResource, SourcesResource, WarehouseResource
from pipelines.app.runner import PARTITION_RANGE_END, PARTITION_RANGE_START

DRAIN_JOB = "drain_queues"
DAILY_JOB = "daily_partitions"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings.start_date, settings.timezone)
    daily = [*daily_assets(partitions), *staging_assets(partitions), *mart_assets(partitions)]
    drain_assets = [queue_pages, raw_queue_records, sending_app_records, signs_and_templates]

    drain_job = dg.define_asset_job(
        DRAIN_JOB, selection=dg.AssetSelection.assets(*drain_assets),
        description="Drain the provider's queues into the spool and raw tables; load the sending application's files.",
    )
    daily_job = dg.define_asset_job(
        DAILY_JOB, selection=dg.AssetSelection.assets(*daily), partitions_def=partitions,
        description="Statistics, gap filling, staging and marts of daily partitions.",
    )

    drain_schedule = dg.ScheduleDefinition(
        name="drain_every_10_minutes", job=drain_job, cron_schedule=_env("SMSLEDGER_DRAIN_CRON", "*/10 * * * *"),
        execution_timezone=settings.timezone, default_status=dg.DefaultScheduleStatus.STOPPED,
    )

    @dg.schedule(name="daily_with_lookback", job=daily_job, cron_schedule=_env("SMSLEDGER_DAILY_CRON", "30 0 * * *"),
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
        assets=[*drain_assets, *daily],
        asset_checks=build_checks(partitions),
        jobs=[drain_job, daily_job],
        schedules=[drain_schedule, daily_schedule],
        resources={
            "sms_api": SmsApiResource(
                endpoint=settings.endpoint,
                secret_id=dg.EnvVar("TENCENTCLOUD_SECRET_ID"),
                secret_key=dg.EnvVar("TENCENTCLOUD_SECRET_KEY"),
                session_token=os.environ.get("TENCENTCLOUD_SESSION_TOKEN") and dg.EnvVar("TENCENTCLOUD_SESSION_TOKEN"),
                sdk_app_id=settings.sdk_app_id,
                region=settings.region,
                provider_timezone=settings.provider_timezone,
                rate_limit_scale=float(_env("SMSLEDGER_RATE_LIMIT_SCALE", "1")),
            ),
            "warehouse": WarehouseResource(path=str(settings.warehouse), spool_dir=str(settings.spool_dir)),
            "sources": SourcesResource(sends_path=settings.sends_path, conversions_path=settings.conversions_path),
            "metrics": MetricsConfig(timezone=settings.timezone, lookback_days=settings.lookback_days,
                                     conversion_window_days=settings.conversion_window_days),
        },
    )


defs = build_definitions(Settings.from_env(require_credentials=False))
