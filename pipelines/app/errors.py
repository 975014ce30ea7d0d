"""Failures of the commands, reported as one line and exit status 1 (`pipelines.app.cli.main`),
and the stop a person asks for with Ctrl-C or SIGTERM."""

import os
import sys
import threading
from collections.abc import Callable

# Work to do before the process ends on a stop (marking the run in progress), registered by
# whoever has such work while it lasts.
_ON_STOP: list[Callable[[], None]] = []
_lock = threading.Lock()


class CommandError(Exception):
    """A failure to report as one line a person can act on."""


class RunFailedError(CommandError):
    """A Dagster run failed; the message names the step and its error in one line. `cause` is the
    failing step's own label for its failure when it gave one (e.g. "unreachable")."""

    def __init__(self, message: str, cause: str | None = None):
        super().__init__(message)
        self.cause = cause


def on_stop(work: Callable[[], None]) -> Callable[[], None]:
    """Register `work` to run if the command is stopped; returns the function that unregisters it."""
    with _lock:
        _ON_STOP.append(work)

    def remove() -> None:
        with _lock:
            if work in _ON_STOP:
                _ON_STOP.remove(work)

    return remove


def stop(command: str) -> None:
    """The command was asked to stop. Without a run in progress, unwind normally
    (KeyboardInterrupt). With one, mark it and end the process at once: every step is built to be
    killed at any instruction (spool writes are atomic, DuckDB rolls back what it had not
    committed), and waiting for a step to notice would ignore the request for as long as a step
    runs or waits for the warehouse."""
    with _lock:
        pending = list(_ON_STOP)
    if not pending:
        raise KeyboardInterrupt
    for work in pending:
        try:
            work()
        except Exception as exc:  # the stop goes ahead whatever the bookkeeping says
            print(f"smsledger {command}: could not mark the run as stopped ({exc.__class__.__name__})", file=sys.stderr)
    print(f"smsledger {command}: stopped", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(130)
