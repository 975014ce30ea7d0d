"""Push callbacks: the simulated service POSTs delivery receipts and replies to the customer's
callback URL as they fall due on the simulator clock (reference section 6), from a background
thread, so the API never waits for the customer's endpoint.

- Status pushes go to `{callback_url}/status`, or, when the simulator serves several
  applications, to `{callback_url}/status/{SmsSdkAppId}` (the real status callback URL is set per
  application in the console, so each application's is its own): a JSON array of at most 100
  receipts of one application, oldest first, each `{"user_receive_time": "YYYY-MM-DD HH:MM:SS" (provider time
  zone), "nationcode", "mobile" (national number), "report_status", "errmsg" (the status code,
  e.g. DELIVRD), "description" (its text), "sid" (SerialNo), "ext" (SessionContext)}`.
- Reply pushes go to `{callback_url}/reply` whatever their application (one reply callback URL
  per account, reference section 6.2; the body names no application): one JSON object per reply, `{"extend", "mobile",
  "nationcode", "sign", "text", "time"}` (unix seconds).

(The two paths are those of `smsledger receive`; Tencent configures the two URLs apart.) The
receiver acknowledges with HTTP 200 and `{"result": 0, "errmsg": "OK"}`. Anything else (another
status, another `result`, a body that is not that JSON, a refused connection, no answer within
`callback_timeout_seconds`) fails the attempt, and a failed push is retried twice more (the
documented count), `callback_retry_seconds` of real time apart (the real interval is
undocumented); after the third failure it is given up. Records fall due as the clock passes them,
also when it is advanced (the pusher is woken and works through the backlog, 100 records a push).

Whether the real service still queues a pushed record for `PullSmsSendStatus` /
`PullSmsReplyStatus` is undocumented (reference section 9.3), so it is a choice:
`pushed_also_queued` True (the default, `--pushed-also-queued`) keeps every record in the pull
queues as well, pushes and pulls being independent; False (`--no-pushed-also-queued`) lets the
push take the records: the pull queues of the account hand out nothing, and a record whose three
attempts failed is found only by number. The by-number archive holds everything either way.

The ground truth (`SimState.truth_pushes`, `/_sim/truth/pushes`) lists every push with its
records, each attempt's outcome and whether it was acknowledged.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time

import httpx
import orjson

from pipelines.simulator.state import Push, SimState

log = logging.getLogger(__name__)

ATTEMPTS = 3  # the first and the two documented retries
_POLL_SECONDS = 0.2  # how often a running clock is looked at for records that fell due


class Pusher:
    """The background thread that pushes what falls due and retries what failed."""

    def __init__(self, state: SimState, url: str, *, retry_seconds: float, timeout_seconds: float):
        self.state = state
        self.url = url.rstrip("/")
        self.retry_seconds = retry_seconds
        self.per_application = len(state.apps) > 1
        self.client = httpx.Client(timeout=timeout_seconds, trust_env=False)
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._retries: list[tuple[float, int, Push]] = []  # (monotonic time due, order, push)
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name="smsledger-simulator-push", daemon=True)

    def start(self) -> Pusher:
        self.state.listeners.append(self.wake.set)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self._step()
            except Exception:  # a push must never stop the pusher
                log.exception("simulator: pushing failed")
                busy = False
            if not busy:
                wait = _POLL_SECONDS
                if self._retries:
                    wait = min(wait, max(0.0, self._retries[0][0] - time.monotonic()))
                self.wake.wait(wait)
                self.wake.clear()

    def _step(self) -> bool:
        if self._retries and self._retries[0][0] <= time.monotonic():
            self._attempt(heapq.heappop(self._retries)[2])
            return True
        push = self.state.next_push()
        if push is None:
            return False
        self._attempt(push)
        return True

    def _attempt(self, push: Push) -> None:
        if push.kind == "reply":
            path = "/reply"
        else:
            path = f"/status/{push.app.sdk_app_id}" if self.per_application else "/status"
        outcome = _post(self.client, self.url + path, push.body)
        last = outcome == "ok" or len(push.attempts) + 1 >= ATTEMPTS
        self.state.record_attempt(push, outcome, last=last)
        if not last:
            heapq.heappush(self._retries, (time.monotonic() + self.retry_seconds, next(self._order), push))


def _post(client: httpx.Client, url: str, body: bytes) -> str:
    """One attempt: "ok" when acknowledged, else what went wrong."""
    try:
        response = client.post(url, content=body, headers={"Content-Type": "application/json"})
    except httpx.ConnectError:
        return "refused"
    except httpx.TimeoutException:
        return "timeout"
    except httpx.HTTPError as exc:
        return f"error: {exc.__class__.__name__}"
    if response.status_code != 200:
        return f"http {response.status_code}"
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return "not json"
    if not isinstance(answer, dict) or answer.get("result") != 0:
        return f"result {answer.get('result') if isinstance(answer, dict) else answer!r}"
    return "ok"
