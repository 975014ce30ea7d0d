"""Progress of long steps inside this process, for whoever shows it (the CLI on a terminal).

A step that works through something large (draining a queue, loading the spool, fetching by
number) reports how far it is; nothing here prints. Reporting costs a lock and a dict update, so
library code reports freely, with or without a listener; under `dagster dev` nobody reads it.
"""

from __future__ import annotations

import dataclasses
import threading
import time


@dataclasses.dataclass
class Task:
    name: str
    unit: str
    done: int = 0
    total: int | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        text = f"{self.name}: {self.done:,}" + (f" of {self.total:,}" if self.total else "") + f" {self.unit}"
        if self.done and elapsed >= 1:
            text += f" ({rate:,.0f}/s"
            if self.total and rate > 0:
                text += f", ~{max(self.total - self.done, 0) / rate:,.0f}s left"
            text += ")"
        return text


_tasks: dict[int, Task] = {}
_lock = threading.Lock()
_next = 0


def start(name: str, unit: str, total: int | None = None) -> int:
    """Begin a task; returns its handle for `advance` and `finish`."""
    global _next
    with _lock:
        _next += 1
        _tasks[_next] = Task(name, unit, total=total)
        return _next


def advance(handle: int, amount: int = 1) -> None:
    with _lock:
        task = _tasks.get(handle)
        if task is not None:
            task.done += amount


def finish(handle: int) -> None:
    with _lock:
        _tasks.pop(handle, None)


def snapshot() -> list[str]:
    """One line per task under way, oldest first."""
    with _lock:
        return [task.line() for task in _tasks.values()]
