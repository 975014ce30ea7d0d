"""Draining the provider's queues into the spool.

`PullSmsSendStatus` and `PullSmsReplyStatus` hand each record out once and have no cursor, so the
drain writes every response to the spool before it even parses it, and keeps pulling until the
queue answers with a short page (empty for now) or the time budget is spent. It needs no
database: it can run while another process holds the warehouse, and the loader catches up.

Workers pull concurrently under the client's shared per-action rate limiter. A pull that failed
without a whole response is *indeterminate*: a marker goes to the spool so the loss is counted
(and healed later by by-number gap filling), and the worker backs off before pulling again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from pipelines.tencent import actions as A
from pipelines.tencent.client import SmsApiClient
from pipelines.tencent.envelope import parse_page
from pipelines.tencent.errors import TencentCloudError, TransportError, Unreachable
from pipelines import progress
from pipelines.spool import INDETERMINATE, Spool, process_alive

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DrainReport:
    action: str
    pulls: int = 0
    records: int = 0
    indeterminate: int = 0
    throttled: int = 0
    transient_errors: int = 0
    unreachable: int = 0  # requests that never left this machine (nothing handed out)
    seconds: float = 0.0
    drained: bool = False  # the queue answered with a short page
    stopped_by: str = ""  # drained | time_budget | failures | error | unreachable

    @property
    def pulls_per_second(self) -> float:
        return self.pulls / self.seconds if self.seconds else 0.0


def drain_queue(
    client: SmsApiClient,
    spool: Spool,
    action: str,
    *,
    time_budget_seconds: float = 300.0,
    workers: int = 4,
    limit: int = A.MAX_LIMIT,
    max_consecutive_failures: int = 8,
) -> DrainReport:
    """Pull `action` until the queue is empty or the budget is spent. Raises TencentCloudError on a
    permanent error (bad credentials, wrong app id), and Unreachable when the endpoint cannot be
    reached from the first pull on: retrying those cannot help now."""
    if action not in A.QUEUE_ACTIONS:
        raise ValueError(f"{action} is not a queue action")
    report = DrainReport(action)
    _claim(spool, action, limit, workers, client.sdk_app_id)
    task = progress.start(f"draining {action}", "records")
    try:
        _drain(client, spool, action, report, time_budget_seconds, workers, limit, max_consecutive_failures,
               lambda records: progress.advance(task, records))
    except (TencentCloudError, Unreachable):
        # An error answer, or a request that never left, hands nothing out: the drain ended
        # cleanly, if unsuccessfully.
        _inflight(spool, action, client.sdk_app_id).unlink(missing_ok=True)
        raise
    finally:
        progress.finish(task)
    # Only a drain that returns clears its mark; one that died of anything else (a full disk under
    # the spool, a kill) leaves it, and the next drain counts the pull it may have lost.
    _inflight(spool, action, client.sdk_app_id).unlink(missing_ok=True)
    return report


def _inflight(spool: Spool, action: str, sdk_app_id: str) -> Path:
    return spool.root / f"{action}.{sdk_app_id}.inflight"


def _claim(spool: Spool, action: str, limit: int, workers: int, sdk_app_id: str) -> None:
    """Mark a drain as under way (pid, Limit, workers). A mark left by a drain that died (killed,
    or the machine went down) means responses it received may never have reached the spool: record
    that as an indeterminate pull, so the loss is counted and gap filling looks for it (each of
    its workers may have had a pull in flight). Each application's queues have their own mark; a
    mark of a version that knew one application (`{action}.inflight`) is the first one's, which is
    the application that drains first."""
    mark = _inflight(spool, action, sdk_app_id)
    legacy = spool.root / f"{action}.inflight"
    if legacy.exists() and not mark.exists():
        legacy.rename(mark)
    try:
        pid, *pulls = (int(n) for n in mark.read_text().split())
    except (FileNotFoundError, ValueError):
        pid, pulls = 0, []
    if pid and not process_alive(pid):
        failure = (f"a drain of {action} (pid {pid}) ended without finishing; responses it received may not "
                   "have reached the spool")
        dead_limit, dead_workers = pulls if len(pulls) == 2 else (None, None)
        spool.write(action, indeterminate_marker(failure, dead_limit, dead_workers, None), kind=INDETERMINATE,
                    sdk_app_id=sdk_app_id)
        log.warning("%s: the previous drain (pid %s) died mid-way; counted as an indeterminate pull", action, pid)
    mark.write_text(f"{os.getpid()} {limit} {workers}")


def indeterminate_marker(failure: str, limit: int | None, workers: int | None, seconds: float | None) -> bytes:
    """What an indeterminate pull's spool file holds: why it failed, and what bounds its loss
    (the loader puts them in raw.batches; seconds is None for a drain that died)."""
    return orjson.dumps({"failure": failure, "limit": limit, "workers": workers, "seconds": seconds})


def _drain(client: SmsApiClient, spool: Spool, action: str, report: DrainReport, time_budget_seconds: float,
           workers: int, limit: int, max_consecutive_failures: int, pulled: Callable[[int], None]) -> DrainReport:
    lock = threading.Lock()
    stop = threading.Event()
    failures = 0
    fatal: list[TencentCloudError | Unreachable] = []
    started = time.monotonic()
    deadline = started + time_budget_seconds

    def finish(reason: str) -> None:
        with lock:
            if not report.stopped_by:
                report.stopped_by = reason
        stop.set()

    def failed(counter: str) -> bool:
        """Count a failed pull; back off before the next one, or say the drain must stop."""
        nonlocal failures
        with lock:
            report.pulls += 1
            setattr(report, counter, getattr(report, counter) + 1)
            failures += 1
            attempt = failures
        if attempt >= max_consecutive_failures:
            finish("failures")
            return True
        client.backoff(min(attempt, 6))
        return False

    def stop_for_good(exc: TencentCloudError | Unreachable, counter: str, reason: str) -> None:
        """A failure no retry can fix: count the pull, keep the error for the caller, stop."""
        with lock:
            report.pulls += 1
            setattr(report, counter, getattr(report, counter) + 1)
        fatal.append(exc)
        finish(reason)

    def worker() -> None:
        nonlocal failures
        while not stop.is_set():
            if time.monotonic() >= deadline:
                finish("time_budget")
                return
            try:
                raw = client.pull_queue_raw(action, limit)
            except Unreachable as exc:
                with lock:
                    reached = report.pulls > report.unreachable
                if not reached:  # unreachable from the start: say so now instead of retrying for minutes
                    stop_for_good(exc, "unreachable", "unreachable")
                    return
                if failed("unreachable"):
                    return
                continue
            if raw.indeterminate:
                spool.write(action, indeterminate_marker(raw.failure or "unknown failure", limit, workers,
                                                         raw.elapsed_seconds), kind=INDETERMINATE,
                            sdk_app_id=client.sdk_app_id)
                log.warning("%s: indeterminate pull (%s); records may have left the queue", action, raw.failure)
                if failed("indeterminate"):
                    return
                continue
            spool.write(action, raw.body, sdk_app_id=client.sdk_app_id)
            try:
                page = parse_page(action, raw.body)
            except TencentCloudError as exc:
                if not exc.retryable:
                    stop_for_good(exc, "transient_errors", "error")
                    return
                throttled = exc.code.startswith("RequestLimitExceeded")
                if throttled:
                    client.limiter.throttled(action)
                if failed("throttled" if throttled else "transient_errors"):
                    return
                continue
            except TransportError:
                # A complete HTTP 200 whose body is not the envelope: kept in the spool, where the
                # loader quarantines it; the records in it (if any) are not lost.
                if failed("transient_errors"):
                    return
                continue
            with lock:
                report.pulls += 1
                report.records += len(page.records)
                failures = 0
            pulled(len(page.records))
            if len(page.records) < limit:
                with lock:
                    report.drained = True
                finish("drained")
                return

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"drain-{action}") as pool:
        futures = [pool.submit(worker) for _ in range(workers)]
        for future in futures:
            try:
                future.result()
            except BaseException:
                stop.set()
                raise
    report.seconds = time.monotonic() - started
    if fatal:
        raise fatal[0]
    return report

