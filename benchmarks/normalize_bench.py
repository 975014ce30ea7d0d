"""Throughput of phone and timestamp normalization on a realistic mix.

The mix follows what a Tencent Cloud SMS application sees: mostly mainland mobiles in E.164
(the fast path), 10% numbers of other regions and 5% dirty forms (no plus, 00 prefix, national
number plus CountryCode, separators, blanks with a SubscriberNumber, garbage), all of which go
through phonenumbers once per distinct value. About n_rows / 10 distinct numbers.

`run(n_rows)` returns the measurements; `python benchmarks/normalize_bench.py [n_rows]` prints them.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import statistics
import sys
import time

import phonenumbers
import polars as pl

from pipelines.normalize.phones import normalize_phones
from pipelines.normalize.timestamps import unix_seconds_to_utc

_REPEATS = 3
# 13x and 18x are entirely mobile, 15x all but 154: every number drawn from these is valid.
_CN_MOBILE_PREFIXES = [f"13{d}" for d in range(10)] + [f"15{d}" for d in (0, 1, 2, 3, 5, 6, 7, 8, 9)] + [
    f"18{d}" for d in range(10)
]


def _pool(n_distinct: int, rng: random.Random) -> list[tuple[str | None, str | None, str | None]]:
    """Distinct (PhoneNumber, CountryCode, SubscriberNumber) records in the benchmark's mix."""
    other_examples = [
        number
        for region in sorted(phonenumbers.SUPPORTED_REGIONS - {"CN"})
        if (number := phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)) is not None
    ]
    records: list[tuple[str | None, str | None, str | None]] = []
    for i in range(n_distinct):
        kind = rng.random()
        mobile = rng.choice(_CN_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        if kind < 0.85:
            records.append((f"+86{mobile}", "86", mobile))
        elif kind < 0.95:
            example = rng.choice(other_examples)
            national = str(example.national_number)
            # Vary the last digits so the distinct count stays realistic (some become invalid).
            national = national[:-3] + f"{rng.randrange(1000):03d}"
            records.append((f"+{example.country_code}{national}", str(example.country_code), national))
        else:
            dirty = [
                (f"86{mobile}", "86", None),
                (f"0086{mobile}", None, None),
                (mobile, "86", None),
                (f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}", "86", None),
                (f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}", "86", None),
                ("", "86", mobile),
                (f"n/a {i}", "86", None),
            ]
            records.append(rng.choice(dirty))
    return records


def _frame(n_rows: int, seed: int = 7) -> pl.DataFrame:
    rng = random.Random(seed)
    pool = pl.DataFrame(
        _pool(max(1, n_rows // 10), rng),
        schema={"PhoneNumber": pl.Utf8, "CountryCode": pl.Utf8, "SubscriberNumber": pl.Utf8},
        orient="row",
    )
    rows = pool.sample(n_rows, with_replacement=True, seed=seed)
    # Receipt times of the last week in seconds, with 1% in milliseconds and 0.1% zero.
    start = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())
    seconds = pl.int_range(n_rows, eager=True).hash(seed) % (7 * 86400) + start
    unit = pl.int_range(n_rows, eager=True).hash(seed + 1) % 1000
    receive = (
        pl.when(unit < 1).then(0).when(unit < 11).then(seconds * 1000).otherwise(seconds).cast(pl.Int64)
    )
    return rows.with_columns(pl.select(receive.alias("UserReceiveTime")).to_series())


def _timings(function) -> list[float]:
    """Wall seconds of each of `_REPEATS` runs; the first is cold (phonenumbers' caches empty)."""
    timings = []
    for _ in range(_REPEATS):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return timings


def run(n_rows: int) -> dict:
    """Normalize `n_rows` records; rows/s are medians of 3 runs (after the data is built)."""
    frame = _frame(n_rows)
    now = dt.datetime(2026, 1, 8, tzinfo=dt.UTC)
    phones = _timings(lambda: normalize_phones(frame, "PhoneNumber", "CountryCode", subscriber_number="SubscriberNumber"))
    times = _timings(lambda: unix_seconds_to_utc(frame, "UserReceiveTime", out="ts", flag="flag", now=now))
    result = normalize_phones(frame, "PhoneNumber", "CountryCode", subscriber_number="SubscriberNumber")
    distinct = frame.select(pl.struct("PhoneNumber", "CountryCode", "SubscriberNumber").n_unique()).item()
    return {
        "rows": n_rows,
        "distinct_numbers": distinct,
        "phones_seconds": phones,
        "phones_rows_per_second": n_rows / statistics.median(phones),
        "phones_valid_share": result["phone_valid"].mean(),
        "timestamps_seconds": times,
        "timestamps_rows_per_second": n_rows / statistics.median(times),
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000), indent=2))
