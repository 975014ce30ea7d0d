"""Keeping the warehouse compact: `smsledger lake-maintenance` and the Dagster job of the same name.

On a lake every commit adds a snapshot to the catalog and, for more than a few rows, Parquet files
(a slice rewrite: a data file and a delete file). Nothing is ever removed by itself: old files stay
for time travel. So, in this order, each step its own DuckLake transaction:

1. small inserts kept in the catalog (inlined rows) are written out as Parquet
   (`ducklake_flush_inlined_data`);
2. adjacent small files of a table are merged into larger ones, and files most of whose rows were
   deleted are rewritten (`ducklake_merge_adjacent_files`, `ducklake_rewrite_data_files`);
3. snapshots older than the retention (SMSLEDGER_LAKE_SNAPSHOT_RETENTION_DAYS, 7 by default) are
   expired: time travel to them fails from then on; the newest snapshot is always kept
   (`ducklake_expire_snapshots`);
4. files no snapshot references any more (replaced by step 2 or 3's work, now or in an earlier
   run) are deleted from storage, once they have been unreferenced for the grace period
   (`ducklake_cleanup_old_files`), and files in the data path that the catalog never recorded
   (written by a writer killed before its commit) once they are that old
   (`ducklake_delete_orphaned_files`).

Why a grace period (24 hours by default): a reader still scanning an old snapshot needs its files,
and a writer's new file is an "orphan" until its commit lands, so deleting young orphans could
delete a file a running writer is about to commit. DuckLake's `CHECKPOINT` runs the same functions
but with the catalog's global options and reports nothing; here each step's result is counted.

Other writers may run meanwhile: steps 1 and 2 commit like any writer and are re-run when their
commit loses to another's (`lake.retry_on_conflict`), and a writer whose commit loses to them is
re-run by its own retry. A kill at any point leaves the lake readable: each step commits whole or
not at all, a merge killed before its commit leaves orphans for a later run, and a cleanup killed
half-way leaves the rest scheduled (a file already gone is skipped the next time).

On a DuckDB file there are no snapshots or small files: `CHECKPOINT` writes the write-ahead log
into the file and gives back the space of deleted rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from pathlib import Path

import duckdb

from pipelines.warehouse import lake

DEFAULT_GRACE = dt.timedelta(hours=24)
# Orphaned files are never deleted younger than this, whatever the grace: one may be a running
# writer's, not committed yet (a commit of more than an hour is not expected).
ORPHAN_FLOOR = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class LakeFiles:
    """The files the lake's current snapshot reads, from `ducklake_table_info`."""

    data_files: int
    delete_files: int
    bytes: int


@dataclasses.dataclass
class MaintenanceReport:
    """What a maintenance run did: counts for the CLI's lines and the Dagster metadata."""

    warehouse: str  # "lake" or "file"
    seconds: float = 0.0
    # a lake
    retention: dt.timedelta | None = None
    inlined_rows_flushed: int = 0
    files_merged: int = 0  # files read by merges and rewrites
    files_written: int = 0  # the files they wrote instead
    snapshots_expired: int = 0
    snapshots_before: int = 0
    snapshots_after: int = 0
    old_files_deleted: int = 0
    orphaned_files_deleted: int = 0
    bytes_deleted: int = 0
    live_before: LakeFiles | None = None
    live_after: LakeFiles | None = None
    conflicts_retried: int = 0
    # a DuckDB file
    file_bytes_before: int = 0
    file_bytes_after: int = 0

    @property
    def files_deleted(self) -> int:
        return self.old_files_deleted + self.orphaned_files_deleted

    def lines(self) -> list[str]:
        if self.warehouse == "file":
            return [f"checkpointed the DuckDB file: {_size(self.file_bytes_before)} -> {_size(self.file_bytes_after)} "
                    f"(file and write-ahead log) in {self.seconds:.1f}s; a DuckDB file has no snapshots or small files "
                    "to remove"]
        before, after = self.live_before, self.live_after
        return [
            f"merged {self.files_merged} files into {self.files_written}, flushed {self.inlined_rows_flushed} inlined rows; "
            f"live files {before.data_files}+{before.delete_files} deletes -> {after.data_files}+{after.delete_files} deletes",
            f"expired {self.snapshots_expired} snapshots older than {_days(self.retention)} "
            f"({self.snapshots_before} -> {self.snapshots_after})",
            f"deleted {self.files_deleted} files no snapshot references ({self.old_files_deleted} replaced or expired, "
            f"{self.orphaned_files_deleted} orphaned), {_size(self.bytes_deleted)}, in {self.seconds:.1f}s",
        ]

    def metadata(self) -> dict[str, int | float | str]:
        """Flat values, as Dagster shows them."""
        if self.warehouse == "file":
            return {"warehouse": "file", "file_bytes_before": self.file_bytes_before,
                    "file_bytes_after": self.file_bytes_after, "seconds": round(self.seconds, 2)}
        before, after = self.live_before, self.live_after
        return {
            "warehouse": "lake", "retention_days": self.retention / dt.timedelta(days=1),
            "inlined_rows_flushed": self.inlined_rows_flushed, "files_merged": self.files_merged,
            "files_written": self.files_written, "snapshots_expired": self.snapshots_expired,
            "snapshots_before": self.snapshots_before, "snapshots_after": self.snapshots_after,
            "files_deleted": self.files_deleted, "old_files_deleted": self.old_files_deleted,
            "orphaned_files_deleted": self.orphaned_files_deleted, "bytes_deleted": self.bytes_deleted,
            "live_data_files_before": before.data_files, "live_data_files_after": after.data_files,
            "live_delete_files_before": before.delete_files, "live_delete_files_after": after.delete_files,
            "live_bytes_before": before.bytes, "live_bytes_after": after.bytes,
            "conflicts_retried": self.conflicts_retried, "seconds": round(self.seconds, 2),
        }


def maintain(con: duckdb.DuckDBPyConnection, *, retention: dt.timedelta,
             grace: dt.timedelta = DEFAULT_GRACE) -> MaintenanceReport:
    """Compact the warehouse behind `con` (writable): a lake as the module says, a DuckDB file by
    CHECKPOINT. `retention`: how long snapshots stay for time travel; `grace`: how long an
    unreferenced file stays before it is deleted."""
    if retention < dt.timedelta(0) or grace < dt.timedelta(0):
        raise ValueError("the retention and the grace period cannot be negative")
    started = time.monotonic()
    if lake.is_lake_connection(con):
        report = _maintain_lake(con, retention=retention, grace=grace)
    else:
        report = _checkpoint_file(con)
    report.seconds = time.monotonic() - started
    return report


def _maintain_lake(con: duckdb.DuckDBPyConnection, *, retention: dt.timedelta, grace: dt.timedelta) -> MaintenanceReport:
    report = MaintenanceReport("lake", retention=retention)
    catalog = lake.CATALOG
    report.live_before = _live_files(con)
    report.snapshots_before = _snapshot_count(con)

    def committed(sql: str, params: dict | None = None) -> list[tuple]:
        """One DuckLake transaction, re-run when its commit lost to another writer's."""
        def counted(attempt: int, exc: BaseException) -> None:
            report.conflicts_retried += 1

        return lake.retry_on_conflict(lambda: con.execute(sql, params or {}).fetchall(), on_retry=counted)

    report.inlined_rows_flushed = sum(
        rows for (rows,) in committed(f"select rows_flushed from ducklake_flush_inlined_data('{catalog}')"))
    for function in ("ducklake_merge_adjacent_files", "ducklake_rewrite_data_files"):
        for processed, created in committed(f"select files_processed, files_created from {function}('{catalog}')"):
            report.files_merged += processed
            report.files_written += created
    report.snapshots_expired = len(committed(
        f"select snapshot_id from ducklake_expire_snapshots('{catalog}', older_than => $cutoff)",
        {"cutoff": dt.datetime.now(dt.UTC) - retention}))
    # Taken after the expiry, so that with no grace the files it unreferenced go in this run. The same cutoff for the dry run and the deletion: both see the same files (a file scheduled
    # or written later is younger than it), so the bytes counted are those of the files deleted.
    now = dt.datetime.now(dt.UTC)
    # A running writer's Parquet file is an orphan until its commit lands: deleting it then leaves
    # the table pointing at a missing file. Whatever the grace asked, orphans wait ORPHAN_FLOOR.
    cutoffs = {"ducklake_cleanup_old_files": now - grace,
               "ducklake_delete_orphaned_files": now - max(grace, ORPHAN_FLOOR)}
    for function, field in (("ducklake_cleanup_old_files", "old_files_deleted"),
                            ("ducklake_delete_orphaned_files", "orphaned_files_deleted")):
        cutoff = cutoffs[function]
        listed = [path for (path,) in con.execute(
            f"select path from {function}('{catalog}', dry_run => true, older_than => $cutoff)", {"cutoff": cutoff}
        ).fetchall()]
        sizes = _file_sizes(con, listed)
        deleted = [path for (path,) in committed(
            f"select path from {function}('{catalog}', older_than => $cutoff)", {"cutoff": cutoff})]
        setattr(report, field, len(deleted))
        report.bytes_deleted += sum(sizes.get(path, 0) for path in deleted)
    report.live_after = _live_files(con)
    report.snapshots_after = _snapshot_count(con)
    return report


def _live_files(con: duckdb.DuckDBPyConnection) -> LakeFiles:
    data, deletes, size = con.execute(
        "select coalesce(sum(file_count), 0), coalesce(sum(delete_file_count), 0), "
        f"coalesce(sum(file_size_bytes + delete_file_size_bytes), 0) from ducklake_table_info('{lake.CATALOG}')"
    ).fetchone()
    return LakeFiles(int(data), int(deletes), int(size))


def _snapshot_count(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute(f"select count(*) from {lake.CATALOG}.snapshots()").fetchone()[0]


def _file_sizes(con: duckdb.DuckDBPyConnection, paths: list[str]) -> dict[str, int]:
    """The sizes of files in the data path, a folder or object storage alike (read_blob reads only
    their metadata when the content is not selected; a file already gone is left out)."""
    if not paths:
        return {}
    return dict(con.execute("select filename, size from read_blob($paths)", {"paths": paths}).fetchall())


def _checkpoint_file(con: duckdb.DuckDBPyConnection) -> MaintenanceReport:
    (path,) = con.execute("select path from duckdb_databases() where database_name = current_database()").fetchone()
    report = MaintenanceReport("file", file_bytes_before=_on_disk(Path(path)))
    con.execute("checkpoint")
    report.file_bytes_after = _on_disk(Path(path))
    return report


def _on_disk(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}.wal")) if p.exists())


def _size(count: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def _days(span: dt.timedelta) -> str:
    days = span / dt.timedelta(days=1)
    return f"{days:g} day{'' if days == 1 else 's'}"
