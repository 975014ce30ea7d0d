"""The simulated service's memory: its clock, and per application its two queues, the by-number
archive, the statistics counters; and the ground truth tests compare against.

Queue semantics (the real service documents only "each record once", reference section 0): a
receipt or reply becomes pullable when its time (UserReceiveTime / ReplyTime) has passed on the
simulator clock; pulls hand records out oldest first, at most `Limit`, each once; unpulled records
stay queued indefinitely (the real retention is undocumented, section 9). A response that
did not reach the client intact still took its records off the queue: the ground truth marks it
`lost`, as opposed to `delivered`. A queue is a cursor over the application's records sorted by
time (compact arrays of record ids), so records are made only when handed out.

By-number pulls read an archive that is never consumed: records of one E.164 number whose time is
in [BeginTime, EndTime] and has passed, oldest first, at most `Limit` (an index of the record ids
by recipient).

Statistics (undocumented choices, section 9): hours are buckets of the provider time zone and a
message counts in the hour it was SENT. SendStatusStatistics: RequestCount = every SendStatus,
RequestSuccessCount = those with Code "Ok", FeeCount = the sum of their Fee. CallbackStatusStatistics
counts messages that have a receipt by the simulator clock, each with the status of its latest
receipt so far (a later receipt moves it from failure to success or back, the way our final-state
rule does): CallbackCount = CallbackSuccessCount + CallbackFailCount, failures split into the five counters
by `catalog.FAILURE_CATEGORY`; its RequestSuccessCount is that of SendStatusStatistics. The counts
are tallies per 15 minutes, kept as the clock passes the receipts.

Push callbacks (`push`): with a callback URL, each application's receipts and replies are also
taken, in time order, by push cursors of their own; `next_push` hands the pusher the next push
(at most 100 receipts, or one reply) and the ground truth keeps every push and its attempts.
Without `pushed_also_queued`, pushing takes the records and the pull queues hand out nothing.

Ground truth is streamed: the `truth_*` methods are iterators that make records batch by batch;
`due_receipts`/`due_replies`/`messages`/`replies` are sequences made on demand.

The clock is real time plus an offset (or frozen, for tests); it only moves forward. All access
goes through one lock, so tests may read the ground truth while the server thread serves.
"""

from __future__ import annotations

import array
import bisect
import dataclasses
import datetime as dt
import heapq
import os
import random
import shutil
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import orjson

from pipelines.simulator import catalog as C
from pipelines.simulator import traffic as T
from pipelines.simulator.faults import DIRTY_VARIANTS
from pipelines.simulator.traffic import AppTraffic, Message, Receipt, Records, Reply
from pipelines.tencent import actions as A

_BUCKET_SECONDS = 900  # statistics buckets: every real zone offset is a multiple of 15 minutes
_BY_NUMBER_VARIANTS = tuple(v for v in DIRTY_VARIANTS if v != "repeat")
_SEND_COUNTERS = ("RequestCount", "RequestSuccessCount", "FeeCount")
_CALLBACK_COUNTERS = ("CallbackCount", "CallbackSuccessCount", "CallbackFailCount") + C.FAILURE_COUNTERS
# per receipt description code: the position of its failure counter in _CALLBACK_COUNTERS (0 for success)
_FAILURE_COLUMN = np.array([0] + [3 + C.FAILURE_COUNTERS.index(C.FAILURE_CATEGORY[d]) for d in T.DESCRIPTIONS[1:]])
_FEE = np.array([t.fee for t in C.TEMPLATES], dtype=np.int64)
_TALLY_BATCH = 1 << 20
_FILE_BATCH = 1 << 16  # lines per column-wise batch: bounds what a file write holds
_LATEST = 1 << 62


class ClockError(ValueError):
    """The clock was asked to go backwards."""


class SimClock:
    def __init__(self, start: float, *, runs: bool = True):
        self._sim_base = start
        self._real_base = time.time()
        self.runs = runs

    def now(self) -> float:
        return self._sim_base + (time.time() - self._real_base if self.runs else 0.0)

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ClockError(f"advance_seconds must not be negative, got {seconds:g}")
        self._sim_base += seconds
        return self.now()

    def set(self, moment: float) -> float:
        current = self.now()
        if moment < current:
            raise ClockError(f"the clock only moves forward: {moment:g} is before now {current:g}")
        return self.advance(moment - current)


# -- records on the wire ---------------------------------------------------------------------


def identity(record: Receipt | Reply) -> dict:
    """What identifies a handed-out record, with its values as generated (before any dirtying)."""
    if isinstance(record, Receipt):
        return {"SerialNo": record.message.serial_no, "ReportStatus": record.report_status,
                "UserReceiveTime": record.user_receive_time}
    return {"PhoneNumber": record.recipient.phone_e164, "SignName": record.sign_name, "ReplyTime": record.reply_time,
            "ReplyContent": record.content}


def receipt_fields(r: Receipt) -> dict:
    m = r.message
    return {
        "UserReceiveTime": r.user_receive_time,
        "CountryCode": m.recipient.country_code,
        "SubscriberNumber": m.recipient.subscriber,
        "PhoneNumber": m.recipient.phone_e164,
        "SerialNo": m.serial_no,
        "ReportStatus": r.report_status,
        "Description": r.description,
        "SessionContext": m.session_context,
    }


_RECEIPT_STATUS = tuple("SUCCESS" if code == 0 else "FAIL" for code in range(len(T.DESCRIPTIONS)))
_SESSION_KIND = tuple(f"{t.kind}:" for t in C.TEMPLATES)


def encode_receipts(traffic: AppTraffic, ids: np.ndarray) -> list[bytes]:
    """`orjson.dumps(receipt_fields(r))` of generated receipts, made from the columns without
    objects (every value is plain ASCII: digits, status and carrier codes, "kind:number")."""
    messages = ids >> 1
    final = (ids & 1).astype(bool)
    times = traffic.send_time[messages] + np.where(final, traffic.final_delay[messages], traffic.first_delay[messages])
    codes = np.where(final, traffic.final_code[messages], traffic.first_code[messages])
    country, national = traffic.recipients.national_numbers(traffic.recipient[messages])
    labels = traffic.recipients.calling_codes
    serials = T.serial_numbers(traffic.serial_key, traffic.ordinal, messages)
    out = []
    for t, c, n, serial, code, template, context in zip(
            times.tolist(), country.tolist(), national.tolist(), serials, codes.tolist(),
            traffic.template[messages].tolist(), traffic.context[messages].tolist(), strict=True):
        cc = labels[c]
        session = "" if context < 0 else f"{_SESSION_KIND[template]}{context}"
        out.append(f'{{"UserReceiveTime":{t},"CountryCode":"{cc}","SubscriberNumber":"{n}","PhoneNumber":"+{cc}{n}",'
                   f'"SerialNo":"{serial}","ReportStatus":"{_RECEIPT_STATUS[code]}","Description":'
                   f'"{T.DESCRIPTIONS[code]}","SessionContext":"{session}"}}'.encode())
    return out


def reply_fields(r: Reply) -> dict:
    return {
        "ExtendCode": r.extend_code,
        "CountryCode": r.recipient.country_code,
        "PhoneNumber": r.recipient.phone_e164,
        "SignName": r.sign_name,
        "ReplyContent": r.content,
        "ReplyTime": r.reply_time,
        "SubscriberNumber": r.recipient.subscriber,
    }


def dirty_encoding(record: Receipt | Reply, variant: str, rng: random.Random) -> bytes:
    fields = receipt_fields(record) if isinstance(record, Receipt) else reply_fields(record)
    time_key = "UserReceiveTime" if isinstance(record, Receipt) else "ReplyTime"
    cc, national = fields["CountryCode"], fields["SubscriberNumber"]
    if variant == "phone_no_plus":
        fields["PhoneNumber"] = cc + national
    elif variant == "phone_national":
        fields["PhoneNumber"] = national
    elif variant == "phone_00_prefix":
        fields["PhoneNumber"] = "00" + cc + national
    elif variant == "empty_country_code":
        fields["CountryCode"] = ""
    elif variant == "time_ms":
        fields[time_key] = fields[time_key] * 1000 + int(rng.random() * 1000)
    elif variant == "time_zero":
        fields[time_key] = 0
    elif variant == "extra_field":
        fields["ExtraFoo"] = "bar"
    return orjson.dumps(fields)


def _is_receipt_action(action: str) -> bool:
    return action in (A.PULL_SEND_STATUS, A.PULL_SEND_STATUS_BY_NUMBER)


@dataclasses.dataclass(slots=True)
class HandedOut:
    """One pull response that carried records (queue or by-number): the record ids in response
    order (compact), with dirty variants by position."""

    app: AppState
    action: str
    request_id: str
    sim_time: float
    ids: array.array
    variants: dict[int, tuple[str, ...]]
    outcome: str = "pending"  # -> delivered | lost

    @property
    def records(self) -> list[Receipt | Reply]:
        return self.app.records(self.action, self.ids)

    def to_json(self) -> dict:
        return {
            "sdk_app_id": self.app.sdk_app_id,
            "action": self.action,
            "request_id": self.request_id,
            "sim_time": self.sim_time,
            "outcome": self.outcome,
            "records": [dict(identity(r), dirty=list(self.variants.get(i, ()))) for i, r in enumerate(self.records)],
        }


@dataclasses.dataclass(slots=True)
class Push:
    """One push callback: a status push (up to 100 receipts) or a reply push (one reply), its
    body, and the outcome of each attempt ("ok" or what went wrong)."""

    app: AppState
    kind: str  # status | reply
    sim_time: float
    ids: array.array
    body: bytes
    attempts: list[str] = dataclasses.field(default_factory=list)
    acknowledged: bool = False

    def to_json(self) -> dict:
        action = A.PULL_SEND_STATUS if self.kind == "status" else A.PULL_REPLY_STATUS
        return {"sdk_app_id": self.app.sdk_app_id, "kind": self.kind, "sim_time": self.sim_time,
                "acknowledged": self.acknowledged, "attempts": list(self.attempts),
                "records": [identity(r) for r in self.app.records(action, self.ids)]}


def status_push_fields(r: Receipt, tz: zoneinfo.ZoneInfo) -> dict:
    """A receipt as a status push carries it (reference section 6.1)."""
    m = r.message
    return {
        "user_receive_time": dt.datetime.fromtimestamp(r.user_receive_time, tz).strftime("%Y-%m-%d %H:%M:%S"),
        "nationcode": m.recipient.country_code,
        "mobile": m.recipient.subscriber,
        "report_status": r.report_status,
        "errmsg": r.description,
        "description": C.DESCRIPTION_TEXT[r.description],
        "sid": m.serial_no,
        "ext": m.session_context,
    }


def reply_push_fields(r: Reply) -> dict:
    """A reply as a reply push carries it (reference section 6.2)."""
    return {"extend": r.extend_code, "mobile": r.recipient.subscriber, "nationcode": r.recipient.country_code,
            "sign": r.sign_name, "text": r.content, "time": r.reply_time}


# -- time order and cursors ------------------------------------------------------------------


class TimeOrder:
    """Record ids in time order: the generated ones as sorted arrays, those added later (SendSms)
    in a small sorted list of (time, id)."""

    def __init__(self, times: np.ndarray, ids: np.ndarray):
        self.times = times
        self.ids = ids
        self.extra: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.ids) + len(self.extra)

    def add(self, when: int, record_id: int) -> None:
        bisect.insort(self.extra, (when, record_id))

    def count_until(self, now: float) -> int:
        return int(np.searchsorted(self.times, int(now), side="right")) + bisect.bisect_right(
            self.extra, (int(now), _LATEST))

    def ids_until(self, now: float) -> np.ndarray:
        """Every id whose time has passed by `now`, in time order."""
        end = int(np.searchsorted(self.times, int(now), side="right"))
        k = bisect.bisect_right(self.extra, (int(now), _LATEST))
        if not k:
            return self.ids[:end]
        extra_times = np.array([t for t, _ in self.extra[:k]], dtype=np.int64)
        extra_ids = np.array([i for _, i in self.extra[:k]], dtype=np.int64)
        return np.insert(self.ids[:end], np.searchsorted(self.times[:end], extra_times, side="right"), extra_ids)


class Cursor:
    """Takes the records of a `TimeOrder` once each, oldest first, once their time has passed."""

    def __init__(self, order: TimeOrder):
        self.order = order
        self.base = 0
        self.extra = 0

    @property
    def taken(self) -> int:
        return self.base + self.extra

    def take(self, now: float, limit: int | None = None) -> np.ndarray:
        order, moment = self.order, int(now)
        end = self.base + int(np.searchsorted(order.times[self.base :], moment, side="right"))
        k = bisect.bisect_right(order.extra, (moment, _LATEST), lo=self.extra)
        if limit is not None:
            end, k = min(end, self.base + limit), min(k, self.extra + limit)
        if k == self.extra:
            ids = order.ids[self.base : end]
            self.base = end
            return ids
        base = zip(order.times[self.base : end].tolist(), [0] * (end - self.base), order.ids[self.base : end].tolist(),
                   strict=True)
        extra = ((t, 1, i) for t, i in order.extra[self.extra : k])
        merged = list(heapq.merge(base, extra))[:limit]
        from_extra = sum(source for _, source, _ in merged)
        self.base += len(merged) - from_extra
        self.extra += from_extra
        return np.array([i for _, _, i in merged], dtype=np.int64)


@dataclasses.dataclass
class _Queue:
    cursor: Cursor
    repeats: list[int] = dataclasses.field(default_factory=list)  # ids to hand out again ("repeat" variant)


class Concat(Sequence):
    """Several sequences read as one (the records of every application)."""

    def __init__(self, parts: list[Sequence]):
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += len(self)
        for part in self.parts:
            if index < len(part):
                return part[index]
            index -= len(part)
        raise IndexError(index)

    def __iter__(self) -> Iterator:
        for part in self.parts:
            yield from part

    def __reversed__(self) -> Iterator:
        for part in reversed(self.parts):
            yield from reversed(part)


def _one_or_all(parts: list[Sequence]) -> Sequence:
    return parts[0] if len(parts) == 1 else Concat(parts)


# -- one application -------------------------------------------------------------------------


class AppState:
    """Queues, archive, counters and files cursor of one SmsSdkAppId."""

    def __init__(self, traffic: AppTraffic, seed: int):
        self.traffic = traffic
        self.sdk_app_id = traffic.sdk_app_id
        self.receipts = TimeOrder(traffic.receipt_times, traffic.receipt_ids)
        self.replies = TimeOrder(traffic.reply_time, traffic.reply_ids)
        self.conversions = TimeOrder(traffic.conversion_times, traffic.conversion_ids)
        self.queues = {A.PULL_SEND_STATUS: _Queue(Cursor(self.receipts)),
                       A.PULL_REPLY_STATUS: _Queue(Cursor(self.replies))}
        self.extra_by_number: dict[str, dict[str, list[tuple[int, int]]]] = {
            A.PULL_SEND_STATUS_BY_NUMBER: {}, A.PULL_REPLY_STATUS_BY_NUMBER: {}}
        self.fates = T.generator(seed, traffic.ordinal, 99)  # draws for messages sent through SendSms
        self.send_tally: dict[int, list[int]] = {}
        self.callback_tally: dict[int, list[int]] = {}
        self.arrivals = Cursor(self.receipts)  # receipts counted in the callback tally
        self.pushed_receipts = Cursor(self.receipts)
        self.pushed_replies = Cursor(self.replies)
        self.sends_written = 0
        self.conversions_written = Cursor(self.conversions)
        self._tally_base_sends()

    def records(self, action: str, ids: Iterable[int]) -> list[Receipt | Reply]:
        ids = np.asarray(ids, dtype=np.int64)
        return self.traffic.receipts_at(ids) if _is_receipt_action(action) else self.traffic.replies_at(ids)

    def encode(self, action: str, ids: np.ndarray) -> list[bytes]:
        """Records as the pull actions send them; receipts of generated messages straight from the
        columns (the hot path of a drain), the rest through their objects."""
        ids = np.asarray(ids, dtype=np.int64)
        if _is_receipt_action(action) and len(ids) and int(ids.max()) < 2 * self.traffic.n_messages:
            return encode_receipts(self.traffic, ids)
        fields = receipt_fields if _is_receipt_action(action) else reply_fields
        return [orjson.dumps(fields(r)) for r in self.records(action, ids)]

    # -- by number

    def by_number(self, action: str, phone: str, begin: int, end: int, limit: int) -> np.ndarray:
        """Up to `limit` ids of the number's records with begin <= time <= end, oldest first."""
        traffic = self.traffic
        j = traffic.recipients.index_of(phone)
        if action == A.PULL_SEND_STATUS_BY_NUMBER:
            ids = (traffic.receipt_ids_by_recipient[traffic.receipt_offsets[j] : traffic.receipt_offsets[j + 1]]
                   if j is not None else np.empty(0, np.int64))
            times = traffic.receipt_time_of(ids)
        else:
            ids = (traffic.reply_ids_by_recipient[traffic.reply_offsets[j] : traffic.reply_offsets[j + 1]]
                   if j is not None else np.empty(0, np.int64))
            times = traffic.reply_time[ids]
        extra = self.extra_by_number[action].get(phone)
        if extra:
            times = np.concatenate([times, np.array([t for t, _ in extra], dtype=np.int64)])
            ids = np.concatenate([ids, np.array([i for _, i in extra], dtype=np.int64)])
            order = np.argsort(times, kind="stable")
            times, ids = times[order], ids[order]
        lo = int(np.searchsorted(times, begin, side="left"))
        hi = int(np.searchsorted(times, end, side="right"))
        return ids[lo : min(hi, lo + limit)]

    # -- statistics

    def _tally_base_sends(self) -> None:
        traffic = self.traffic
        for begin in range(0, traffic.n_messages, _TALLY_BATCH):
            rows = slice(begin, begin + _TALLY_BATCH)
            ok = traffic.code[rows] == 0
            fee = np.where(ok, _FEE[traffic.template[rows]], 0)
            _add_tally(self.send_tally, traffic.send_time[rows] // _BUCKET_SECONDS,
                       [np.ones(len(ok), dtype=np.int64), ok.astype(np.int64), fee])

    def tally_send(self, m: Message) -> None:
        counters = self.send_tally.setdefault(m.send_time // _BUCKET_SECONDS, [0, 0, 0])
        counters[0] += 1
        if m.ok:
            counters[1] += 1
            counters[2] += m.fee

    def count_arrivals(self, now: float) -> None:
        """Tally the receipts that arrived since the last call. A message counts once, with the
        status of its latest receipt so far: its final receipt moves it from the status of an
        earlier intermediate one (which always arrives first)."""
        traffic = self.traffic
        while True:
            ids = self.arrivals.take(now, _TALLY_BATCH)
            if not len(ids):
                return
            base = ids[(ids >> 1) < traffic.n_messages]
            messages = base >> 1
            final = (base & 1) == 1
            codes = np.where(final, traffic.final_code[messages], traffic.first_code[messages])
            replaces = final & (traffic.first_delay[messages] > 0)
            columns = [(~replaces).astype(np.int64)] + [np.zeros(len(base), dtype=np.int64)
                                                        for _ in range(len(_CALLBACK_COUNTERS) - 1)]
            _status_columns(columns, codes, +1)
            _status_columns(columns, np.where(replaces, traffic.first_code[messages], 0), -1, where=replaces)
            _add_tally(self.callback_tally, traffic.send_time[messages] // _BUCKET_SECONDS, columns)
            for r in traffic.receipts_at(ids[(ids >> 1) >= traffic.n_messages]):
                m = r.message
                counters = self.callback_tally.setdefault(m.send_time // _BUCKET_SECONDS, [0] * len(_CALLBACK_COUNTERS))
                if r is m.receipts[-1] and len(m.receipts) == 2:
                    _tally_status(counters, m.receipts[0], -1)
                else:
                    counters[0] += 1
                _tally_status(counters, r, +1)

    def truth_statistics(self, begin: int, end: int, now: float) -> tuple[dict[str, int], dict[str, int]]:
        """Counts of the messages sent in [begin, end), recomputed from the per-message columns."""
        traffic = self.traffic
        lo, hi = np.searchsorted(traffic.send_time, [begin, end], side="left")
        rows = slice(int(lo), int(hi))
        send_time = traffic.send_time[rows]
        ok = traffic.code[rows] == 0
        final_in = (traffic.final_delay[rows] >= 0) & (send_time + traffic.final_delay[rows] <= now)
        first_in = (traffic.first_delay[rows] > 0) & (send_time + traffic.first_delay[rows] <= now)
        arrived = ok & (final_in | first_in)
        codes = np.where(final_in, traffic.final_code[rows], traffic.first_code[rows])[arrived]
        failed = codes != 0
        categories = np.bincount(_FAILURE_COLUMN[codes[failed]], minlength=len(_CALLBACK_COUNTERS))
        send = [len(send_time), int(ok.sum()), int(_FEE[traffic.template[rows]][ok].sum())]
        callback = [int(arrived.sum()), int((~failed).sum()), int(failed.sum())] + [int(c) for c in categories[3:]]
        for m in traffic.extra_messages:
            if begin <= m.send_time < end:
                send[0] += 1
                send[1] += m.ok
                send[2] += m.fee if m.ok else 0
                latest = max((r for r in m.receipts if r.user_receive_time <= now), key=lambda r: r.user_receive_time,
                             default=None)
                if latest is not None:
                    row = [0] * len(_CALLBACK_COUNTERS)
                    row[0] = 1
                    _tally_status(row, latest, +1)
                    callback = [a + b for a, b in zip(callback, row, strict=True)]
        return dict(zip(_SEND_COUNTERS, send, strict=True)), dict(zip(_CALLBACK_COUNTERS, callback, strict=True))

    # -- sending

    def send(self, recipients: list[T.Recipient], countries: list[C.Country], template: C.Template, sign: str,
             context: str, now: int) -> list[Message]:
        """Messages sent through SendSms now (Ok statuses): their receipts and replies lie in the future."""
        traffic = self.traffic
        n = len(recipients)
        kind = np.full(n, T.KINDS.index(template.kind))
        fates = T.draw_fates(self.fates, np.ones(n, dtype=bool), kind,
                             np.array([c.delivery_rate for c in countries]),
                             np.array([T.failure_table(c.failures) for c in countries]),
                             np.array([c.mainland for c in countries]))
        messages = []
        for k, recipient in enumerate(recipients):
            index = traffic.message_count
            final, first = int(fates.final_delay[k]), int(fates.first_delay[k])
            conversion = int(fates.conversion_delay[k])
            m = Message(T.serial_no(traffic.serial_key, traffic.ordinal, index), recipient, sign,
                        str(template.template_id), template.kind, context, now, template.fee, "Ok", "send success",
                        conversion_time=now + conversion if conversion >= 0 else None, sdk_app_id=self.sdk_app_id)
            if first:
                m.receipts.append(Receipt(m, "FAIL", T.DESCRIPTIONS[fates.first_code[k]], now + first))
            if final >= 0:
                code = int(fates.final_code[k])
                m.receipts.append(Receipt(m, "SUCCESS" if code == 0 else "FAIL", T.DESCRIPTIONS[code], now + final))
            traffic.extra_messages.append(m)
            self.tally_send(m)
            by_number = self.extra_by_number[A.PULL_SEND_STATUS_BY_NUMBER].setdefault(recipient.phone_e164, [])
            for r in m.receipts:
                record_id = 2 * index + (r is m.receipts[-1])
                self.receipts.add(r.user_receive_time, record_id)
                bisect.insort(by_number, (r.user_receive_time, record_id))
            if m.conversion_time is not None:
                self.conversions.add(m.conversion_time, index)
            if fates.reply_delay[k] >= 0:
                reply = Reply(recipient, sign, T.REPLY_TEXTS[fates.reply_text[k]],
                              m.receipts[-1].user_receive_time + int(fates.reply_delay[k]), m.serial_no,
                              sdk_app_id=self.sdk_app_id)
                reply_id = traffic.reply_count
                traffic.extra_replies.append(reply)
                self.replies.add(reply.reply_time, reply_id)
                bisect.insort(self.extra_by_number[A.PULL_REPLY_STATUS_BY_NUMBER].setdefault(
                    recipient.phone_e164, []), (reply.reply_time, reply_id))
            messages.append(m)
        return messages


def _add_tally(tally: dict[int, list[int]], buckets: np.ndarray, columns: list[np.ndarray]) -> None:
    if not len(buckets):
        return
    first = int(buckets.min())
    relative = buckets - first
    sums = [np.bincount(relative, weights=c, minlength=int(relative.max()) + 1) for c in columns]
    for offset in np.flatnonzero(np.bincount(relative)).tolist():
        counters = tally.setdefault(first + offset, [0] * len(columns))
        for i, s in enumerate(sums):
            counters[i] += int(s[offset])


def _status_columns(columns: list[np.ndarray], codes: np.ndarray, step: int, where: np.ndarray | None = None) -> None:
    """Add `step` to the success or failure counters of each receipt code (rows in `where`)."""
    rows = np.ones(len(codes), dtype=bool) if where is None else where
    success = rows & (codes == 0)
    columns[1] += step * success
    columns[2] += step * (rows & ~success)
    failure_column = _FAILURE_COLUMN[codes]
    for c in range(3, len(_CALLBACK_COUNTERS)):
        columns[c] += step * (rows & ~success & (failure_column == c))


def _tally_status(counters: list[int], r: Receipt, step: int) -> None:
    if r.report_status == "SUCCESS":
        counters[1] += step
    else:
        counters[2] += step
        counters[3 + C.FAILURE_COUNTERS.index(C.FAILURE_CATEGORY[r.description])] += step


def _sum_buckets(tally: dict[int, list[int]], lo: int, hi: int, width: int) -> list[int]:
    totals = [0] * width
    for bucket, counters in tally.items():
        if lo <= bucket < hi:
            for i, v in enumerate(counters):
                totals[i] += v
    return totals


# -- the service's state ---------------------------------------------------------------------


class SimState:
    def __init__(
        self,
        apps: list[AppTraffic],
        *,
        start: float,
        clock_runs: bool = True,
        out_dir: Path | None = None,
        seed: int = 0,
        provider_tz: zoneinfo.ZoneInfo | None = None,
        pushing: bool = False,
        pushed_also_queued: bool = True,
    ):
        self.lock = threading.RLock()
        self.apps = {traffic.sdk_app_id: AppState(traffic, seed) for traffic in apps}
        self.sdk_app_id = apps[0].sdk_app_id  # the first application: the default of the ground truth
        self.traffic = apps[0]
        self.clock = SimClock(start, runs=clock_runs)
        self.out_dir = out_dir
        self.rng = random.Random(seed)
        self.handed_out: list[HandedOut] = []
        self.reported_conversions: list[dict] = []
        self._files_lock = threading.Lock()
        self.provider_tz = provider_tz or zoneinfo.ZoneInfo("Asia/Shanghai")
        self.pushing = pushing
        self.queues_hand_out = not pushing or pushed_also_queued  # else the pushes take the records
        self.pushes: list[Push] = []
        self.listeners: list[Callable[[], None]] = []  # told when the clock moves or messages are sent
        self._next_app = 0

    def app(self, sdk_app_id: str | None) -> AppState:
        return self.apps[self.sdk_app_id if sdk_app_id is None else sdk_app_id]

    def _apps(self, sdk_app_id: str | None) -> list[AppState]:
        return list(self.apps.values()) if sdk_app_id is None else [self.apps[sdk_app_id]]

    # -- clock ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def advance(self, seconds: float) -> float:
        with self.lock:
            now = self.clock.advance(seconds)
        self._changed()
        return now

    def set_now(self, moment: float) -> float:
        with self.lock:
            now = self.clock.set(moment)
        self._changed()
        return now

    def _changed(self) -> None:
        self.write_files()
        for listener in self.listeners:
            listener()

    # -- pulls ---------------------------------------------------------------------------

    def pull_queue(self, sdk_app_id: str, action: str, limit: int, request_id: str,
                   dirty: float) -> tuple[list[bytes], HandedOut | None]:
        """Take up to `limit` due records off a queue of an application. Returns the encoded
        records and their hand-out record (None when empty), pending until the server knows
        whether the response got through."""
        with self.lock:
            app = self.apps[sdk_app_id]
            queue = app.queues[action]
            now = self.clock.now()
            if not self.queues_hand_out:
                return [], None
            ids: list[int] = []
            variants: dict[int, tuple[str, ...]] = {}
            while queue.repeats and len(ids) < limit:
                variants[len(ids)] = ("repeat",)
                ids.append(queue.repeats.pop(0))
            if not dirty:
                ids += queue.cursor.take(now, limit - len(ids)).tolist()
                parts = app.encode(action, np.array(ids, dtype=np.int64))
            else:
                parts = app.encode(action, np.array(ids, dtype=np.int64))
                while len(ids) < limit:
                    taken = queue.cursor.take(now, 1)
                    if not len(taken):
                        break
                    self._emit(app, action, int(taken[0]), dirty, DIRTY_VARIANTS, limit, parts, ids, variants,
                               queue.repeats)
            return parts, self._record(app, action, request_id, now, ids, variants)

    def pull_by_number(self, sdk_app_id: str, action: str, phone: str, begin: int, end: int | None, limit: int,
                       request_id: str, dirty: float) -> tuple[list[bytes], HandedOut | None]:
        with self.lock:
            app = self.apps[sdk_app_id]
            now = self.clock.now()
            hi = int(now) if end is None else min(end, int(now))
            selected = app.by_number(action, phone, begin, hi, limit)
            ids: list[int] = []
            variants: dict[int, tuple[str, ...]] = {}
            if not dirty:
                ids = selected.tolist()
                parts = app.encode(action, selected)
            else:
                parts = []
                for record_id in selected.tolist():
                    if len(ids) >= limit:
                        break
                    self._emit(app, action, record_id, dirty, _BY_NUMBER_VARIANTS, limit, parts, ids, variants, [])
            return parts, self._record(app, action, request_id, now, ids, variants)

    def _record(self, app, action, request_id, now, ids, variants) -> HandedOut | None:
        if not ids:
            return None
        handed = HandedOut(app, action, request_id, now, array.array("q", ids), variants)
        self.handed_out.append(handed)
        return handed

    def _emit(self, app, action, record_id, dirty, choices, limit, parts, ids, variants, repeats) -> None:
        rng = self.rng
        variant = choices[int(rng.random() * len(choices))] if rng.random() < dirty else None
        if variant is None or (variant == "duplicate" and len(ids) + 2 > limit):
            ids.append(record_id)
            parts += app.encode(action, np.array([record_id]))
        elif variant == "duplicate":
            encoded = app.encode(action, np.array([record_id]))[0]
            ids += (record_id, record_id)
            parts += (encoded, encoded)
            variants[len(ids) - 1] = ("duplicate",)
        elif variant == "repeat":
            ids.append(record_id)
            parts += app.encode(action, np.array([record_id]))
            repeats.append(record_id)
        else:
            variants[len(ids)] = (variant,)
            ids.append(record_id)
            parts.append(dirty_encoding(app.records(action, [record_id])[0], variant, rng))

    def settle(self, handed: HandedOut, delivered: bool) -> None:
        with self.lock:
            handed.outcome = "delivered" if delivered else "lost"

    # -- statistics ----------------------------------------------------------------------

    def statistics(self, sdk_app_id: str, begin: int, end: int) -> tuple[dict[str, int], dict[str, int]]:
        """(SendStatusStatistics, CallbackStatusStatistics) of the messages an application sent in [begin, end)."""
        with self.lock:
            app = self.apps[sdk_app_id]
            app.count_arrivals(self.clock.now())
            lo, hi = -(-begin // _BUCKET_SECONDS), -(-end // _BUCKET_SECONDS)
            send = _sum_buckets(app.send_tally, lo, hi, len(_SEND_COUNTERS))
            callback = _sum_buckets(app.callback_tally, lo, hi, len(_CALLBACK_COUNTERS))
        send_stats = dict(zip(_SEND_COUNTERS, send, strict=True))
        callback_stats = dict(zip(_CALLBACK_COUNTERS, callback, strict=True))
        callback_stats["RequestSuccessCount"] = send_stats["RequestSuccessCount"]
        return send_stats, callback_stats

    def truth_statistics(self, begin: int, end: int, sdk_app_id: str | None = None) -> dict[str, dict[str, int]]:
        """The same counts recomputed from the per-message ground truth (default: the first application)."""
        with self.lock:
            send, callback = self.app(sdk_app_id).truth_statistics(begin, end, self.clock.now())
        callback["RequestSuccessCount"] = send["RequestSuccessCount"]
        return {"SendStatusStatistics": send, "CallbackStatusStatistics": callback}

    # -- sending -------------------------------------------------------------------------

    def send(self, sdk_app_id: str, recipients: list[T.Recipient], countries: list[C.Country], template: C.Template,
             sign: str, context: str) -> list[Message]:
        with self.lock:
            messages = self.apps[sdk_app_id].send(recipients, countries, template, sign, context, int(self.now()))
        self._changed()
        return messages

    def report_conversion(self, sdk_app_id: str, serial_no: str, conversion_time: int | None) -> None:
        with self.lock:
            self.reported_conversions.append({"SmsSdkAppId": sdk_app_id, "SerialNo": serial_no,
                                              "ConversionTime": conversion_time, "reported_at": self.clock.now()})

    # -- pushes ------------------------------------------------------------------------

    def next_push(self) -> Push | None:
        """The next push due by the clock, the applications taken in turn: up to 100 receipts,
        else one reply; None when nothing is due."""
        if not self.pushing:
            return None
        with self.lock:
            now = self.clock.now()
            apps = list(self.apps.values())
            for turn in range(len(apps)):
                app = apps[(self._next_app + turn) % len(apps)]
                ids = app.pushed_receipts.take(now, A.MAX_LIMIT)
                if len(ids):
                    body = orjson.dumps([status_push_fields(r, self.provider_tz) for r in app.traffic.receipts_at(ids)])
                    kind = "status"
                else:
                    ids = app.pushed_replies.take(now, 1)
                    if not len(ids):
                        continue
                    body = orjson.dumps(reply_push_fields(app.traffic.replies_at(ids)[0]))
                    kind = "reply"
                self._next_app = (self._next_app + turn + 1) % len(apps)
                push = Push(app, kind, now, array.array("q", ids.tolist()), body)
                self.pushes.append(push)
                return push
            return None

    def record_attempt(self, push: Push, outcome: str, *, last: bool) -> None:
        """One attempt's outcome; `last`: no retry follows."""
        with self.lock:
            push.attempts.append(outcome)
            push.acknowledged = outcome == "ok"
            if push.acknowledged or last:
                push.body = b""  # no longer needed: a day of pushes is not held

    def truth_pushes(self) -> Iterator[dict]:
        with self.lock:
            pushes = list(self.pushes)
        for push in pushes:
            with self.lock:
                yield push.to_json()

    # -- ground truth --------------------------------------------------------------------

    @property
    def messages(self) -> Sequence[Message]:
        """Every message sent, of every application (made on demand)."""
        return _one_or_all([app.traffic.messages for app in self.apps.values()])

    @property
    def replies(self) -> Sequence[Reply]:
        return _one_or_all([app.traffic.replies for app in self.apps.values()])

    def queue_positions(self) -> dict[str, dict]:
        """Per queue (summed over the applications, and per application under "by_app"): records
        handed out, due but not yet pulled, and not yet due."""
        with self.lock:
            now = self.clock.now()
            totals: dict[str, dict] = {}
            by_app: dict[str, dict] = {}
            for app_id, app in self.apps.items():
                for action, queue in app.queues.items():
                    due = queue.cursor.order.count_until(now)
                    counts = {"handed_out": queue.cursor.taken, "waiting": due - queue.cursor.taken,
                              "not_yet_due": len(queue.cursor.order) - due, "repeats": len(queue.repeats)}
                    by_app.setdefault(app_id, {})[action] = counts
                    total = totals.setdefault(action, dict.fromkeys(counts, 0))
                    for k, v in counts.items():
                        total[k] += v
            return {**totals, "by_app": by_app}

    def due_receipts(self, now: float | None = None, sdk_app_id: str | None = None) -> Sequence[Receipt]:
        """Every receipt whose UserReceiveTime has passed (by `now`, default the clock), oldest
        first per application (default: every application)."""
        with self.lock:
            moment = self.clock.now() if now is None else now
            return _one_or_all([Records(app.traffic.receipts_at, app.receipts.ids_until(moment))
                                for app in self._apps(sdk_app_id)])

    def due_replies(self, now: float | None = None, sdk_app_id: str | None = None) -> Sequence[Reply]:
        with self.lock:
            moment = self.clock.now() if now is None else now
            return _one_or_all([Records(app.traffic.replies_at, app.replies.ids_until(moment))
                                for app in self._apps(sdk_app_id)])

    def truth_messages(self, sdk_app_id: str | None = None) -> Iterator[dict]:
        """Every message sent (every application by default), streamed."""
        for app in self._apps(sdk_app_id):
            for m in app.traffic.iter_messages():
                yield _message_truth(m)

    def truth_replies(self, sdk_app_id: str | None = None) -> Iterator[dict]:
        for app in self._apps(sdk_app_id):
            for r in app.traffic.replies:
                yield {"sdk_app_id": r.sdk_app_id, "phone": r.recipient.phone_e164,
                       "country_code": r.recipient.country_code, "iso_code": r.recipient.iso_code,
                       "sign": r.sign_name, "content": r.content, "time": r.reply_time, "is_opt_out": r.is_opt_out,
                       "caused_by": r.caused_by}

    def truth_handed_out(self) -> Iterator[dict]:
        with self.lock:
            handed = list(self.handed_out)
        for h in handed:
            with self.lock:
                yield h.to_json()

    # -- the sending application's files -------------------------------------------------

    def write_files(self) -> None:
        """sends.ndjson and conversions.ndjson as of the clock, with every application's records:
        written once in full, streamed, then extended by the records that came due since (a copy
        of the file, the new lines appended, then an atomic rename), so readers never see part of
        a file and nothing is held in memory."""
        if self.out_dir is None:
            return
        with self._files_lock:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with self.lock:
                now = int(self.clock.now())
                sends = [(app, app.sends_written, _sent_until(app.traffic, now)) for app in self.apps.values()]
                for app, _, end in sends:
                    app.sends_written = end
                conversions = [(app, app.conversions_written.take(now)) for app in self.apps.values()]
            _extend_file(self.out_dir / "sends.ndjson", [
                lambda f, app=app, begin=begin, end=end: _write_sends(f, app, begin, end)
                for app, begin, end in sends if end > begin])
            _extend_file(self.out_dir / "conversions.ndjson", [
                lambda f, app=app, ids=ids: _write_conversions(f, app, ids) for app, ids in conversions if len(ids)])


def _sent_until(traffic: AppTraffic, now: int) -> int:
    """How many of the application's messages were sent by `now` (they are in send-time order)."""
    base = int(np.searchsorted(traffic.send_time, now, side="right"))
    if base < traffic.n_messages:
        return base
    return base + sum(1 for m in traffic.extra_messages if m.send_time <= now)


def _write_sends(f, app: AppState, begin: int, end: int) -> None:
    """Sends-log lines of messages [begin, end): generated ones column-wise in batches, those sent
    through SendSms one by one."""
    traffic = app.traffic
    for start in range(begin, min(end, traffic.n_messages), _FILE_BATCH):
        traffic.sends_frame(start, min(end, traffic.n_messages, start + _FILE_BATCH)).write_ndjson(f)
    extra = traffic.extra_messages[max(0, begin - traffic.n_messages) : max(0, end - traffic.n_messages)]
    f.write(b"".join(orjson.dumps({
        "SerialNo": m.serial_no, "PhoneNumber": m.recipient.phone_e164, "Fee": m.fee,
        "SessionContext": m.session_context, "Code": m.code, "Message": m.message,
        "IsoCode": m.iso_code, "SendTime": m.send_time, "SmsSdkAppId": app.sdk_app_id,
        "TemplateId": m.template_id, "SignName": m.sign_name,
    }) + b"\n" for m in extra))


def _write_conversions(f, app: AppState, ids: np.ndarray) -> None:
    """Conversion lines in the order of `ids` (time order): runs of generated messages
    column-wise, messages sent through SendSms one by one."""
    traffic = app.traffic
    extra = ids >= traffic.n_messages
    bounds = [0, *(np.flatnonzero(extra[1:] != extra[:-1]) + 1).tolist(), len(ids)]
    for begin, end in zip(bounds, bounds[1:]):
        run = ids[begin:end]
        if not extra[begin]:
            for start in range(0, len(run), _FILE_BATCH):
                traffic.conversions_frame(run[start : start + _FILE_BATCH]).write_ndjson(f)
        else:
            f.write(b"".join(orjson.dumps({"SerialNo": m.serial_no, "ConversionTime": m.conversion_time}) + b"\n"
                             for m in traffic.messages_at(run)))


def _extend_file(path: Path, writers: list[Callable]) -> None:
    """Append what `writers` write to `path` atomically (a copy extended, then renamed); create it
    if missing; leave it alone when there is nothing to add and it exists."""
    if not writers and path.exists():
        return
    tmp = path.with_name(f".{path.name}.tmp")
    if path.exists():
        shutil.copyfile(path, tmp)
    with open(tmp, "ab") as f:
        for write in writers:
            write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _message_truth(m: Message) -> dict:
    final = m.final
    return {
        "sdk_app_id": m.sdk_app_id,
        "serial_no": m.serial_no,
        "phone_e164": m.recipient.phone_e164,
        "country_code": m.recipient.country_code,
        "iso_code": m.recipient.iso_code,
        "sign_name": m.sign_name,
        "template_id": m.template_id,
        "session_context": m.session_context,
        "send_time": m.send_time,
        "fee": m.fee,
        "code": m.code,
        "receipts": [{"report_status": r.report_status, "description": r.description,
                      "user_receive_time": r.user_receive_time} for r in m.receipts],
        "final_status": final.report_status if final else None,
        "final_description": final.description if final else None,
        "final_receive_time": final.user_receive_time if final else None,
        "conversion_time": m.conversion_time,
    }
