"""The simulated service's memory: its clock, its two queues, the by-number archive, the statistics
counters, and the ground truth tests compare against.

Queue semantics (the real service documents only "each record once", reference section 0): a
receipt or reply becomes pullable when its time (UserReceiveTime / ReplyTime) has passed on the
simulator clock; pulls hand records out oldest first, at most `Limit`, each once; unpulled records
stay queued indefinitely (the real retention is undocumented, section 9). A response that
did not reach the client intact still took its records off the queue: the ground truth marks it
`lost`, as opposed to `delivered`.

By-number pulls read an archive that is never consumed: records of one E.164 number whose time is
in [BeginTime, EndTime] and has passed, oldest first, at most `Limit`.

Statistics (undocumented choices, section 9): hours are buckets of the provider time zone and a
message counts in the hour it was SENT. SendStatusStatistics: RequestCount = every SendStatus,
RequestSuccessCount = those with Code "Ok", FeeCount = the sum of their Fee. CallbackStatusStatistics
counts messages that have a receipt by the simulator clock, each with the status of its latest
receipt so far (a later receipt moves it from failure to success or back, the way our final-state
rule does): CallbackCount = CallbackSuccessCount + CallbackFailCount, failures split into the five counters
by `catalog.FAILURE_CATEGORY`; its RequestSuccessCount is that of SendStatusStatistics.

The clock is real time plus an offset (or frozen, for tests); it only moves forward. All access
goes through one lock, so tests may read the ground truth while the server thread serves.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from pipelines.simulator import catalog as C
from pipelines.simulator.faults import DIRTY_VARIANTS
from pipelines.simulator.traffic import Message, Receipt, Reply, Traffic
from pipelines.tencent import actions as A

_BUCKET_SECONDS = 900  # statistics buckets: every real zone offset is a multiple of 15 minutes
_BY_NUMBER_VARIANTS = tuple(v for v in DIRTY_VARIANTS if v != "repeat")
_SEND_COUNTERS = ("RequestCount", "RequestSuccessCount", "FeeCount")
_CALLBACK_COUNTERS = ("CallbackCount", "CallbackSuccessCount", "CallbackFailCount") + C.FAILURE_COUNTERS


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


@dataclasses.dataclass(slots=True)
class HandedOut:
    """One pull response that carried records (queue or by-number): the records in response
    order, with dirty variants by position."""

    action: str
    request_id: str
    sim_time: float
    records: list[Receipt | Reply]
    variants: dict[int, tuple[str, ...]]
    outcome: str = "pending"  # -> delivered | lost

    def to_json(self) -> dict:
        return {
            "action": self.action,
            "request_id": self.request_id,
            "sim_time": self.sim_time,
            "outcome": self.outcome,
            "records": [dict(identity(r), dirty=list(self.variants.get(i, ()))) for i, r in enumerate(self.records)],
        }


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


def receipt_time(r: Receipt) -> int:
    return r.user_receive_time


def reply_time(r: Reply) -> int:
    return r.reply_time


def _tally_status(counters: list[int], r: Receipt, step: int) -> None:
    if r.report_status == "SUCCESS":
        counters[1] += step
    else:
        counters[2] += step
        counters[3 + C.FAILURE_COUNTERS.index(C.FAILURE_CATEGORY[r.description])] += step


def _latest_receipt(m: Message, now: float) -> Receipt | None:
    """The message's status as of `now`: its latest receipt that has arrived."""
    arrived = [r for r in m.receipts if r.user_receive_time <= now]
    return max(arrived, key=receipt_time) if arrived else None


def _window(items: list, time_of: Callable[[Any], int], lo: int, hi: int, limit: int) -> list:
    """Up to `limit` of the time-sorted `items` with lo <= time <= hi, oldest first."""
    i = bisect.bisect_left(items, lo, key=time_of)
    j = bisect.bisect_right(items, hi, lo=i, key=time_of)
    return items[i : min(j, i + limit)]


class _Queue:
    """Records sorted by time; those before `cursor` were handed out."""

    def __init__(self, items: list, time_of: Callable[[Any], int]):
        self.items = items
        self.time_of = time_of
        self.cursor = 0
        self.repeats: list = []  # records to hand out again ("repeat" dirty variant)

    def due_end(self, now: float) -> int:
        return bisect.bisect_right(self.items, int(now), lo=self.cursor, key=self.time_of)

    def insert(self, item) -> None:
        bisect.insort_right(self.items, item, key=self.time_of)


class SimState:
    def __init__(
        self,
        traffic: Traffic,
        *,
        sdk_app_id: str,
        start: float,
        clock_runs: bool = True,
        out_dir: Path | None = None,
        seed: int = 0,
    ):
        self.lock = threading.RLock()
        self.traffic = traffic
        self.sdk_app_id = sdk_app_id
        self.clock = SimClock(start, runs=clock_runs)
        self.out_dir = out_dir
        self.rng = random.Random(seed)
        self.messages: list[Message] = list(traffic.messages)
        self.replies: list[Reply] = list(traffic.replies)
        self.serials = {m.serial_no for m in self.messages if m.serial_no}
        self.handed_out: list[HandedOut] = []
        self.reported_conversions: list[dict] = []

        receipts = sorted((r for m in self.messages for r in m.receipts),
                          key=lambda r: (r.user_receive_time, r.message.serial_no))
        for r in receipts:
            r.encoded = orjson.dumps(receipt_fields(r))
        for r in self.replies:
            r.encoded = orjson.dumps(reply_fields(r))
        self.queues = {
            A.PULL_SEND_STATUS: _Queue(list(receipts), receipt_time),
            A.PULL_REPLY_STATUS: _Queue(list(self.replies), reply_time),
        }
        self.by_number: dict[str, dict[str, list]] = {A.PULL_SEND_STATUS_BY_NUMBER: {}, A.PULL_REPLY_STATUS_BY_NUMBER: {}}
        for r in receipts:
            self.by_number[A.PULL_SEND_STATUS_BY_NUMBER].setdefault(r.message.recipient.phone_e164, []).append(r)
        for r in self.replies:
            self.by_number[A.PULL_REPLY_STATUS_BY_NUMBER].setdefault(r.recipient.phone_e164, []).append(r)
        self._send_tally: dict[int, list[int]] = {}
        self._callback_tally: dict[int, list[int]] = {}
        self._arrivals = list(receipts)  # every receipt by arrival time, for the callback tally
        self._arrivals_counted = 0
        self._counted_receipt: dict[str, Receipt] = {}
        for m in self.messages:
            self._tally_send(m)
        self._send_times = [m.send_time for m in self.messages]
        self._send_lines: list[bytes] = []

    # -- clock ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def advance(self, seconds: float) -> float:
        with self.lock:
            now = self.clock.advance(seconds)
        self.write_files()
        return now

    def set_now(self, moment: float) -> float:
        with self.lock:
            now = self.clock.set(moment)
        self.write_files()
        return now

    # -- pulls ---------------------------------------------------------------------------

    def pull_queue(self, action: str, limit: int, request_id: str, dirty: float) -> tuple[list[bytes], HandedOut | None]:
        """Take up to `limit` due records off a queue. Returns the encoded records and their
        hand-out record (None when empty), pending until the server knows whether the response
        got through."""
        with self.lock:
            queue = self.queues[action]
            now = self.clock.now()
            parts: list[bytes] = []
            records: list = []
            variants: dict[int, tuple[str, ...]] = {}
            while queue.repeats and len(records) < limit:
                record = queue.repeats.pop(0)
                variants[len(records)] = ("repeat",)
                records.append(record)
                parts.append(record.encoded)
            end = queue.due_end(now)
            if not dirty:
                take = queue.items[queue.cursor : min(end, queue.cursor + limit - len(records))]
                queue.cursor += len(take)
                records += take
                parts += [r.encoded for r in take]
            else:
                while queue.cursor < end and len(records) < limit:
                    record = queue.items[queue.cursor]
                    queue.cursor += 1
                    self._emit(record, dirty, DIRTY_VARIANTS, limit, parts, records, variants, queue.repeats)
            return parts, self._record(action, request_id, now, records, variants)

    def pull_by_number(self, action: str, phone: str, begin: int, end: int | None, limit: int, request_id: str,
                       dirty: float) -> tuple[list[bytes], HandedOut | None]:
        with self.lock:
            now = self.clock.now()
            time_of = receipt_time if action == A.PULL_SEND_STATUS_BY_NUMBER else reply_time
            hi = int(now) if end is None else min(end, int(now))
            selected = _window(self.by_number[action].get(phone, []), time_of, begin, hi, limit)
            parts: list[bytes] = []
            records: list = []
            variants: dict[int, tuple[str, ...]] = {}
            for record in selected:
                if len(records) >= limit:
                    break
                if dirty:
                    self._emit(record, dirty, _BY_NUMBER_VARIANTS, limit, parts, records, variants, [])
                else:
                    records.append(record)
                    parts.append(record.encoded)
            return parts, self._record(action, request_id, now, records, variants)

    def _record(self, action, request_id, now, records, variants) -> HandedOut | None:
        if not records:
            return None
        handed = HandedOut(action, request_id, now, records, variants)
        self.handed_out.append(handed)
        return handed

    def _emit(self, record, dirty, choices, limit, parts, records, variants, repeats) -> None:
        rng = self.rng
        variant = choices[int(rng.random() * len(choices))] if rng.random() < dirty else None
        if variant is None or (variant == "duplicate" and len(records) + 2 > limit):
            records.append(record)
            parts.append(record.encoded)
        elif variant == "duplicate":
            records += (record, record)
            parts += (record.encoded, record.encoded)
            variants[len(records) - 1] = ("duplicate",)
        elif variant == "repeat":
            records.append(record)
            parts.append(record.encoded)
            repeats.append(record)
        else:
            variants[len(records)] = (variant,)
            records.append(record)
            parts.append(dirty_encoding(record, variant, rng))

    def settle(self, handed: HandedOut, delivered: bool) -> None:
        with self.lock:
            handed.outcome = "delivered" if delivered else "lost"

    # -- statistics ----------------------------------------------------------------------

    def _tally_send(self, m: Message) -> None:
        counters = self._send_tally.setdefault(m.send_time // _BUCKET_SECONDS, [0, 0, 0])
        counters[0] += 1
        if m.ok:
            counters[1] += 1
            counters[2] += m.fee

    def _count_arrivals(self, now: float) -> None:
        """Tally the receipts that arrived since the last call. A message counts once, with the
        status of its latest receipt so far: a later receipt moves it between success and failure."""
        end = bisect.bisect_right(self._arrivals, int(now), lo=self._arrivals_counted, key=receipt_time)
        for r in self._arrivals[self._arrivals_counted : end]:
            m = r.message
            counters = self._callback_tally.setdefault(m.send_time // _BUCKET_SECONDS, [0] * len(_CALLBACK_COUNTERS))
            previous = self._counted_receipt.get(m.serial_no)
            if previous is None:
                counters[0] += 1
            else:
                _tally_status(counters, previous, -1)
            _tally_status(counters, r, +1)
            self._counted_receipt[m.serial_no] = r
        self._arrivals_counted = end

    def statistics(self, begin: int, end: int) -> tuple[dict[str, int], dict[str, int]]:
        """(SendStatusStatistics, CallbackStatusStatistics) of the messages sent in [begin, end)."""
        with self.lock:
            self._count_arrivals(self.clock.now())
            lo, hi = -(-begin // _BUCKET_SECONDS), -(-end // _BUCKET_SECONDS)
            send = _sum_buckets(self._send_tally, lo, hi, len(_SEND_COUNTERS))
            callback = _sum_buckets(self._callback_tally, lo, hi, len(_CALLBACK_COUNTERS))
        send_stats = dict(zip(_SEND_COUNTERS, send, strict=True))
        callback_stats = dict(zip(_CALLBACK_COUNTERS, callback, strict=True))
        callback_stats["RequestSuccessCount"] = send_stats["RequestSuccessCount"]
        return send_stats, callback_stats

    def truth_statistics(self, begin: int, end: int) -> dict[str, dict[str, int]]:
        """The same counts recomputed from the per-message ground truth."""
        with self.lock:
            now = self.clock.now()
            sent = [m for m in self.messages if begin <= m.send_time < end]
        ok = [m for m in sent if m.ok]
        finals = [f for f in (_latest_receipt(m, now) for m in ok) if f is not None]
        failed = [f for f in finals if f.report_status == "FAIL"]
        callback = {
            "CallbackCount": len(finals),
            "CallbackSuccessCount": len(finals) - len(failed),
            "CallbackFailCount": len(failed),
            "RequestSuccessCount": len(ok),
        }
        for counter in C.FAILURE_COUNTERS:
            callback[counter] = sum(1 for f in failed if C.FAILURE_CATEGORY[f.description] == counter)
        send = {"RequestCount": len(sent), "RequestSuccessCount": len(ok), "FeeCount": sum(m.fee for m in ok)}
        return {"SendStatusStatistics": send, "CallbackStatusStatistics": callback}

    # -- sending -------------------------------------------------------------------------

    def add_sent(self, messages: list[Message], replies: list[Reply]) -> None:
        """Messages sent through SendSms now: their receipts and replies lie in the future."""
        with self.lock:
            for m in messages:
                self.messages.append(m)
                self._send_times.append(m.send_time)
                self._tally_send(m)
                for r in m.receipts:
                    r.encoded = orjson.dumps(receipt_fields(r))
                    self.queues[A.PULL_SEND_STATUS].insert(r)
                    bisect.insort_right(self.by_number[A.PULL_SEND_STATUS_BY_NUMBER].setdefault(
                        m.recipient.phone_e164, []), r, key=receipt_time)
                    bisect.insort_right(self._arrivals, r, lo=self._arrivals_counted, key=receipt_time)
            for r in replies:
                r.encoded = orjson.dumps(reply_fields(r))
                self.replies.append(r)
                self.queues[A.PULL_REPLY_STATUS].insert(r)
                bisect.insort_right(self.by_number[A.PULL_REPLY_STATUS_BY_NUMBER].setdefault(
                    r.recipient.phone_e164, []), r, key=reply_time)
        self.write_files()

    def report_conversion(self, serial_no: str, conversion_time: int | None) -> None:
        with self.lock:
            self.reported_conversions.append(
                {"SerialNo": serial_no, "ConversionTime": conversion_time, "reported_at": self.clock.now()})

    # -- ground truth --------------------------------------------------------------------

    def queue_positions(self) -> dict[str, dict[str, int]]:
        """Per queue: records handed out, due but not yet pulled, and not yet due."""
        with self.lock:
            now = self.clock.now()
            out = {}
            for action, queue in self.queues.items():
                due = queue.due_end(now)
                out[action] = {"handed_out": queue.cursor, "waiting": due - queue.cursor,
                               "not_yet_due": len(queue.items) - due, "repeats": len(queue.repeats)}
            return out

    def due_receipts(self, now: float | None = None) -> list[Receipt]:
        """Every receipt whose UserReceiveTime has passed (by `now`, default the clock)."""
        with self.lock:
            return _until(self.queues[A.PULL_SEND_STATUS], self.clock.now() if now is None else now)

    def due_replies(self, now: float | None = None) -> list[Reply]:
        with self.lock:
            return _until(self.queues[A.PULL_REPLY_STATUS], self.clock.now() if now is None else now)

    def truth_messages(self) -> list[dict]:
        with self.lock:
            return [_message_truth(m) for m in self.messages]

    def truth_replies(self) -> list[dict]:
        with self.lock:
            return [{"phone": r.recipient.phone_e164, "country_code": r.recipient.country_code,
                     "iso_code": r.recipient.iso_code, "sign": r.sign_name, "content": r.content,
                     "time": r.reply_time, "is_opt_out": r.is_opt_out, "caused_by": r.caused_by}
                    for r in self.replies]

    def truth_handed_out(self) -> list[dict]:
        with self.lock:
            return [h.to_json() for h in self.handed_out]

    # -- the sending application's files -------------------------------------------------

    def write_files(self) -> None:
        """sends.ndjson and conversions.ndjson as of the clock, each replaced atomically."""
        if self.out_dir is None:
            return
        with self.lock:
            now = int(self.clock.now())
            for m in self.messages[len(self._send_lines) :]:
                self._send_lines.append(orjson.dumps({
                    "SerialNo": m.serial_no, "PhoneNumber": m.recipient.phone_e164, "Fee": m.fee,
                    "SessionContext": m.session_context, "Code": m.code, "Message": m.message,
                    "IsoCode": m.iso_code, "SendTime": m.send_time, "SmsSdkAppId": self.sdk_app_id,
                    "TemplateId": m.template_id, "SignName": m.sign_name,
                }))
            sends = self._send_lines[: bisect.bisect_right(self._send_times, now)]
            conversions = sorted((m.conversion_time, m.serial_no) for m in self.messages
                                 if m.conversion_time is not None and m.conversion_time <= now)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.out_dir / "sends.ndjson", sends)
        _write_atomic(self.out_dir / "conversions.ndjson",
                      [orjson.dumps({"SerialNo": s, "ConversionTime": t}) for t, s in conversions])


def _message_truth(m: Message) -> dict:
    final = m.final
    return {
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


def _sum_buckets(tally: dict[int, list[int]], lo: int, hi: int, width: int) -> list[int]:
    totals = [0] * width
    for bucket, counters in tally.items():
        if lo <= bucket < hi:
            for i, v in enumerate(counters):
                totals[i] += v
    return totals


def _until(queue: _Queue, now: float) -> list:
    return queue.items[: bisect.bisect_right(queue.items, int(now), key=queue.time_of)]


def _write_atomic(path: Path, lines: list[bytes]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(b"".join(line + b"\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
