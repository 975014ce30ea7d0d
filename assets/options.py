"""What the assets share: the warehouse pool, the retry policy of steps that call the provider,
the options of a daily asset, and the tags of a partition-range run.

Import from here, not from a sibling asset module, so the asset modules do not depend on each
other's internals.
"""

from typing import Any

import dagster as dg

# Every step that writes the warehouse runs in this pool. Its limit is the Dagster instance's: 1 for
# a DuckDB file (dagster.yaml), which takes one writing process; more for a lake
# (dagster.postgres.yaml: 4), which takes writers in parallel and retries the commits that collide
# (pipelines/warehouse/lake.py). Loads of the spool stay one at a time even then
# (WarehouseResource.load_spool).
WAREHOUSE_POOL = "duckdb_warehouse"

# Steps that call the provider retry transient faults (throttling, 5xx) a few times; permanent
# errors are raised as `dg.Failure(allow_retries=False)` and fail at once.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)

# A single run over a range of partitions ("single-run backfill"): the tags Dagster reads.
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"


def daily(partitions: dg.DailyPartitionsDefinition, group: str, *kinds: str) -> dict[str, Any]:
    """The options of a daily asset that writes the warehouse: its partitions, the writers' pool,
    and a backfill of many days as one run (each step reads and writes the range at once)."""
    return dict(partitions_def=partitions, group_name=group, kinds={"duckdb", *kinds}, pool=WAREHOUSE_POOL,
                backfill_policy=dg.BackfillPolicy.single_run())
