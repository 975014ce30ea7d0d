"""Watching a run the CLI executes: a line per finished step, live progress on a terminal, and
what the run waits for when another run holds the warehouse.

On a terminal one status line is redrawn in place (the steps under way, with counts, rate and
time left from `pipelines.progress`); piped output gets only whole lines, never a carriage
return. The run's own events are read back from the instance, so the lines say what Dagster
recorded.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable

import dagster as dg
from dagster._core.events import DagsterEventType

from assets.housekeeping import release_dead_runs
from assets.options import WAREHOUSE_POOL
from pipelines import progress

_STEP_EVENTS = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE,
                DagsterEventType.STEP_SKIPPED}


class Output:
    """Lines for a person: on a terminal, one status line kept below them and redrawn in place."""

    def __init__(self, log: Callable[[str], None], terminal: bool | None = None):
        self._log = log
        self._terminal = sys.stdout.isatty() if terminal is None else terminal
        self._status = ""
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self._clear()
            self._log(text)
            self._draw()

    def status(self, text: str) -> None:
        if not self._terminal:
            return
        with self._lock:
            self._clear()
            self._status = text[: max(20, shutil.get_terminal_size().columns - 1)]
            self._draw()

    def _clear(self) -> None:
        if self._terminal and self._status:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()

    def _draw(self) -> None:
        if self._terminal and self._status:
            sys.stdout.write(self._status)
            sys.stdout.flush()

    def done(self) -> None:
        with self._lock:
            self._clear()
            self._status = ""


class RunWatch:
    """A thread that follows one run until the context exits."""

    def __init__(self, dagster_instance: dg.DagsterInstance, run_id: str, out: Output, *,
                 interval: float = 0.5, pool_interval: float = 2.0):
        self._instance, self._run_id, self._out = dagster_instance, run_id, out
        self._interval, self._pool_interval = interval, pool_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="smsledger-run-watch", daemon=True)
        self._cursor: str | None = None
        self._running: dict[str, float] = {}  # step key -> started (monotonic)
        self._waiting_since: float | None = None
        self._said_at: float | None = None

    def __enter__(self) -> RunWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self._steps()  # the last steps' lines
        except Exception:
            pass
        self._out.done()

    def _watch(self) -> None:
        last_pool = 0.0
        while not self._stop.wait(self._interval):
            try:  # the watch only informs; it must never break the run
                self._steps()
                if time.monotonic() - last_pool >= self._pool_interval:
                    last_pool = time.monotonic()
                    self._pool()
                self._out.status(self._status_line())
            except Exception:
                return

    def _steps(self) -> None:
        connection = self._instance.get_records_for_run(self._run_id, cursor=self._cursor, of_type=_STEP_EVENTS)
        self._cursor = connection.cursor
        for record in connection.records:
            event = record.event_log_entry.dagster_event
            step = event.step_key
            if event.event_type == DagsterEventType.STEP_START:
                self._running[step] = time.monotonic()
                continue
            started = self._running.pop(step, None)
            took = f" in {time.monotonic() - started:.1f}s" if started else ""
            outcome = {DagsterEventType.STEP_SUCCESS: "done", DagsterEventType.STEP_FAILURE: "failed",
                       DagsterEventType.STEP_SKIPPED: "skipped"}[event.event_type]
            self._out.line(f"  {outcome:<7} {_step_name(step)}{took}")

    def _pool(self) -> None:
        info = self._instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        ours_waiting = any(p.run_id == self._run_id and p.assigned_timestamp is None for p in info.pending_steps)
        others = [(s.run_id, s.step_key) for s in info.claimed_slots if s.run_id != self._run_id]
        if not (ours_waiting and others):
            self._waiting_since = self._said_at = None
            return
        # The holder may have died while we waited: release it, and the claim goes through.
        for released in release_dead_runs(self._instance):
            self._out.line(released.line())
        now = time.monotonic()
        self._waiting_since = self._waiting_since or now
        if self._said_at is None or now - self._said_at >= 60:
            holders = ", ".join(f"run {run_id[:8]} (step {step})" for run_id, step in others)
            self._out.line(f"waiting {now - self._waiting_since + self._pool_interval:.0f}s for the warehouse "
                           f"(pool {WAREHOUSE_POOL}), held by {holders}; Ctrl-C stops waiting")
            self._said_at = now

    def _status_line(self) -> str:
        tasks = progress.snapshot()
        if tasks:
            return "  ... " + "; ".join(tasks)
        if self._running:
            step, started = next(iter(self._running.items()))
            return f"  ... {_step_name(step)} ({time.monotonic() - started:.0f}s)"
        return ""


def _step_name(step_key: str) -> str:
    """`marts__delivery_daily` -> `marts/delivery_daily` (asset steps are named by their key)."""
    return step_key.replace("__", "/")
