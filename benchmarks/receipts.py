"""Synthetic input of the normalize-and-load benchmark, written as the pipeline would find it:
PullSmsSendStatus response pages in a spool (through `Spool.write`), the sending application's
sends log (one NDJSON file per UTC day) and its conversion events.

Generation streams: messages are made in send-time order and their receipts wait in a heap keyed
by receive time; a receipt leaves the heap (onto the current queue page) as soon as no later
message can produce an earlier receipt, so memory holds only the receipts still "in flight", not
the N records. That keeps 10M receipts within a few hundred MB.

The mix:
- phone numbers from `normalize_bench._pool` (about 85% +86 mobiles in E.164, 10% other
  regions, 5% dirty forms: no plus, 00 prefix, national number + CountryCode, separators, an
  empty PhoneNumber with a SubscriberNumber, garbage), about N/10 distinct numbers;
- one SerialNo per message, so about N distinct serials: 2.5% of sends fail (no SerialNo, no
  receipt), 1% of Ok sends never get a receipt, 3% get two (an intermediate FAIL, then the
  final one), 0.5% are missing from the sends log (their receipts are "orphans");
- receipt latency from the simulator's `receipt_latency` (seconds, minutes, hours, a tail of
  days); 1% of UserReceiveTime values in milliseconds and 0.1% zero;
- 100 records per page in receive-time order, pulled up to 10 minutes after the newest one.

    python -m benchmarks.receipts OUT_DIR N_RECEIPTS [--days 7] [--seed 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import random
import time
from pathlib import Path

import orjson
import phonenumbers

from benchmarks.normalize_bench import _pool
from pipelines.simulator.traffic import receipt_latency
from pipelines.tencent import actions as A
from pipelines.spool import Spool

GENERATOR_VERSION = 1
END = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)  # traffic ends here (exclusive)
PAGE = 100
_SIGNS = ("小账本", "账本科技", "账本商城", "SmsLedger")
_TEMPLATES = ("1840001", "1840002", "1840003", "1840004", "1841001", "1841002")
_FAILS = ("UNDELIV", "EXPIRED", "REJECTD", "MN:0001", "DB:0141", "MK:0001", "BEYONDD")
_SEND_FAILURES = (
    ("LimitExceeded.PhoneNumberDailyLimit", "the number of SMS messages sent to this number today exceeds the limit"),
    ("FailedOperation.PhoneNumberInBlacklist", "the phone number is in the blocklist"),
    ("InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number format"),
)
_RECEIPTS_PER_MESSAGE = (1 - 0.025) * (1 - 0.01) * 1.03  # expected receipts of one message


def _iso(country_code: str | None) -> str:
    try:
        return phonenumbers.region_code_for_country_code(int(country_code or "86"))
    except ValueError:
        return "CN"


def generate(root: Path, n_receipts: int, *, days: int = 7, seed: int = 7, log=print) -> dict:
    """Write the spool, sends log and conversions of `n_receipts` receipts under `root`; returns
    (and writes to root/manifest.json) what was made."""
    started = time.perf_counter()
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=False)
    spool = Spool(root / "spool")
    (root / "sends").mkdir(exist_ok=True)
    pool = _pool(max(1, n_receipts // 10), rng)
    pool = [(p, c, s, _iso(c)) for p, c, s in pool]
    end = int(END.timestamp())
    start = end - days * 86400
    n_messages = round(n_receipts / _RECEIPTS_PER_MESSAGE)
    step = days * 86400 / n_messages
    serial_base = rng.randrange(10**23, 10**24)

    heap: list[tuple[int, int, bytes]] = []  # (true receive second, tiebreak, encoded record)
    page: list[bytes] = []
    counts = {"messages": 0, "sends_rows": 0, "failed_sends": 0, "orphan_messages": 0, "receipts": 0, "pages": 0,
              "conversions": 0, "ms_timestamps": 0, "zero_timestamps": 0, "spool_bytes": 0, "sends_bytes": 0}
    last_pull_ns = 0
    sends_day = None
    sends_file = None
    conversions = open(root / "conversions.ndjson", "wb")
    tiebreak = 0

    def flush_page(newest: int) -> None:
        nonlocal last_pull_ns
        body = (b'{"Response":{"PullSmsSendStatusSet":[' + b",".join(page) + b'],"RequestId":"'
                + f"{rng.getrandbits(128):032x}".encode() + b'"}}')
        pulled = max(last_pull_ns + 1000, (newest + rng.randrange(1, 600)) * 10**9)
        spool.write(A.PULL_SEND_STATUS, body, pulled_at_ns=pulled)
        last_pull_ns = pulled
        counts["pages"] += 1
        counts["spool_bytes"] += len(body)
        page.clear()

    def emit_until(second: int) -> None:
        while heap and heap[0][0] <= second and counts["receipts"] < n_receipts:
            receive, _, record = heapq.heappop(heap)
            page.append(record)
            counts["receipts"] += 1
            if len(page) == PAGE:
                flush_page(receive)

    i = 0
    while counts["receipts"] + len(heap) < n_receipts:
        send_time = start + int((i + rng.random()) * step)
        emit_until(send_time - 1)
        day = dt.datetime.fromtimestamp(send_time, dt.UTC).date()
        if day != sends_day:
            if sends_file:
                sends_file.close()
            sends_day = day
            sends_file = open(root / "sends" / f"sends-{day.isoformat()}.ndjson", "wb")
        phone, cc, subscriber, iso = pool[int(rng.random() * len(pool))]
        sign = _SIGNS[int(rng.random() * len(_SIGNS))]
        template = _TEMPLATES[int(rng.random() * len(_TEMPLATES))]
        session = "" if rng.random() < 0.6 else f"order-{i}"
        counts["messages"] += 1
        i += 1
        if rng.random() < 0.025:
            code, message = _SEND_FAILURES[int(rng.random() * len(_SEND_FAILURES))]
            line = {"SerialNo": "", "PhoneNumber": phone, "Fee": 0, "SessionContext": session, "Code": code,
                    "Message": message, "IsoCode": "", "SendTime": send_time, "SmsSdkAppId": "1400000000",
                    "TemplateId": template, "SignName": sign}
            sends_file.write(orjson.dumps(line) + b"\n")
            counts["sends_rows"] += 1
            counts["failed_sends"] += 1
            continue
        serial = f"2433:{(serial_base + i * 7919) % 10**24:024d}"
        if rng.random() < 0.005:
            counts["orphan_messages"] += 1
        else:
            line = {"SerialNo": serial, "PhoneNumber": phone, "Fee": 1 if template != "1840004" else 2,
                    "SessionContext": session, "Code": "Ok", "Message": "send success", "IsoCode": iso,
                    "SendTime": send_time, "SmsSdkAppId": "1400000000", "TemplateId": template, "SignName": sign}
            line_bytes = orjson.dumps(line) + b"\n"
            sends_file.write(line_bytes)
            counts["sends_rows"] += 1
            counts["sends_bytes"] += len(line_bytes)
        if rng.random() < 0.01:
            continue  # never gets a receipt
        receipts = []
        final = send_time + receipt_latency(rng)
        if rng.random() < 0.03:
            first = send_time + 1 + int(rng.random() * 120)
            final = max(final, first + 60 + int(rng.random() * 6 * 3600))
            receipts.append((first, "FAIL", "UNDELIV"))
        ok = rng.random() < 0.95
        receipts.append((final, "SUCCESS" if ok else "FAIL", "DELIVRD" if ok else _FAILS[int(rng.random() * len(_FAILS))]))
        for receive, status, description in receipts:
            shown = receive
            r = rng.random()
            if r < 0.001:
                shown = 0
                counts["zero_timestamps"] += 1
            elif r < 0.011:
                shown = receive * 1000
                counts["ms_timestamps"] += 1
            record = orjson.dumps({"UserReceiveTime": shown, "CountryCode": cc, "SubscriberNumber": subscriber,
                                   "PhoneNumber": phone, "SerialNo": serial, "ReportStatus": status,
                                   "Description": description, "SessionContext": session})
            tiebreak += 1
            heapq.heappush(heap, (receive, tiebreak, record))
        if ok and rng.random() < 0.08:
            conversion = final + round(30 * (4 * 86400 / 30) ** (rng.random() ** 2))
            conversions.write(orjson.dumps({"SerialNo": serial, "ConversionTime": conversion}) + b"\n")
            counts["conversions"] += 1
    emit_until(2**62)
    if page:
        flush_page(max(end, last_pull_ns // 10**9))
    if sends_file:
        sends_file.close()
    conversions.close()
    manifest = {
        "generator_version": GENERATOR_VERSION, "n_receipts": n_receipts, "seed": seed, "days": days,
        "first_day": (END - dt.timedelta(days=days)).date().isoformat(),
        "last_day": (END - dt.timedelta(days=1)).date().isoformat(),
        "distinct_numbers": len(set(pool)), **counts, "seconds": round(time.perf_counter() - started, 1),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log(f"generated {counts['receipts']:,} receipts in {counts['pages']:,} pages, {counts['sends_rows']:,} sends, "
        f"{counts['conversions']:,} conversions in {manifest['seconds']:.0f}s")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("n_receipts", type=int)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    ns = parser.parse_args()
    print(json.dumps(generate(ns.out_dir, ns.n_receipts, days=ns.days, seed=ns.seed), indent=2))


if __name__ == "__main__":
    main()
