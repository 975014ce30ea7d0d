"""Faults on demand: the failures a client of the real service must survive, injected with given
probabilities per action.

Spec grammar (clauses separated by `;`, whitespace ignored):

    spec    := clause (";" clause)*
    clause  := target ":" setting ("," setting)*  |  "slow_seconds=" seconds
    target  := an action name | "*"
    setting := kind "=" probability  |  "slow_seconds=" seconds

e.g. `PullSmsSendStatus:http500=0.05,slow=0.02,reset=0.02,truncate=0.03;*:dirty=0.1;slow_seconds=5`.
A setting for the action itself overrides the same kind under `*`. The request-level kinds of one
action are mutually exclusive (one draw picks at most one), so their probabilities must add up to
at most 1.

Request-level kinds:
- `http500` / `http502` / `http503`: that HTTP status with an HTML body, as a gateway would send;
- `slow`: the response is held for `slow_seconds` (default 30, beyond a sane client timeout);
- `reset`: the connection is reset (RST, SO_LINGER 0), half of the time right after the request
  is read, half of the time in the middle of the body;
- `truncate`: a correct Content-Length header, part of the body, then the connection is closed;
- `internal`: an `InternalError.*` envelope (transient);
- `ratelimit`: a `RequestLimitExceeded` envelope.

Record-level kind, for the four pull actions: `dirty` is the chance that each record of a response
comes in one of the variants of `DIRTY_VARIANTS`.
"""

from __future__ import annotations

import dataclasses
import random

from pipelines.tencent.actions import ALL_ACTIONS

REQUEST_KINDS = ("http500", "http502", "http503", "slow", "reset", "truncate", "internal", "ratelimit")
KINDS = REQUEST_KINDS + ("dirty",)
DEFAULT_SLOW_SECONDS = 30.0

# What a dirty record can look like. `duplicate`: the record twice in a row in one response;
# `repeat`: a record handed out earlier comes again at the start of the next response of that queue.
DIRTY_VARIANTS = (
    "phone_no_plus",  # PhoneNumber "8613..." (E.164 without "+")
    "phone_national",  # PhoneNumber is the national number
    "phone_00_prefix",  # PhoneNumber "008613..."
    "empty_country_code",  # CountryCode ""
    "time_ms",  # UserReceiveTime / ReplyTime in milliseconds
    "time_zero",  # UserReceiveTime / ReplyTime 0
    "extra_field",  # an unknown field "ExtraFoo"
    "duplicate",
    "repeat",
)

INTERNAL_ERRORS = (
    ("InternalError.UnknownError", "unknown error, please try again later"),
    ("InternalError.Timeout", "request timed out, please try again later"),
    ("InternalError.SendAndRecvFail", "backend send and receive timeout, please try again later"),
    ("InternalError.OtherError", "other error, please try again later"),
)


class FaultSpecError(ValueError):
    """The spec string does not follow the grammar; the message says where."""


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    spec: str
    rules: dict[str, dict[str, float]]  # target -> kind -> probability
    slow_seconds: dict[str, float]  # target -> seconds

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        rules: dict[str, dict[str, float]] = {}
        slow: dict[str, float] = {}
        for clause in filter(None, (c.strip() for c in spec.replace(" ", "").split(";"))):
            if clause.startswith("slow_seconds="):
                slow["*"] = _number(clause, clause.partition("=")[2], upper=None)
                continue
            target, sep, settings = clause.partition(":")
            if not sep or not settings:
                raise FaultSpecError(f"{clause!r}: expected ACTION:kind=probability[,...] or slow_seconds=N")
            if target != "*" and target not in ALL_ACTIONS:
                raise FaultSpecError(f"{clause!r}: unknown action {target!r} (one of {', '.join(ALL_ACTIONS)} or *)")
            for setting in settings.split(","):
                kind, eq, value = setting.partition("=")
                if not eq:
                    raise FaultSpecError(f"{setting!r} in {clause!r}: expected kind=probability")
                if kind == "slow_seconds":
                    slow[target] = _number(setting, value, upper=None)
                elif kind in KINDS:
                    rules.setdefault(target, {})[kind] = _number(setting, value, upper=1.0)
                else:
                    raise FaultSpecError(f"{setting!r} in {clause!r}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
        plan = cls(spec, rules, slow)
        for action in ALL_ACTIONS:
            total = sum(plan.probability(action, k) for k in REQUEST_KINDS)
            if total > 1.0 + 1e-9:
                raise FaultSpecError(f"request-level fault probabilities of {action} add up to {total:g} > 1")
        return plan

    def probability(self, action: str, kind: str) -> float:
        own = self.rules.get(action, {})
        return own[kind] if kind in own else self.rules.get("*", {}).get(kind, 0.0)

    def slow_seconds_for(self, action: str) -> float:
        return self.slow_seconds.get(action, self.slow_seconds.get("*", DEFAULT_SLOW_SECONDS))

    def draw(self, action: str, rng: random.Random) -> str | None:
        """The request-level fault of one request of `action`, or None."""
        u = rng.random()
        for kind in REQUEST_KINDS:
            p = self.probability(action, kind)
            if u < p:
                return kind
            u -= p
        return None

    def to_json(self) -> dict:
        return {"spec": self.spec, "rules": self.rules, "slow_seconds": self.slow_seconds}


def _number(where: str, text: str, *, upper: float | None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"{where!r}: {text!r} is not a number") from None
    if value < 0 or (upper is not None and value > upper):
        raise FaultSpecError(f"{where!r}: {value:g} must be between 0 and {upper:g}" if upper is not None
                             else f"{where!r}: {value:g} must not be negative")
    return value


NO_FAULTS = FaultPlan.parse("")
