"""Deterministic synthetic traffic of one SMS application: the messages it sent, their receipts,
the replies of recipients and the conversions that followed.

Everything comes from one `random.Random(seed)` drawn in a fixed order, so the same
(seed, days, messages_per_day, end) gives the same traffic. Times are whole unix seconds. Sends
span [end - days*86400, end) with a daytime peak (UTC+8, where most recipients live); receipts,
replies and conversions may fall after `end`, so they only become visible as the simulator's
clock moves on.

Shape of the traffic (the rates live in `catalog`):
- about 75% mainland China numbers, the rest HK, SG, US, GB, IN, BR, ID, from a pool of recipients
  so numbers repeat; a few percent of SendSms statuses fail (no SerialNo, no receipt);
- receipt latency mostly seconds, some minutes to hours, a tail of days (EXPIRED failures come
  after 1-3 days); about 1% of messages never get a receipt and 3% get two (an earlier
  intermediate FAIL, then the final one: the final receipt is the latest);
- replies to delivered messages minutes to two days after delivery, with opt-outs among them,
  plus unsolicited replies (`caused_by` None) from numbers with no delivered message from that
  signature in the previous 72 hours;
- conversions of delivered messages, minutes to days later, a few beyond 7 days after sending.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import random

from pipelines.simulator import catalog as C

DAY = 86400
_HOURLY_WEIGHT = (0.15, 0.08, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.95, 0.9, 0.85, 0.7, 0.5, 0.3)
_PEAK_ZONE_OFFSET = 8 * 3600
_SERIAL_PREFIXES = ("2433", "2019", "3362", "5000")
_UNSOLICITED_QUIET_SECONDS = 72 * 3600
_LN4 = math.log(4)


@dataclasses.dataclass(frozen=True, slots=True)
class Recipient:
    phone_e164: str
    country_code: str
    subscriber: str  # national number, the API's SubscriberNumber
    iso_code: str


@dataclasses.dataclass(eq=False, slots=True)
class Receipt:
    message: Message
    report_status: str  # SUCCESS | FAIL
    description: str
    user_receive_time: int
    encoded: bytes = b""  # the record as the pull actions send it, filled by the simulator state


@dataclasses.dataclass(eq=False, slots=True)
class Message:
    """One SendStatus of a SendSms response, with its fate."""

    serial_no: str  # "" when the send failed
    recipient: Recipient
    sign_name: str
    template_id: str
    template_kind: str
    session_context: str
    send_time: int
    fee: int
    code: str
    message: str
    receipts: list[Receipt] = dataclasses.field(default_factory=list)
    conversion_time: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == "Ok"

    @property
    def final(self) -> Receipt | None:
        return self.receipts[-1] if self.receipts else None

    @property
    def iso_code(self) -> str:
        """IsoCode as the SendStatus carries it: empty for a failed send, like the documented example."""
        return self.recipient.iso_code if self.ok else ""


@dataclasses.dataclass(eq=False, slots=True)
class Reply:
    recipient: Recipient
    sign_name: str
    content: str
    reply_time: int
    caused_by: str | None  # SerialNo of the message replied to; None for unsolicited replies
    extend_code: str = ""
    encoded: bytes = b""

    @property
    def is_opt_out(self) -> bool:
        return C.is_opt_out(self.content)


@dataclasses.dataclass
class Traffic:
    start: int
    end: int
    messages: list[Message]  # by send_time
    replies: list[Reply]  # by reply_time
    recipients: list[Recipient]
    signs: tuple[C.Sign, ...] = C.SIGNS
    templates: tuple[C.Template, ...] = C.TEMPLATES


def _pick(rng: random.Random, seq):
    return seq[int(rng.random() * len(seq))]


class _Draw:
    """Weighted choice by one uniform draw and a bisect over cumulative weights."""

    def __init__(self, weighted: dict):
        self.items = list(weighted)
        self.cumulative = list(itertools.accumulate(weighted.values()))

    def __call__(self, rng: random.Random):
        i = bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])
        return self.items[min(i, len(self.items) - 1)]


def failure_draw(country: C.Country) -> _Draw:
    return _Draw(country.failures)


def _country_draw():
    draw = _Draw({c.iso: c.weight for c in C.COUNTRIES})
    by_iso = {c.iso: c for c in C.COUNTRIES}
    return lambda rng: by_iso[draw(rng)]


def new_recipient(rng: random.Random, country: C.Country) -> Recipient:
    prefix = rng.choice(country.prefixes)
    rest = country.national_length - len(prefix)
    if country.iso == "US":  # NANP exchange: [2-9]XX, not N11, not 555
        while True:
            exchange = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
            if exchange[1:] != "11" and exchange != "555":
                break
        prefix, rest = prefix + exchange, rest - 3
    national = prefix + str(rng.randrange(10**rest)).zfill(rest)
    return Recipient(f"+{country.calling_code}{national}", country.calling_code, national, country.iso)


def new_serial_no(rng: random.Random, taken: set[str]) -> str:
    while True:
        digits = 24 + int(rng.random() * 5)
        number = 10 ** (digits - 1) + rng.getrandbits(96) % (9 * 10 ** (digits - 1))
        serial = f"{_pick(rng, _SERIAL_PREFIXES)}:{number}"
        if serial not in taken:
            taken.add(serial)
            return serial


def receipt_latency(rng: random.Random) -> int:
    """Seconds from sending to a receipt: mostly seconds, then minutes, hours, and a tail of days."""
    r = rng.random()
    if r < 0.86:
        return max(1, round(math.exp(_LN4 + 0.9 * rng.gauss())))
    if r < 0.955:
        return round(60 * 60 ** rng.random())
    if r < 0.985:
        return round(3600 * 12 ** rng.random())
    return _between(rng, DAY, 4 * DAY)


def _between(rng: random.Random, a: int, b: int) -> int:
    return a + int(rng.random() * (b - a + 1))


def fate(rng: random.Random, message: Message, country: C.Country, failures: _Draw) -> None:
    """Receipts and conversion of an Ok send."""
    if rng.random() < C.NO_RECEIPT_RATE:
        return
    if rng.random() < country.delivery_rate:
        status, description, latency = "SUCCESS", C.DELIVERED, receipt_latency(rng)
    else:
        status, description = "FAIL", failures(rng)
        latency = _between(rng, DAY, 3 * DAY) if description == "EXPIRED" else receipt_latency(rng)
    final_time = message.send_time + latency
    if rng.random() < C.TWO_RECEIPTS_RATE:
        first = message.send_time + _between(rng, 1, 120)
        final_time = max(final_time, first + _between(rng, 60, 6 * 3600))
        message.receipts.append(Receipt(message, "FAIL", _pick(rng, C.INTERMEDIATE_DESCRIPTIONS), first))
    message.receipts.append(Receipt(message, status, description, final_time))
    if status == "SUCCESS" and rng.random() < C.CONVERSION_RATE[message.template_kind]:
        if rng.random() < 0.05:
            message.conversion_time = message.send_time + _between(rng, 7 * DAY + 1, 10 * DAY)
        else:
            message.conversion_time = final_time + round(30 * (4 * DAY / 30) ** (rng.random() ** 2))


def reply_to(rng: random.Random, message: Message, country: C.Country) -> Reply | None:
    """The recipient's reply to a delivered message, if any: minutes to two days after delivery."""
    final = message.final
    if not final or final.report_status != "SUCCESS" or rng.random() >= C.REPLY_RATE[message.template_kind]:
        return None
    delay = round(60 * (2 * DAY / 60) ** rng.random())
    content = _reply_content(rng, country.mainland, C.OPT_OUT_SHARE[message.template_kind])
    return Reply(message.recipient, message.sign_name, content, final.user_receive_time + delay, message.serial_no)


def _reply_content(rng: random.Random, mainland: bool, opt_out_share: float) -> str:
    if rng.random() < opt_out_share:
        return _pick(rng, C.OPT_OUT_VARIANTS)
    return _pick(rng, C.MAINLAND_REPLIES if mainland else C.INTERNATIONAL_REPLIES)


def generate_traffic(seed: int, days: int, messages_per_day: int, end: float) -> Traffic:
    rng = random.Random(seed)
    hi = math.ceil(end)
    lo = math.ceil(end - days * DAY)
    total = days * messages_per_day

    pool_size = max(50, total // 4)
    pools = {c.iso: [] for c in C.COUNTRIES}
    seen: set[str] = set()
    for country in C.COUNTRIES:
        while len(pools[country.iso]) < max(3, round(pool_size * country.weight)):
            recipient = new_recipient(rng, country)
            if recipient.phone_e164 not in seen:
                seen.add(recipient.phone_e164)
                pools[country.iso].append(recipient)

    countries = _country_draw()
    failures = {c.iso: failure_draw(c) for c in C.COUNTRIES}
    usable = [t for t in C.TEMPLATES if t.status_code == 0]
    kinds = {True: _Draw(C.TEMPLATE_KIND_WEIGHTS), False: _Draw(C.INTERNATIONAL_KIND_WEIGHTS)}
    templates = {(m, k): [t for t in usable if t.international == (0 if m else 1) and t.kind == k]
                 for m in (True, False) for k in C.TEMPLATE_KIND_WEIGHTS}
    signs = {m: [s.name for s in C.SIGNS if s.status_code == 0 and s.international == (0 if m else 1)]
             for m in (True, False)}
    peak = max(_HOURLY_WEIGHT)

    span = hi - lo
    rand = rng.random
    send_times = []
    while len(send_times) < total:
        t = lo + int(rand() * span)
        if rand() * peak < _HOURLY_WEIGHT[(t + _PEAK_ZONE_OFFSET) // 3600 % 24]:
            send_times.append(t)
    send_times.sort()

    serials: set[str] = set()
    messages = []
    replies = []
    for send_time in send_times:
        country = countries(rng)
        recipient = _pick(rng, pools[country.iso])
        kind = kinds[country.mainland](rng)
        template = _pick(rng, templates[country.mainland, kind])
        sign = _pick(rng, signs[country.mainland])
        context = "" if rand() < 0.15 else f"{kind}:{1_000_000 + int(rand() * 9_000_000)}"
        if rand() < C.SEND_FAILURE_RATE:
            code, text = _pick(rng, C.SEND_FAILURES)
            message = Message("", recipient, sign, str(template.template_id), kind, context, send_time, 0, code, text)
        else:
            message = Message(new_serial_no(rng, serials), recipient, sign, str(template.template_id), kind, context,
                              send_time, template.fee, "Ok", "send success")
            fate(rng, message, country, failures[country.iso])
            reply = reply_to(rng, message, country)
            if reply:
                replies.append(reply)
        messages.append(message)

    replies += _unsolicited_replies(rng, messages, pools, signs, lo, hi, round(total * C.UNSOLICITED_REPLY_RATE))
    replies.sort(key=lambda r: (r.reply_time, r.recipient.phone_e164))
    recipients = [r for c in C.COUNTRIES for r in pools[c.iso]]
    return Traffic(lo, hi, messages, replies, recipients)


def _unsolicited_replies(rng, messages, pools, signs, lo, hi, count) -> list[Reply]:
    delivered: dict[tuple[str, str], list[int]] = {}
    for m in messages:
        final = m.final
        if final and final.report_status == "SUCCESS":
            delivered.setdefault((m.recipient.phone_e164, m.sign_name), []).append(final.user_receive_time)
    for times in delivered.values():
        times.sort()
    countries = _country_draw()
    out = []
    for _ in range(count):
        for _attempt in range(10):
            country = countries(rng)
            recipient = _pick(rng, pools[country.iso])
            sign = _pick(rng, signs[country.mainland])
            t = lo + int(rng.random() * (hi + DAY - lo))
            times = delivered.get((recipient.phone_e164, sign), [])
            i = bisect.bisect_right(times, t)
            if i == 0 or t - times[i - 1] > _UNSOLICITED_QUIET_SECONDS:
                out.append(Reply(recipient, sign, _reply_content(rng, country.mainland, 0.3), t, None))
                break
    return out
