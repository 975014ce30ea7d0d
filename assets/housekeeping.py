"""Runs whose process died: marked failed, and their warehouse pool slots released.

Every step that writes the warehouse holds a slot of the pool `duckdb_warehouse` (limit 1) in the
Dagster instance. A process killed inside such a step (SIGKILL, the OOM killer, a machine that went
down) never gives its slot back, and every later run would wait for it forever. Dagster's own run
monitoring cannot tell: the default run launcher has no worker health check, and runs the CLI
executes in process have no launcher at all. So each run says which process runs it, and a run
whose process is gone is failed and its slots freed:

* runs of the `smsledger` CLI carry the tags `smsledger/host`, `smsledger/pid` and
  `smsledger/process_started` (the process's start time, so a reused pid is not taken for it);
* runs launched by the local default run launcher (`dagster dev`, the daemon) report their worker's
  pid in the engine event "Started process for run (pid: N)".

`release_dead_runs` is called before every CLI run and every 30 seconds by the sensor
`release_dead_runs` under `dagster dev` or `dagster-daemon`. A run on another host, or one whose
process cannot be identified, is never touched.
"""

import dataclasses
import os
import socket
from collections.abc import Iterable

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.storage.dagster_run import FINISHED_STATUSES, DagsterRunStatus, RunsFilter

from assets.options import WAREHOUSE_POOL

HOST_TAG = "smsledger/host"
PID_TAG = "smsledger/pid"
STARTED_TAG = "smsledger/process_started"

# A run in these states has (or had) a process working on it.
_ACTIVE = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED,
           DagsterRunStatus.CANCELING]


@dataclasses.dataclass(frozen=True)
class Worker:
    host: str
    pid: int
    started: str | None  # the process's start time as the kernel reports it, when known

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclasses.dataclass(frozen=True)
class Released:
    run_id: str
    reason: str

    def line(self) -> str:
        return f"released the warehouse from run {self.run_id[:8]}: {self.reason}"


def liveness_tags() -> dict[str, str]:
    """The tags a CLI run carries so that a later process can tell whether it is still running."""
    pid = os.getpid()
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(pid)}
    started = process_started(pid)
    if started is not None:
        tags[STARTED_TAG] = started
    return tags


def process_started(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot, /proc/PID/stat field 22), or None
    where /proc is not available or the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19].decode() if len(fields) > 19 else None


def worker_alive(worker: Worker) -> bool:
    if worker.pid <= 0:
        return False
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to someone else
    return worker.started is None or process_started(worker.pid) in (None, worker.started)


def run_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Worker | None:
    """The process that runs `run` on this machine, if it can be known."""
    tags = run.tags
    if PID_TAG in tags and tags[PID_TAG].isdigit():
        return Worker(tags.get(HOST_TAG, ""), int(tags[PID_TAG]), tags.get(STARTED_TAG))
    if not isinstance(instance.run_launcher, DefaultRunLauncher):
        return None  # other launchers run elsewhere; their run monitoring is theirs
    records = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=50).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event is not None else None
        pid = data.metadata.get("pid") if data is not None else None
        if pid is not None and str(pid.value).isdigit():
            return Worker(socket.gethostname(), int(pid.value), None)
    return None


def release_dead_runs(instance: dg.DagsterInstance) -> list[Released]:
    """Fail the runs whose process on this host is gone, and free the pool slots and queue places
    of those runs and of runs that ended without freeing theirs. Returns what it did."""
    host = socket.gethostname()
    released: list[Released] = []
    for record in instance.get_run_records(RunsFilter(statuses=_ACTIVE)):
        run = record.dagster_run
        worker = run_worker(instance, run)
        if worker is None or worker.host != host or worker_alive(worker):
            continue
        reason = f"its process ({worker.describe()}) is gone; the run is marked failed"
        instance.report_run_failed(run, f"smsledger: {reason} and its pool slots are released")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(Released(run.run_id, reason))
    for run_id in _slot_holders(instance) - {r.run_id for r in released}:
        run = instance.get_run_by_id(run_id)
        if run is None or run.status in FINISHED_STATUSES:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            released.append(Released(run_id, f"the run had ended ({run.status.value if run else 'deleted'}) "
                                              "without freeing its pool slot"))
    return released


def pool_holders(instance: dg.DagsterInstance, pool: str = WAREHOUSE_POOL) -> list[tuple[str, str]]:
    """(run id, step key) of the steps that hold a slot of the pool now."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    return [(slot.run_id, slot.step_key) for slot in info.claimed_slots]


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return set()
    holders: set[str] = set(storage.get_concurrency_run_ids())
    for pool in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(pool)
        holders |= {slot.run_id for slot in info.claimed_slots}
    return holders


@dg.sensor(name="release_dead_runs", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Every 30 seconds: runs whose process on this machine died are marked failed and their "
                       "warehouse pool slots released, so that no later run waits for them.")
def release_dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    released = release_dead_runs(context.instance)
    for item in released:
        context.log.warning(item.line())
    return dg.SkipReason(_summary(released))


def _summary(released: Iterable[Released]) -> str:
    lines = [item.line() for item in released]
    return "; ".join(lines) if lines else "no dead runs"
