"""A per-action request-rate limiter shared by every thread of a client.

The provider counts requests per action per second and answers `RequestLimitExceeded` beyond the
documented limit. A well-behaved caller should never meet that error, so each action keeps a
sliding log of the times requests were let through: the (n+1)-th request in any window waits until
the oldest of the last n leaves it. The window is stretched by `1 / fraction` (default 0.9) so that a thread that
sends late after its reserved slot (the GIL, the scheduler) or network jitter, which bunch requests
together on arrival, does not push the server's count over the limit: at 0.95 the demo still met
one RequestLimitExceeded in a few thousand pulls.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping


class RateLimiter:
    def __init__(
        self,
        limits: Mapping[str, float],
        *,
        fraction: float = 0.9,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        self._limits = dict(limits)
        self._fraction = fraction
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._logs: dict[str, collections.deque[float]] = {}
        self._slowed: dict[str, float] = {}

    def limit(self, action: str) -> float | None:
        return self._limits.get(action)

    def throttled(self, action: str) -> None:
        """The provider answered RequestLimitExceeded all the same (a machine so busy that requests
        leave in bunches): keep this action 15% further under its limit from now on, down to
        half of it, so one throttle does not become a habit."""
        with self._lock:
            self._slowed[action] = max(0.5, self._slowed.get(action, 1.0) * 0.85)

    def acquire(self, action: str) -> None:
        """Wait until `action` may be sent, and record the moment it is let through.

        The moment recorded is when the caller proceeds, not when it first asked: a thread that
        wakes late from its sleep (the GIL, the scheduler) is counted at the time it actually
        goes, so a late sender never lets the next ones bunch up behind it."""
        rate = self._limits.get(action)
        if not rate:
            return
        # A limit below 1/s is a window longer than a second holding one request.
        capacity = max(1, int(rate))
        window = capacity / rate / self._fraction / self._slowed.get(action, 1.0)
        while True:
            with self._lock:
                log = self._logs.setdefault(action, collections.deque())
                now = self._clock()
                while log and log[0] <= now - window:
                    log.popleft()
                if len(log) < capacity:
                    log.append(now)
                    return
                wait = log[0] + window - now
            self._sleep(wait)
