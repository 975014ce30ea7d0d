"""Failures of the commands, reported as one line and exit status 1 (`pipelines.app.cli.main`)."""


class CommandError(Exception):
    """A failure to report as one line a person can act on."""


class RunFailedError(CommandError):
    """A Dagster run failed; the message names the step and its error in one line."""
