"""Errors of smsledger's own runs (the provider's are in pipelines.tencent.errors)."""


class RunFailedError(RuntimeError):
    """A Dagster run failed; the message names the step and its error in one line."""
