"""Deterministic synthetic traffic of one SMS application: the messages it sent, their receipts,
the replies of recipients and the conversions that followed.

Held as compact columns (numpy arrays, about 30 bytes a message) rather than Python objects, so a
day of ten million messages fits in memory; `Message`, `Receipt` and `Reply` objects are made on
demand from the columns. Every draw comes from counter-based generators (Philox) keyed by
(seed, application, stream, chunk of `CHUNK` messages), so the same (seed, application, days,
messages_per_day, end) gives the same traffic however it is read. Times are whole unix seconds.
Sends span [end - days*86400, end) with a daytime peak (UTC+8, where most recipients live);
receipts, replies and conversions may fall after `end`, so they only become visible as the
simulator's clock moves on.

Shape of the traffic (the rates live in `catalog`, the mix of each application in
`catalog.APP_PROFILES`):
- about 75% mainland China numbers, the rest HK, SG, US, GB, IN, BR, ID, from a pool of recipients
  so numbers repeat; a few percent of SendSms statuses fail (no SerialNo, no receipt);
- receipt latency mostly seconds, some minutes to hours, a tail of days (EXPIRED failures come
  after 1-3 days); about 1% of messages never get a receipt and 3% get two (an earlier
  intermediate FAIL, then the final one: the final receipt is the latest);
- replies to delivered messages minutes to two days after delivery, with opt-outs among them,
  plus unsolicited replies (`caused_by` None) from numbers with no delivered message from that
  signature in the previous 72 hours;
- conversions of delivered messages, minutes to days later, a few beyond 7 days after sending.

Record ids: a receipt is `2 * message + 1` (the final one) or `2 * message` (an earlier
intermediate one); a reply is its index in `reply_*`. Messages and replies added later (SendSms)
continue the numbering and live as objects in `extra_messages` / `extra_replies`.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl

from pipelines.simulator import catalog as C

DAY = 86400
CHUNK = 1 << 18  # messages per generator: a constant, so the traffic never depends on how it is read
_HOURLY_WEIGHT = (0.15, 0.08, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.95, 0.9, 0.85, 0.7, 0.5, 0.3)
_PEAK_ZONE_OFFSET = 8 * 3600
_SERIAL_PREFIXES = ("2433", "2019", "3362", "5000")
_UNSOLICITED_QUIET_SECONDS = 72 * 3600
_UNSOLICITED_ATTEMPTS = 10
_LN4 = math.log(4)
_LATENCY_MIX = (0.86, 0.955, 0.985)  # cumulative shares of seconds, minutes, hours; the rest takes days
_MASK64 = (1 << 64) - 1
_TAIL_MULTIPLIER = 7_654_321  # coprime to 10**12, and 10**12 times it fits 64 bits

KINDS = ("otp", "notice", "marketing")
DESCRIPTIONS = (C.DELIVERED, *C.FAILURE_CATEGORY)  # receipt descriptions by code; 0 is the only success
REPLY_TEXTS = C.OPT_OUT_VARIANTS + C.MAINLAND_REPLIES + C.INTERNATIONAL_REPLIES
_SIGN_NAMES = tuple(s.name for s in C.SIGNS)
_TEMPLATE_FIELDS = tuple((str(t.template_id), t.kind, t.fee) for t in C.TEMPLATES)
_FEES = np.array([t.fee for t in C.TEMPLATES], dtype=np.int64)
_STREAM_SEND_TIMES, _STREAM_MESSAGES, _STREAM_UNSOLICITED, _STREAM_BOOK = range(4)


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
    sdk_app_id: str = ""

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
    sdk_app_id: str = ""

    @property
    def is_opt_out(self) -> bool:
        return C.is_opt_out(self.content)


def generator(*key: int) -> np.random.Generator:
    """A counter-based generator for one stream of draws, keyed by non-negative integers."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(list(key))))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 arrays (wrapping arithmetic): a well-mixed hash of each."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_POW10 = np.array([10**k for k in range(17)], dtype=np.uint64)


def _serial_parts(key: int, ordinal: int, indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prefix index, head, tail) of the SerialNos of messages of application `ordinal`: a prefix,
    then 24 to 28 digits whose head looks random (a hash) and whose last 12 make it unique (a
    bijection of (application, index) over [0, 10**12))."""
    indexes = np.asarray(indexes, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _mix64(np.uint64(key) ^ (indexes * np.uint64(0xD1B54A32D192ED03)))
    head_digits = (np.uint64(12) + h % np.uint64(5)).astype(np.int64)
    head = _POW10[head_digits - 1] + (h >> np.uint64(3)) % (np.uint64(9) * _POW10[head_digits - 1])
    tail = (np.uint64((ordinal % 100) * 10**10) + indexes) * np.uint64(_TAIL_MULTIPLIER) % np.uint64(10**12)
    return (h >> np.uint64(62)).astype(np.int64), head, tail


def serial_numbers(key: int, ordinal: int, indexes: np.ndarray) -> list[str]:
    prefixes, heads, tails = _serial_parts(key, ordinal, indexes)
    return [f"{_SERIAL_PREFIXES[p]}:{a}{b:012d}" for p, a, b in zip(prefixes.tolist(), heads.tolist(), tails.tolist(),
                                                                      strict=True)]


def serial_column(key: int, ordinal: int, indexes: np.ndarray) -> pl.Series:
    """The same SerialNos as a polars column (for files of millions of lines)."""
    prefixes, heads, tails = _serial_parts(key, ordinal, indexes)
    return pl.select(pl.concat_str([pl.lit(pl.Series(_SERIAL_PREFIXES).gather(prefixes)), pl.lit(":"),
                                    pl.lit(pl.Series(heads)).cast(pl.String),
                                    pl.lit(pl.Series(tails)).cast(pl.String).str.zfill(12)])).to_series()


def serial_no(key: int, ordinal: int, index: int) -> str:
    return serial_numbers(key, ordinal, np.array([index]))[0]


# -- recipients ------------------------------------------------------------------------------


def _number_prefixes(country: C.Country) -> tuple[str, ...]:
    """Leading digits of the national numbers of a country, all of one length."""
    if country.iso != "US":
        return country.prefixes
    # NANP exchange: [2-9]XX, not N11, not 555
    exchanges = [f"{a}{b}{c}" for a in range(2, 10) for b in range(10) for c in range(10)
                 if not (b == 1 and c == 1) and f"{a}{b}{c}" != "555"]
    return tuple(area + exchange for area in country.prefixes for exchange in exchanges)


@dataclasses.dataclass(frozen=True)
class _CountryNumbers:
    country: C.Country
    prefixes: tuple[str, ...]
    prefix_index: dict[str, int]
    rest_digits: int
    space: int  # how many numbers the prefixes allow
    a: int  # number j is (a * j + b) mod space: a bijection, since gcd(a, space) = 1
    b: int
    a_inverse: int
    offset: int  # first recipient index of the country
    size: int


class RecipientBook(Sequence):
    """The application's recipients, `size` numbers per country, each number made on demand from
    its index by a bijection of the country's number space (so numbers never repeat within the
    pool, and a number is found back from its digits) rather than held as objects."""

    def __init__(self, key: tuple[int, ...], pool_size: int, weights: dict[str, float]):
        rng = random.Random(int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0]))
        self.countries: list[_CountryNumbers] = []
        total_weight = sum(weights.values())
        offset = 0
        for country in C.COUNTRIES:
            prefixes = _number_prefixes(country)
            rest = country.national_length - len(prefixes[0])
            space = len(prefixes) * 10**rest
            a = rng.randrange(1, space)
            while math.gcd(a, space) != 1:
                a = rng.randrange(1, space)
            size = min(space, max(3, round(pool_size * weights[country.iso] / total_weight)))
            assert not any(p.startswith("0") for p in prefixes)
            self.countries.append(_CountryNumbers(country, prefixes, {p: i for i, p in enumerate(prefixes)}, rest,
                                                  space, a, rng.randrange(space), pow(a, -1, space), offset, size))
            offset += size
        self.offsets = np.array([c.offset for c in self.countries] + [offset], dtype=np.int64)
        self._by_code = {c.country.calling_code: c for c in self.countries}
        self._labels = [(f"+{c.country.calling_code}", c.country.calling_code, c.country.iso) for c in self.countries]
        self.calling_codes = tuple(c.country.calling_code for c in self.countries)
        self._a = np.array([c.a for c in self.countries], dtype=np.uint64)
        self._b = np.array([c.b for c in self.countries], dtype=np.uint64)
        self._space = np.array([c.space for c in self.countries], dtype=np.uint64)
        self._scale = np.array([10**c.rest_digits for c in self.countries], dtype=np.uint64)
        self._prefix_values = np.array([int(p) for c in self.countries for p in c.prefixes], dtype=np.uint64)
        self._prefix_start = np.cumsum([0] + [len(c.prefixes) for c in self.countries[:-1]])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.batch(np.array([index % len(self)]))[0]

    def national_numbers(self, indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(country position, national number as an integer) of recipients by index (no prefix
        starts with 0, so a national number is one integer)."""
        indexes = np.asarray(indexes, dtype=np.int64)
        country = np.searchsorted(self.offsets, indexes, side="right") - 1
        j = (indexes - self.offsets[country]).astype(np.uint64)
        a, b, space, scale = self._a[country], self._b[country], self._space[country], self._scale[country]
        with np.errstate(over="ignore"):
            prefix, rest = np.divmod((a * j + b) % space, scale)
        return country, self._prefix_values[self._prefix_start[country] + prefix.astype(np.int64)] * scale + rest

    def batch(self, indexes: np.ndarray | Sequence[int]) -> list[Recipient]:
        """Recipients by index, made as objects."""
        country, national = self.national_numbers(indexes)
        labels, out = self._labels, []
        for c, number in zip(country.tolist(), national.tolist(), strict=True):
            plus_code, code, iso = labels[c]
            text = str(number)
            out.append(Recipient(plus_code + text, code, text, iso))
        return out

    def phone_column(self, indexes: np.ndarray) -> tuple[pl.Series, np.ndarray]:
        """E.164 numbers of recipients by index as a polars column, and their country positions."""
        country, national = self.national_numbers(indexes)
        codes = pl.Series([f"+{c.country.calling_code}" for c in self.countries]).gather(country)
        return pl.select(pl.concat_str([pl.lit(codes), pl.lit(pl.Series(national)).cast(pl.String)])).to_series(), country

    def index_of(self, phone_e164: str) -> int | None:
        """The recipient index of an E.164 number, or None if it is not in the pool."""
        digits = phone_e164[1:]
        for length in (1, 2, 3):
            numbers = self._by_code.get(digits[:length])
            if numbers is None:
                continue
            national = digits[length:]
            plen = len(numbers.prefixes[0])
            if len(national) != numbers.country.national_length or not national.isdigit():
                continue
            prefix = numbers.prefix_index.get(national[:plen])
            if prefix is None:
                continue
            value = prefix * 10**numbers.rest_digits + int(national[plen:])
            j = numbers.a_inverse * (value - numbers.b) % numbers.space
            if j < numbers.size:
                return numbers.offset + j
        return None


# -- vectorized draws ------------------------------------------------------------------------


def _between(u: np.ndarray, a: int, b: int) -> np.ndarray:
    """Whole seconds in [a, b] from uniforms."""
    return a + np.floor(u * (b - a + 1)).astype(np.int64)


def receipt_latencies(gen: np.random.Generator, n: int) -> np.ndarray:
    """Seconds from sending to a receipt: mostly seconds, then minutes, hours, and a tail of days."""
    r, u, g = gen.random(n), gen.random(n), gen.standard_normal(n)
    seconds = np.maximum(1, np.rint(np.exp(_LN4 + 0.9 * g)))
    minutes = np.rint(60 * 60**u)
    hours = np.rint(3600 * 12**u)
    days = _between(u, DAY, 4 * DAY)
    return np.select([r < _LATENCY_MIX[0], r < _LATENCY_MIX[1], r < _LATENCY_MIX[2]], [seconds, minutes, hours],
                     days).astype(np.int64)


def receipt_latency(rng: random.Random) -> int:
    """One latency drawn from a `random.Random`, with the same mix as `receipt_latencies`."""
    r = rng.random()
    if r < _LATENCY_MIX[0]:
        return max(1, round(math.exp(_LN4 + 0.9 * rng.gauss())))
    if r < _LATENCY_MIX[1]:
        return round(60 * 60 ** rng.random())
    if r < _LATENCY_MIX[2]:
        return round(3600 * 12 ** rng.random())
    return DAY + int(rng.random() * (3 * DAY + 1))


def _cumulative(weights: Sequence[float]) -> np.ndarray:
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64))
    return cumulative / cumulative[-1]


def _choose(u: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cumulative, u, side="right"), len(cumulative) - 1)


_FAILURE_TABLES = tuple({id(c.failures): c.failures for c in C.COUNTRIES}.values())
_FAILURE_CUMULATIVE = [_cumulative([table.get(d, 0) for d in DESCRIPTIONS]) for table in _FAILURE_TABLES]
_INTERMEDIATE = np.array([DESCRIPTIONS.index(d) for d in C.INTERMEDIATE_DESCRIPTIONS], dtype=np.uint8)
_EXPIRED = DESCRIPTIONS.index("EXPIRED")
_REPLY_RATE = np.array([C.REPLY_RATE[k] for k in KINDS])
_OPT_OUT_SHARE = np.array([C.OPT_OUT_SHARE[k] for k in KINDS])
_CONVERSION_RATE = np.array([C.CONVERSION_RATE[k] for k in KINDS])
_MAINLAND_TEXTS = (len(C.OPT_OUT_VARIANTS), len(C.MAINLAND_REPLIES))  # (first index, count) in REPLY_TEXTS
_INTERNATIONAL_TEXTS = (len(C.OPT_OUT_VARIANTS) + len(C.MAINLAND_REPLIES), len(C.INTERNATIONAL_REPLIES))


def failure_table(failures: dict[str, int]) -> int:
    """Index of a country's failure weights among the tables `draw_fates` knows."""
    return next((i for i, t in enumerate(_FAILURE_TABLES) if t == failures), len(_FAILURE_TABLES) - 1)


@dataclasses.dataclass
class Fates:
    """What became of Ok sends, as offsets from their send time (-1 or 0: none)."""

    final_delay: np.ndarray  # int32 seconds to the final receipt, -1 without a receipt
    final_code: np.ndarray  # uint8 index in DESCRIPTIONS
    first_delay: np.ndarray  # uint8 seconds (1..120) to an earlier intermediate receipt, 0 without one
    first_code: np.ndarray  # uint8
    conversion_delay: np.ndarray  # int32, -1 without a conversion
    reply_delay: np.ndarray  # int32 seconds from the final receipt to the recipient's reply, -1 without
    reply_text: np.ndarray  # uint8 index in REPLY_TEXTS


def draw_fates(gen: np.random.Generator, ok: np.ndarray, kind: np.ndarray, delivery_rate: np.ndarray,
               failures: np.ndarray, mainland: np.ndarray) -> Fates:
    """Receipts, conversion and reply of each send (a fixed number of draws per send, used or not)."""
    n = len(ok)
    u = gen.random((13, n))
    has_receipt = ok & (u[0] >= C.NO_RECEIPT_RATE)
    success = has_receipt & (u[1] < delivery_rate)
    failed = has_receipt & ~success
    code = np.zeros(n, dtype=np.uint8)
    for table, cumulative in enumerate(_FAILURE_CUMULATIVE):
        rows = failed & (failures == table)
        code[rows] = _choose(u[2][rows], cumulative)
    latency = receipt_latencies(gen, n)
    expired = failed & (code == _EXPIRED)
    latency[expired] = _between(u[3][expired], DAY, 3 * DAY)
    two = has_receipt & (u[4] < C.TWO_RECEIPTS_RATE)
    first_delay = np.where(two, _between(u[5], 1, 120), 0)
    latency = np.where(two, np.maximum(latency, first_delay + _between(u[6], 60, 6 * 3600)), latency)
    final_delay = np.where(has_receipt, latency, -1)

    converts = success & (u[7] < _CONVERSION_RATE[kind])
    late = u[8] < 0.05
    conversion = np.where(late, _between(u[9], 7 * DAY + 1, 10 * DAY),
                          latency + np.rint(30 * (4 * DAY / 30) ** (u[9] ** 2)).astype(np.int64))
    replies = success & (u[10] < _REPLY_RATE[kind])
    reply_delay = np.where(replies, np.rint(60 * (2 * DAY / 60) ** u[11]).astype(np.int64), -1)
    reply_text = _reply_texts(gen, n, mainland, _OPT_OUT_SHARE[kind])
    return Fates(final_delay.astype(np.int32), code, first_delay.astype(np.uint8),
                 _INTERMEDIATE[np.floor(u[12] * len(_INTERMEDIATE)).astype(np.int64)],
                 np.where(converts, conversion, -1).astype(np.int32), reply_delay.astype(np.int32), reply_text)


def _reply_texts(gen: np.random.Generator, n: int, mainland: np.ndarray, opt_out_share) -> np.ndarray:
    u = gen.random((2, n))
    opt_out = np.floor(u[1] * len(C.OPT_OUT_VARIANTS))
    first = np.where(mainland, _MAINLAND_TEXTS[0], _INTERNATIONAL_TEXTS[0])
    count = np.where(mainland, _MAINLAND_TEXTS[1], _INTERNATIONAL_TEXTS[1])
    other = first + np.floor(u[1] * count)
    return np.where(u[0] < opt_out_share, opt_out, other).astype(np.uint8)


# -- one application's traffic -----------------------------------------------------------------


def _send_times(key: tuple[int, ...], n: int, lo: int, hi: int) -> np.ndarray:
    """`n` sorted send times in [lo, hi), weighted by the hour of day in the peak zone (inverse CDF
    over hour segments)."""
    edges = [lo]
    boundary = ((lo + _PEAK_ZONE_OFFSET) // 3600 + 1) * 3600 - _PEAK_ZONE_OFFSET
    while boundary < hi:
        edges.append(boundary)
        boundary += 3600
    edges.append(hi)
    starts = np.array(edges[:-1], dtype=np.int64)
    lengths = np.diff(np.array(edges, dtype=np.int64))
    weights = lengths * np.array([_HOURLY_WEIGHT[(s + _PEAK_ZONE_OFFSET) // 3600 % 24] for s in edges[:-1]])
    cumulative = np.cumsum(weights)
    times = np.empty(n, dtype=np.int64)
    for chunk, begin in enumerate(range(0, n, CHUNK)):
        u = generator(*key, _STREAM_SEND_TIMES, chunk).random(min(CHUNK, n - begin)) * cumulative[-1]
        segment = np.minimum(np.searchsorted(cumulative, u, side="right"), len(weights) - 1)
        within = (u - (cumulative[segment] - weights[segment])) / weights[segment]
        times[begin : begin + len(u)] = starts[segment] + np.minimum(np.floor(within * lengths[segment]),
                                                                     lengths[segment] - 1).astype(np.int64)
    times.sort()
    return times


class AppTraffic:
    """The traffic of one application: message columns in send-time order, reply columns in
    reply-time order, and the recipients. Messages and replies added later (SendSms) are kept as
    objects in `extra_messages` / `extra_replies`."""

    def __init__(self, seed: int, days: int, messages_per_day: int, end: float, *, sdk_app_id: str = "",
                 ordinal: int = 0, profile: C.AppProfile | None = None):
        profile = profile or C.APP_PROFILES[0]
        key = (seed, ordinal)
        self.sdk_app_id = sdk_app_id
        self.ordinal = ordinal
        self.serial_key = int(np.random.SeedSequence([seed, ordinal]).generate_state(1, np.uint64)[0])
        self.end = hi = math.ceil(end)
        self.start = lo = math.ceil(end - days * DAY)
        self.signs: tuple[C.Sign, ...] = C.SIGNS
        self.templates: tuple[C.Template, ...] = C.TEMPLATES
        n = round(days * messages_per_day * profile.volume)
        weights = profile.country_weights()
        self.recipients = RecipientBook((*key, _STREAM_BOOK), max(50, n // 4), weights)

        self.send_time = _send_times(key, n, lo, hi)
        columns = {name: np.empty(n, dtype=dtype) for name, dtype in (
            ("recipient", np.int32), ("template", np.uint8), ("sign", np.uint8), ("context", np.int32),
            ("code", np.uint8), ("final_delay", np.int32), ("final_code", np.uint8), ("first_delay", np.uint8),
            ("first_code", np.uint8), ("conversion_delay", np.int32))}
        reply_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        country_cumulative = _cumulative([weights[c.iso] for c in C.COUNTRIES])
        mainland_country = np.array([c.mainland for c in C.COUNTRIES])
        delivery = np.array([c.delivery_rate for c in C.COUNTRIES])
        failures = np.array([failure_table(c.failures) for c in C.COUNTRIES])
        sizes = np.diff(self.recipients.offsets)
        kinds = {True: _cumulative([profile.kind_weights.get(k, 0) for k in KINDS]),
                 False: _cumulative([C.INTERNATIONAL_KIND_WEIGHTS.get(k, 0) for k in KINDS])}
        usable = [i for i, t in enumerate(C.TEMPLATES) if t.status_code == 0]
        template_choices = {(m, k): [i for i in usable if C.TEMPLATES[i].international == (0 if m else 1)
                                     and C.TEMPLATES[i].kind == KINDS[k]] for m in (True, False) for k in range(3)}
        sign_choices = {m: [i for i, s in enumerate(C.SIGNS) if s.status_code == 0 and s.international == (0 if m else 1)]
                        for m in (True, False)}
        for chunk, begin in enumerate(range(0, n, CHUNK)):
            gen = generator(*key, _STREAM_MESSAGES, chunk)
            size = min(CHUNK, n - begin)
            rows = slice(begin, begin + size)
            u = gen.random((9, size))
            country = _choose(u[0], country_cumulative)
            mainland = mainland_country[country]
            columns["recipient"][rows] = self.recipients.offsets[country] + np.floor(u[1] * sizes[country])
            kind = np.where(mainland, _choose(u[2], kinds[True]), _choose(u[2], kinds[False]))
            template = np.zeros(size, dtype=np.uint8)
            sign = np.zeros(size, dtype=np.uint8)
            for (m, k), choices in template_choices.items():
                picked = (mainland == m) & (kind == k)
                if choices:
                    template[picked] = np.array(choices)[np.floor(u[3][picked] * len(choices)).astype(np.int64)]
            for m, choices in sign_choices.items():
                picked = mainland == m
                sign[picked] = np.array(choices)[np.floor(u[4][picked] * len(choices)).astype(np.int64)]
            columns["template"][rows] = template
            columns["sign"][rows] = sign
            columns["context"][rows] = np.where(u[5] < 0.15, -1, 1_000_000 + np.floor(u[6] * 9_000_000))
            failed_send = u[7] < C.SEND_FAILURE_RATE
            columns["code"][rows] = np.where(failed_send, 1 + np.floor(u[8] * len(C.SEND_FAILURES)), 0)
            fates = draw_fates(gen, ~failed_send, kind, delivery[country], failures[country], mainland)
            for name in ("final_delay", "final_code", "first_delay", "first_code", "conversion_delay"):
                columns[name][rows] = getattr(fates, name)
            replied = np.flatnonzero(fates.reply_delay >= 0)
            reply_parts.append((begin + replied, fates.reply_delay[replied], fates.reply_text[replied]))
        self.recipient = columns["recipient"]
        self.template = columns["template"]
        self.sign = columns["sign"]
        self.context = columns["context"]
        self.code = columns["code"]
        self.final_delay = columns["final_delay"]
        self.final_code = columns["final_code"]
        self.first_delay = columns["first_delay"]
        self.first_code = columns["first_code"]
        self.conversion_delay = columns["conversion_delay"]
        self.n_messages = n

        self._index_receipts()
        caused = np.concatenate([p[0] for p in reply_parts]) if reply_parts else np.empty(0, np.int64)
        reply_time = (self.send_time[caused] + self.final_delay[caused]
                      + np.concatenate([p[1] for p in reply_parts] or [np.empty(0, np.int32)]))
        texts = np.concatenate([p[2] for p in reply_parts] or [np.empty(0, np.uint8)])
        self._set_replies(caused, reply_time, self.recipient[caused], self.sign[caused], texts,
                          *self._unsolicited(key, round(n * C.UNSOLICITED_REPLY_RATE), weights, lo, hi))
        self.extra_messages: list[Message] = []
        self.extra_replies: list[Reply] = []

    # -- indexes -------------------------------------------------------------------------------

    def _index_receipts(self) -> None:
        """Receipt ids in arrival order (`receipt_ids`, `receipt_times`) and by recipient then time
        (`receipt_ids_by_recipient`, sliced by `receipt_offsets`)."""
        n = self.n_messages
        exists = np.zeros(2 * n, dtype=bool)
        exists[0::2] = self.first_delay > 0
        exists[1::2] = self.final_delay >= 0
        ids = np.flatnonzero(exists)
        del exists
        times = self.receipt_time_of(ids)
        order = np.argsort(times, kind="stable")
        self.receipt_ids, self.receipt_times = ids[order], times[order]
        order = np.lexsort((times, self.recipient[ids >> 1]))
        self.receipt_ids_by_recipient = ids[order]
        del order, times, ids
        self.receipt_offsets = np.searchsorted(self.recipient[self.receipt_ids_by_recipient >> 1],
                                               np.arange(len(self.recipients) + 1))
        converting = np.flatnonzero(self.conversion_delay >= 0)
        conversion_times = self.send_time[converting] + self.conversion_delay[converting]
        order = np.argsort(conversion_times, kind="stable")
        self.conversion_ids, self.conversion_times = converting[order], conversion_times[order]

    def _unsolicited(self, key, count: int, weights: dict[str, float], lo: int, hi: int):
        """Replies from numbers with no delivered message from that signature in the previous 72
        hours: up to 10 candidates each, the first quiet one kept."""
        gen = generator(*key, _STREAM_UNSOLICITED)
        u = gen.random((6, count, _UNSOLICITED_ATTEMPTS))
        country = _choose(u[0], _cumulative([weights[c.iso] for c in C.COUNTRIES]))
        sizes = np.diff(self.recipients.offsets)
        recipient = (self.recipients.offsets[country] + np.floor(u[1] * sizes[country])).astype(np.int64)
        mainland = np.array([c.mainland for c in C.COUNTRIES])[country]
        sign_choices = {m: [i for i, s in enumerate(C.SIGNS) if s.status_code == 0 and s.international == (0 if m else 1)]
                        for m in (True, False)}
        sign = np.where(mainland, np.array(sign_choices[True])[np.floor(u[2] * len(sign_choices[True])).astype(int)],
                        np.array(sign_choices[False])[np.floor(u[2] * len(sign_choices[False])).astype(int)])
        when = lo + np.floor(u[3] * (hi + DAY - lo)).astype(np.int64)
        opt_out = np.floor(u[5] * len(C.OPT_OUT_VARIANTS))
        first = np.where(mainland, _MAINLAND_TEXTS[0], _INTERNATIONAL_TEXTS[0])
        count_texts = np.where(mainland, _MAINLAND_TEXTS[1], _INTERNATIONAL_TEXTS[1])
        text = np.where(u[4] < 0.3, opt_out, first + np.floor(u[5] * count_texts))
        kept = []
        for i in range(count):
            for attempt in range(_UNSOLICITED_ATTEMPTS):
                j, s, t = int(recipient[i, attempt]), int(sign[i, attempt]), int(when[i, attempt])
                if self._quiet(j, s, t):
                    kept.append((j, s, t, int(text[i, attempt])))
                    break
        cols = list(zip(*kept, strict=True)) if kept else [(), (), (), ()]
        return (np.array(cols[0], dtype=np.int32), np.array(cols[1], dtype=np.uint8),
                np.array(cols[2], dtype=np.int64), np.array(cols[3], dtype=np.uint8))

    def _quiet(self, recipient: int, sign: int, t: int) -> bool:
        ids = self.receipt_ids_by_recipient[self.receipt_offsets[recipient] : self.receipt_offsets[recipient + 1]]
        finals = ids[(ids & 1) == 1] >> 1
        delivered = finals[(self.final_code[finals] == 0) & (self.sign[finals] == sign)]
        times = self.send_time[delivered] + self.final_delay[delivered]
        before = times[times <= t]
        return not len(before) or t - int(before.max()) > _UNSOLICITED_QUIET_SECONDS

    def _set_replies(self, caused, reply_time, recipient, sign, text, u_recipient, u_sign, u_time, u_text) -> None:
        time = np.concatenate([reply_time, u_time])
        recipient = np.concatenate([recipient, u_recipient]).astype(np.int32)
        order = np.lexsort((recipient, time))
        self.reply_time = time[order]
        self.reply_recipient = recipient[order]
        self.reply_sign = np.concatenate([sign, u_sign]).astype(np.uint8)[order]
        self.reply_text = np.concatenate([text, u_text]).astype(np.uint8)[order]
        self.reply_cause = np.concatenate([caused, np.full(len(u_time), -1)]).astype(np.int64)[order]
        self.n_replies = len(time)
        self.reply_ids = np.arange(self.n_replies, dtype=np.int64)
        self.reply_ids_by_recipient = np.lexsort((self.reply_time, self.reply_recipient))
        self.reply_offsets = np.searchsorted(self.reply_recipient[self.reply_ids_by_recipient],
                                             np.arange(len(self.recipients) + 1))

    # -- reading -------------------------------------------------------------------------------

    def receipt_time_of(self, ids: np.ndarray) -> np.ndarray:
        messages = ids >> 1
        delay = np.where(ids & 1, self.final_delay[messages], self.first_delay[messages])
        return self.send_time[messages] + delay

    @property
    def message_count(self) -> int:
        return self.n_messages + len(self.extra_messages)

    @property
    def reply_count(self) -> int:
        return self.n_replies + len(self.extra_replies)

    def messages_at(self, indexes: Sequence[int] | np.ndarray) -> list[Message]:
        """Messages by index (base columns or later additions), made as objects."""
        indexes = np.asarray(indexes, dtype=np.int64)
        base = indexes[indexes < self.n_messages]
        made = iter(self._make_messages(base)) if len(base) else iter(())
        return [next(made) if i < self.n_messages else self.extra_messages[i - self.n_messages]
                for i in indexes.tolist()]

    def _make_messages(self, idx: np.ndarray) -> list[Message]:
        columns = zip(self.recipients.batch(self.recipient[idx]), serial_numbers(self.serial_key, self.ordinal, idx),
                      self.send_time[idx].tolist(), self.template[idx].tolist(), self.sign[idx].tolist(),
                      self.context[idx].tolist(), self.code[idx].tolist(), self.final_delay[idx].tolist(),
                      self.final_code[idx].tolist(), self.first_delay[idx].tolist(), self.first_code[idx].tolist(),
                      self.conversion_delay[idx].tolist(), strict=True)
        out = []
        signs, templates, app, descriptions = _SIGN_NAMES, _TEMPLATE_FIELDS, self.sdk_app_id, DESCRIPTIONS
        for recipient, serial, sent, t, s, context, code, final, final_code, first, first_code, conversion in columns:
            template_id, kind, fee = templates[t]
            session = "" if context < 0 else f"{kind}:{context}"
            if code:
                failure, text = C.SEND_FAILURES[code - 1]
                out.append(Message("", recipient, signs[s], template_id, kind, session, sent, 0, failure, text,
                                   sdk_app_id=app))
                continue
            m = Message(serial, recipient, signs[s], template_id, kind, session, sent, fee, "Ok", "send success",
                        conversion_time=sent + conversion if conversion >= 0 else None, sdk_app_id=app)
            if first:
                m.receipts.append(Receipt(m, "FAIL", descriptions[first_code], sent + first))
            if final >= 0:
                m.receipts.append(Receipt(m, "FAIL" if final_code else "SUCCESS", descriptions[final_code],
                                          sent + final))
            out.append(m)
        return out

    def receipts_at(self, ids: Sequence[int] | np.ndarray) -> list[Receipt]:
        ids = np.asarray(ids, dtype=np.int64)
        messages = self.messages_at(ids >> 1)
        return [m.receipts[-1] if i & 1 else m.receipts[0] for m, i in zip(messages, ids.tolist(), strict=True)]

    def replies_at(self, ids: Sequence[int] | np.ndarray) -> list[Reply]:
        ids = np.asarray(ids, dtype=np.int64)
        base = ids[ids < self.n_replies]
        causes = self.reply_cause[base]
        caused = {i: m.serial_no for i, m in zip(causes[causes >= 0].tolist(),
                                                 self.messages_at(causes[causes >= 0]), strict=True)}
        recipients = iter(self.recipients.batch(self.reply_recipient[base]))
        made = iter(zip(self.reply_recipient[base].tolist(), self.reply_sign[base].tolist(),
                        self.reply_text[base].tolist(), self.reply_time[base].tolist(), causes.tolist(), strict=True))
        out = []
        for i in ids.tolist():
            if i >= self.n_replies:
                out.append(self.extra_replies[i - self.n_replies])
                continue
            recipient, sign, text, time, cause = next(made)
            out.append(Reply(next(recipients), C.SIGNS[sign].name, REPLY_TEXTS[text], time,
                             caused.get(cause) if cause >= 0 else None, sdk_app_id=self.sdk_app_id))
        return out

    def sends_frame(self, begin: int, end: int) -> pl.DataFrame:
        """The sends-log records of base messages [begin, end), made column-wise (the same values
        as the `Message` objects; the sends log of a large day has millions of lines)."""
        idx = np.arange(begin, end)
        code = self.code[idx]
        ok = code == 0
        template = self.template[idx]
        context = self.context[idx]
        phones, country = self.recipients.phone_column(self.recipient[idx])
        kinds = pl.Series([f"{t.kind}:" for t in C.TEMPLATES]).gather(template)
        frame = pl.DataFrame({
            "SerialNo": serial_column(self.serial_key, self.ordinal, idx), "ok": ok, "PhoneNumber": phones,
            "Fee": np.where(ok, _FEES[template], 0), "kind": kinds, "context": context,
            "Code": pl.Series(("Ok",) + tuple(c for c, _ in C.SEND_FAILURES)).gather(code),
            "Message": pl.Series(("send success",) + tuple(m for _, m in C.SEND_FAILURES)).gather(code),
            "iso": pl.Series([c.iso for c in C.COUNTRIES]).gather(country),
            "SendTime": self.send_time[idx], "TemplateId": pl.Series([t for t, _, _ in _TEMPLATE_FIELDS]).gather(template),
            "SignName": pl.Series(_SIGN_NAMES).gather(self.sign[idx]),
        })
        return frame.select(
            pl.when("ok").then("SerialNo").otherwise(pl.lit("")).alias("SerialNo"), "PhoneNumber", "Fee",
            pl.when(pl.col("context") < 0).then(pl.lit("")).otherwise(
                pl.concat_str(["kind", pl.col("context").cast(pl.String)])).alias("SessionContext"),
            "Code", "Message", pl.when("ok").then("iso").otherwise(pl.lit("")).alias("IsoCode"), "SendTime",
            pl.lit(self.sdk_app_id).alias("SmsSdkAppId"), "TemplateId", "SignName")

    def conversions_frame(self, ids: np.ndarray) -> pl.DataFrame:
        """(SerialNo, ConversionTime) of base messages, column-wise."""
        return pl.DataFrame({"SerialNo": serial_column(self.serial_key, self.ordinal, ids),
                             "ConversionTime": self.send_time[ids] + self.conversion_delay[ids]})

    def iter_messages(self, batch: int = 4096) -> Iterator[Message]:
        for begin in range(0, self.message_count, batch):
            yield from self.messages_at(np.arange(begin, min(begin + batch, self.message_count)))

    @property
    def messages(self) -> Records:
        return Records(self.messages_at, self.message_count)

    @property
    def replies(self) -> Records:
        return Records(self.replies_at, self.reply_count)


class Records(Sequence):
    """A read-only sequence of records made on demand, in batches, from ids: `ids` is an array of
    record ids, or a count (ids 0..count-1); `make` turns ids into objects."""

    def __init__(self, make, ids: np.ndarray | int, batch: int = 4096):
        self._make = make
        self._ids = ids
        self._batch = batch

    def __len__(self) -> int:
        return self._ids if isinstance(self._ids, int) else len(self._ids)

    def _slice(self, begin: int, end: int) -> np.ndarray:
        if isinstance(self._ids, int):
            return np.arange(begin, end, dtype=np.int64)
        return self._ids[begin:end]

    def __getitem__(self, index):  # type: ignore[override]
        n = len(self)
        if isinstance(index, slice):
            return Records(self._make, self._slice(0, n)[index], self._batch)
        if not -n <= index < n:
            raise IndexError(index)
        index %= n
        return self._make(self._slice(index, index + 1))[0]

    def __iter__(self) -> Iterator:
        for begin in range(0, len(self), self._batch):
            yield from self._make(self._slice(begin, min(begin + self._batch, len(self))))

    def __reversed__(self) -> Iterator:
        for end in range(len(self), 0, -self._batch):
            yield from reversed(self._make(self._slice(max(0, end - self._batch), end)))


def generate_traffic(seed: int, days: int, messages_per_day: int, end: float, **options) -> AppTraffic:
    """The traffic of one application (options: sdk_app_id, ordinal, profile)."""
    return AppTraffic(seed, days, messages_per_day, end, **options)
