"""Failures of the commands, reported as one line and exit status 1 (`pipelines.app.cli.main`),
and the stop a person asked for."""

import threading

# Set by the CLI's SIGINT/SIGTERM handler. Dagster turns an interrupt into a failed run rather
# than an exception, so after each run the runner checks this and stops the command.
STOP_REQUESTED = threading.Event()


class CommandError(Exception):
    """A failure to report as one line a person can act on."""


class RunFailedError(CommandError):
    """A Dagster run failed; the message names the step and its error in one line. `cause` is the
    failing step's own label for its failure when it gave one (e.g. "unreachable")."""

    def __init__(self, message: str, cause: str | None = None):
        super().__init__(message)
        self.cause = cause
