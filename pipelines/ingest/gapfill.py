"""Gap filling: records the queues handed out in responses we never got whole, asked again by
phone number, and only those.

PullSmsSendStatus and PullSmsReplyStatus hand each record out once. A pull whose response did not
arrive whole (a timeout, a reset, a truncated body), or a drain that died with pulls in flight, is
an *indeterminate* batch of the ledger: records it took off the queue are gone, and only the
by-number pulls (re-readable for 7 days, one number and one window per call, 20 calls/s) can bring
them back. A backlog is not a loss (the queue still holds it), and a message sent minutes ago is
not missing: gap filling asks only about known losses, each one a *search* of
raw.gap_fill_searches, done once.

* What one lost pull can hold: at most its Limit records (a drain that died: one pull per worker),
  and, as a queue hands records out oldest first, records timed after the last record of the pulls
  completed before it and before the first record of the pulls sent after it
  (sql/gapfill/search_windows.sql), widened by MARGIN_SECONDS on each side. Assumed: the queue is
  ordered by arrival at the provider, and a record arrives there within 10 minutes of its time.
* Who can be concerned. Receipts: sends-log messages not delivered yet (no receipt, or only
  failures), ranked by the probability that their receipt fell in the window, from the receipt
  delays the warehouse holds (sql/gapfill/receipt_candidates.sql). Replies: numbers with a message
  delivered in the 72 hours before the window's end, ranked by the reply delays. Unsolicited
  replies answer no delivery and cannot be looked for: a search counts what stays unrecovered.
* How much to ask: numbers in rank order, one call each over the window, until the records found
  (in the window, and not held before) reach the capacity, or CALLS_PER_RECORD x capacity calls
  were made: a lost pull of 100 records costs at most 200 calls, 10 s at the documented 20/s.
  Lost pulls of one queue whose windows overlap hold records of the same stretch of the queue:
  they are searched together (one call per number over their joint window, their capacities and
  calls added up), so that one number is not asked once per pull.
* A search waits for the pulls after its lost one (they bound its window) until they come, or an
  hour: a pull lost at the end of a drain is searched after the next drain.
* A budget of calls per run; a search it cuts short is resumed by the next run (the numbers it
  asked are in raw.gap_fill_calls); a search whose window left the 7-day retention is closed as
  beyond_retention.
* A receipt without a usable time (UserReceiveTime 0 from a dirty feed) asks its number once over
  the 4 days after the message was sent, so that its real time comes back.

`plan_gap_fill` reads the warehouse (and registers the searches); `fetch_gaps` makes the calls and
writes only the spool, so the warehouse is free meanwhile; `store_gap_fill` records what the
searches did and loads the spool. Each application is searched on its own (a search belongs to
the application whose queue lost it, and asks that application's by-number pulls about its
messages and deliveries); the delay distributions that rank numbers are the account's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import polars as pl

from pipelines.config import DEMO_SDK_APP_ID
from pipelines.normalize.phones import normalize_phones
from pipelines.spool import Spool
from pipelines.tencent import actions as A
from pipelines.tencent.client import SmsApiClient
from pipelines.tencent.errors import TencentCloudError, TransportError, Unreachable
from pipelines.warehouse.db import insert_frame, registered, sql_text, transaction
from pipelines.warehouse.loader import load_spool

log = logging.getLogger(__name__)

DEFAULT_CALL_BUDGET = 1200  # by-number calls per run: one minute at the documented 20/s
CALLS_PER_RECORD = 2  # calls a search may make per record its lost pull can have held
MARGIN_SECONDS = 600  # how far a record's time may be from its place in the queue (see above)
RETENTION_MARGIN_SECONDS = 600  # stay clear of the 7-day edge: the provider's clock and ours differ
UNUSABLE_TIME_SPAN_SECONDS = 4 * 86400  # a receipt comes within 4 days of sending (EXPIRED after 1-3)
MAX_PULL_SECONDS = 60  # a queue pull ends within this (the client's timeout is 10 s)
WAIT_FOR_SUCCESSORS_SECONDS = 3600  # a search waits this long for pulls after its lost one
SUCCESSOR_REACH = 8  # successors of a lost pull that may bound its window, beyond those beside it
# A marker written before markers carried their pull: the largest Limit, the default workers.
OLD_MARKER_LIMIT = A.MAX_LIMIT
OLD_MARKER_WORKERS = 4
USABLE_FROM_S = 946_684_800  # 2000-01-01: earlier times are junk (timestamps.py says the same)

# Delay distributions: shares of delays shorter than 2^(k/4) - 1 s, k = 0..DELAY_BINS (macros.sql).
DELAY_BINS = 84  # up to 2^21 s, 24 days
MIN_OBSERVATIONS = 200  # delays the warehouse must hold before they replace the defaults
EVIDENCE_SAMPLE = 50_000  # messages (replies) sampled to measure them
# Defaults while the warehouse holds too few (seconds, share of delays at most that long), log-linear
# in between. Receipts: most within a minute, 95% within an hour, none after 4 days. Replies:
# minutes to two days after delivery, none after 72 hours (the attribution window).
DEFAULT_RECEIPT_DELAYS = ((0, 0.0), (5, 0.3), (15, 0.6), (60, 0.85), (3600, 0.95), (43_200, 0.98), (345_600, 1.0))
DEFAULT_REPLY_DELAYS = ((30, 0.0), (600, 0.25), (3600, 0.45), (21_600, 0.7), (86_400, 0.9), (172_800, 0.97),
                        (259_200, 1.0))
DEFAULT_NO_RECEIPT = 0.01  # messages that never get a receipt
DEFAULT_FOLLOWUP = 0.3  # failure receipts followed by another receipt (a carrier retry)

REASONS = ("lost_receipt_pull", "dead_receipt_drain", "lost_reply_pull", "dead_reply_drain", "unusable_receipt_time")
OPEN, WAITING = "open", "waiting"
COMPLETE, BOUNDED, BEYOND_RETENTION = "complete", "bounded", "beyond_retention"


@dataclasses.dataclass(frozen=True)
class Delays:
    """A delay distribution (edges for delay_cdf), and whether the warehouse measured it."""

    edges: list[float]
    observations: int

    @property
    def observed(self) -> bool:
        return self.observations >= MIN_OBSERVATIONS

    def longest(self) -> int:
        """Seconds beyond which no delay was seen."""
        k = next((k for k, share in enumerate(self.edges) if share >= 1.0), len(self.edges) - 1)
        return math.ceil(2 ** (k / 4) - 1)


@dataclasses.dataclass
class Loss:
    """One row of raw.gap_fill_searches: a lost pull, a drain that died, or a receipt without a
    usable time, with what earlier runs did for it."""

    search_id: str
    reason: str
    lost_at: Any  # datetime
    window_start: int
    window_end: int
    capacity: int
    max_calls: int
    calls: int
    records_found: int


@dataclasses.dataclass
class Search:
    """What one run looks for at once: one loss, or the losses of one queue whose windows overlap
    (their records lie in the same stretch of the queue, so the same numbers hold them): each
    number is asked once, over their joint window. The numbers still to ask, best first, and the
    calls this run allows."""

    losses: list[Loss]  # oldest first
    action: str  # the by-number action
    numbers: list[str] = dataclasses.field(default_factory=list)
    candidates: int = 0  # numbers ranked, those asked by earlier runs included
    known: set[tuple] = dataclasses.field(default_factory=set)  # records of the window we hold
    target: tuple[str, str] | None = None  # (SerialNo, ReportStatus) of a receipt without a usable time
    allowance: int = 0

    @property
    def window_start(self) -> int:
        return min(loss.window_start for loss in self.losses)

    @property
    def window_end(self) -> int:
        return max(loss.window_end for loss in self.losses)

    @property
    def capacity(self) -> int:
        return sum(loss.capacity for loss in self.losses)

    @property
    def records_found(self) -> int:
        return sum(loss.records_found for loss in self.losses)

    @property
    def room(self) -> int:
        """Calls its losses may still make."""
        return sum(max(loss.max_calls - loss.calls, 0) for loss in self.losses)

    def find_key(self, number: str, record: Any) -> tuple | None:
        """The key of `record` if it is a find: in the window and not held before. The record's
        time is the key's third part."""
        if not isinstance(record, dict):
            return None
        if self.action == A.PULL_SEND_STATUS_BY_NUMBER:
            t = _seconds(record.get("UserReceiveTime"))
            key = (record.get("SerialNo"), record.get("ReportStatus"), t)
            if self.target is not None:
                return key if t is not None and key[:2] == self.target else None
        else:
            t = _seconds(record.get("ReplyTime"))
            key = (number, record.get("SignName"), t, record.get("ReplyContent"))
        if t is None or not self.window_start <= t <= self.window_end or key in self.known:
            return None
        return key


@dataclasses.dataclass
class GapFillPlan:
    searches: list[Search]  # this run's, oldest loss first
    now: int
    beyond_retention: list[tuple[str, str, int, int]]  # (search_id, reason, capacity, found) closed now
    sdk_app_id: str  # the application searched
    invalid_numbers: int = 0  # candidates whose number cannot be written as E.164
    delays: dict[str, str] = dataclasses.field(default_factory=dict)  # which distributions ranked them


@dataclasses.dataclass
class SearchProgress:
    search: Search
    calls: int = 0
    found: set[tuple] = dataclasses.field(default_factory=set)
    asked: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # numbers answered, in order
    failed_numbers: int = 0
    failed_calls: int = 0
    outcome: str = OPEN


@dataclasses.dataclass
class _Share:
    """What a search's run did for one of its losses."""

    loss: Loss
    calls: int = 0
    found: int = 0
    asked: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _shares(progress: SearchProgress) -> list[_Share]:
    """A search's calls and finds, given to its losses: calls to the oldest loss first, each up to
    the calls it may make; a find to the oldest loss whose window holds the record's time and that
    can still hold one."""
    shares = [_Share(loss) for loss in progress.search.losses]
    current = 0
    for asked in progress.asked:
        while (current < len(shares) - 1
               and shares[current].loss.calls + shares[current].calls >= shares[current].loss.max_calls):
            current += 1
        shares[current].calls += asked["calls"]
        shares[current].asked.append({**asked, "search_id": shares[current].loss.search_id})
    shares[current].calls += progress.failed_calls
    for key in sorted(progress.found, key=lambda key: key[2]):
        holding = [s for s in shares if s.loss.window_start <= key[2] <= s.loss.window_end] or shares
        share = next((s for s in holding if s.loss.records_found + s.found < s.loss.capacity), holding[0])
        share.found += 1
    return shares


@dataclasses.dataclass
class GapFillResult:
    progress: list[SearchProgress]
    error: BaseException | None = None  # a permanent provider error that stopped the calls


@dataclasses.dataclass
class GapFillReport:
    """What a run of gap filling did, for the run's metadata."""

    lost_pulls_searched: int = 0  # lost pulls (and dead drains) this run asked about or closed
    possible_lost_records: int = 0  # what they can have held (their capacity)
    calls: int = 0  # by-number calls (pages; a number whose call failed counts one)
    calls_by_reason: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    numbers_asked: int = 0
    records_found: int = 0  # records in a search's window that we did not hold
    new_records: int = 0  # records the calls added to raw
    unrecovered_at_most: int = 0  # of the searches closed this run: capacity not found (unsolicited replies, ...)
    beyond_retention: int = 0  # searches closed this run because their window left the 7-day retention
    unusable_times_asked: int = 0  # receipts without a usable time asked again
    invalid_numbers: int = 0
    failed_numbers: int = 0  # numbers whose call failed after retries (asked again by the next run)
    searches_left: int = 0  # open or waiting after this run: the next run goes on
    receipt_delays: str = ""  # "observed (n)" or "default"
    reply_delays: str = ""

    def add(self, other: GapFillReport) -> None:
        """Count another application's run in."""
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if isinstance(mine, dict):
                for reason, n in theirs.items():
                    mine[reason] = mine.get(reason, 0) + n
            elif isinstance(mine, str):
                setattr(self, field.name, mine or theirs)
            else:
                setattr(self, field.name, mine + theirs)

    def metadata(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "calls_by_reason"}
        out.update({f"calls_{reason}": n for reason, n in self.calls_by_reason.items()})
        return out


Load = Callable[[duckdb.DuckDBPyConnection], object]


def run_gap_fill(connect: Callable[[], contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]],
                 client: SmsApiClient, spool: Spool, *, budget: int = DEFAULT_CALL_BUDGET, workers: int = 4,
                 reply_window_hours: int = 72, now: float | None = None, load: Load | None = None) -> GapFillReport:
    """Plan (warehouse), fetch (network and spool only), store (warehouse) for the application of
    `client`; raises the permanent provider error that stopped the calls, after storing what was
    done. `load` loads the spool (default: `load_spool` with its defaults)."""
    with connect() as con:
        plan = plan_gap_fill(con, budget=budget, reply_window_hours=reply_window_hours, now=now,
                             sdk_app_id=client.sdk_app_id)
    result = fetch_gaps(client, spool, plan, workers=workers)
    with connect() as con:
        report = store_gap_fill(con, spool, plan, result, load=load)
    if result.error is not None:
        raise result.error
    return report


# -- planning ---------------------------------------------------------------------------------


def plan_gap_fill(con: duckdb.DuckDBPyConnection, *, sdk_app_id: str = DEMO_SDK_APP_ID, budget: int = DEFAULT_CALL_BUDGET,
                  reply_window_hours: int = 72, now: float | None = None) -> GapFillPlan:
    """Register the losses the ledger shows (of every application), place their windows, close
    those beyond retention, and rank the numbers of the open searches of `sdk_app_id` (oldest loss
    first) that this run's budget reaches."""
    now = int(time.time() if now is None else now)
    oldest = now - A.BY_NUMBER_RETENTION_SECONDS + RETENTION_MARGIN_SECONDS
    con.execute(sql_text("gapfill/macros"))
    with transaction(con):
        con.execute(sql_text("gapfill/register_lost_pulls"), {
            "since_s": oldest - 86400, "default_limit": OLD_MARKER_LIMIT, "default_workers": OLD_MARKER_WORKERS,
            "calls_per_record": CALLS_PER_RECORD})
        con.execute(sql_text("gapfill/register_unusable_times"), {
            "since_s": oldest, "usable_from_s": USABLE_FROM_S, "usable_to_s": now + 86400,
            "span_s": UNUSABLE_TIME_SPAN_SECONDS})
        _place_windows(con, now, oldest)
        aged = ("sms_sdk_app_id = $app and outcome in ('open', 'waiting') "
                "and coalesce(window_end, epoch(lost_at) + $margin) < $oldest")
        bounds = {"margin": MARGIN_SECONDS, "oldest": oldest, "app": sdk_app_id}
        beyond = con.execute(f"select search_id, reason, capacity, records_found from raw.gap_fill_searches "
                             f"where {aged}", bounds).fetchall()
        con.execute(f"update raw.gap_fill_searches set outcome = 'beyond_retention', searched_at = to_timestamp($now) "
                    f"where {aged}", {**bounds, "now": now})
    plan = GapFillPlan([], now, [tuple(row) for row in beyond], sdk_app_id)
    evidence: dict[str, tuple] = {}
    left = budget
    for search in _together(con, sdk_app_id):
        if left <= 0:
            break
        _rank(con, search, plan, evidence, oldest, reply_window_hours * 3600)
        search.allowance = min(left, search.room, len(search.numbers))
        left -= search.allowance
        plan.searches.append(search)
    return plan


def _together(con: duckdb.DuckDBPyConnection, sdk_app_id: str) -> list[Search]:
    """The open losses of the application as searches, oldest loss first: lost pulls of one queue
    whose windows overlap are searched together; a receipt without a usable time is searched alone."""
    rows = con.execute(
        "select search_id, reason, action, window_start, window_end, capacity, max_calls, calls, records_found, lost_at "
        "from raw.gap_fill_searches where outcome = 'open' and sms_sdk_app_id = $app "
        "order by action, reason = 'unusable_receipt_time', window_start, lost_at, search_id",
        {"app": sdk_app_id}).fetchall()
    searches: list[Search] = []
    for search_id, reason, action, start, end, capacity, max_calls, calls, found, lost_at in rows:
        loss = Loss(search_id, reason, lost_at, start, end, capacity, max_calls, calls, found)
        last = searches[-1] if searches else None
        if (last is not None and last.action == action and reason != "unusable_receipt_time"
                and last.losses[0].reason != "unusable_receipt_time" and start <= last.window_end):
            last.losses.append(loss)
        else:
            searches.append(Search([loss], action))
    for search in searches:
        search.losses.sort(key=lambda loss: (loss.lost_at, loss.search_id))
    return sorted(searches, key=lambda search: (search.losses[0].lost_at, search.losses[0].search_id))


def _place_windows(con: duckdb.DuckDBPyConnection, now: int, oldest: int) -> None:
    """Waiting searches get their window once pulls after the lost one bound it (or once the wait
    is over: then the lost pull's own time bounds it, as a queue hands out only records due)."""
    rows = con.execute(sql_text("gapfill/search_windows"), {
        "since_s": oldest - 86400, "default_workers": OLD_MARKER_WORKERS, "max_pull_s": MAX_PULL_SECONDS,
        "reach": SUCCESSOR_REACH, "usable_from_s": USABLE_FROM_S, "usable_to_s": now + 86400}).fetchall()
    placed = []
    for search_id, lost_s, lower_t, upper_t, successors in rows:
        if not successors and lost_s > now - WAIT_FOR_SUCCESSORS_SECONDS:
            continue
        end = min(lost_s, upper_t if upper_t is not None else lost_s) + MARGIN_SECONDS
        start = min(lower_t - MARGIN_SECONDS, end) if lower_t is not None else oldest
        placed.append((start, end, search_id))
    if placed:
        con.executemany("update raw.gap_fill_searches set window_start = ?, window_end = ?, outcome = 'open' "
                        "where search_id = ?", placed)


def _rank(con: duckdb.DuckDBPyConnection, search: Search, plan: GapFillPlan, evidence: dict[str, tuple],
          oldest: int, reply_window_s: int) -> None:
    """The numbers of `search`, best first, without those its losses asked before."""
    ids = [loss.search_id for loss in search.losses]
    asked = {n for (n,) in con.execute("select distinct phone_e164 from raw.gap_fill_calls "
                                       "where search_id in (select unnest($ids))", {"ids": ids}).fetchall()}
    want = 3 * search.room + len(asked)  # spare rows: numbers repeat, some do not parse
    window = {"start_s": search.window_start, "end_s": search.window_end, "app": plan.sdk_app_id}
    if search.losses[0].reason == "unusable_receipt_time":
        [loss] = search.losses
        ranked = con.execute(sql_text("gapfill/unusable_time_number"), {
            "window_start": loss.window_start, "lost_at": loss.lost_at,
            "record_key": loss.search_id.partition("|")[2], "app": plan.sdk_app_id}).pl()
        ranked = ranked.with_columns(probability=pl.lit(1.0))
        if not ranked.is_empty():
            search.target = (ranked["serial_no"][0], ranked["report_status"][0])
    elif search.action == A.PULL_SEND_STATUS_BY_NUMBER:
        if "receipts" not in evidence:
            evidence["receipts"] = _receipt_evidence(con, plan.now, oldest)
        delays, no_receipt, followup = evidence["receipts"]
        plan.delays["receipts"] = f"observed ({delays.observations})" if delays.observed else "default"
        ranked = con.execute(sql_text("gapfill/receipt_candidates"), {
            **window, "from_s": search.window_start - delays.longest(), "now_s": plan.now, "edges": delays.edges,
            "no_receipt": no_receipt, "followup": followup, "limit": want}).pl()
        search.known = set(con.execute(sql_text("gapfill/known_receipts"), window).fetchall())
    else:
        if "replies" not in evidence:
            evidence["replies"] = (_reply_evidence(con, plan.now, oldest, reply_window_s),)
        (delays,) = evidence["replies"]
        plan.delays["replies"] = f"observed ({delays.observations})" if delays.observed else "default"
        ranked = con.execute(sql_text("gapfill/reply_candidates"), {
            **window, "window_s": reply_window_s, "edges": delays.edges, "limit": want}).pl()
        known = _e164(con.execute(sql_text("gapfill/known_replies"), window).pl())
        search.known = {(n, sign, t, content) for n, sign, t, content in
                        known.select("phone_e164", "sign_name", "t", "reply_content").iter_rows()}
    numbers = _e164(ranked)
    plan.invalid_numbers += numbers.filter(pl.col("phone_e164").is_null()).height
    per_number = (numbers.filter(pl.col("phone_e164").is_not_null())
                  .group_by("phone_e164").agg(pl.col("probability").sum())
                  .sort(["probability", "phone_e164"], descending=[True, False]))
    search.candidates = per_number.height
    search.numbers = [n for n in per_number["phone_e164"] if n not in asked]


def _e164(frame: pl.DataFrame) -> pl.DataFrame:
    """`phone_e164` of the rows (with their country code and national number when they have them)."""
    if "country_code" not in frame.columns:
        return normalize_phones(frame, "phone_number", None)
    return normalize_phones(frame.rename({"country_code": "cc_in"}), "phone_number", "cc_in",
                            subscriber_number="subscriber_number")


def _receipt_evidence(con: duckdb.DuckDBPyConnection, now: int, oldest: int) -> tuple[Delays, float, float]:
    """Receipt delays, the share of messages without receipt and of failures followed by another
    receipt, from messages sent a day ago or more (most of their receipts came)."""
    rows = con.execute(_sampling("gapfill/receipt_evidence"), {
        "from_s": oldest, "to_s": now - 86400, "usable_to_s": now + 86400, "bins": DELAY_BINS}).fetchall()
    delays = _delays(rows, DEFAULT_RECEIPT_DELAYS)
    totals = {what: n for what, _, n in rows if what != "delay"}
    no_receipt = (totals["without_receipt"] / totals["messages"] if totals.get("messages", 0) >= MIN_OBSERVATIONS
                  else DEFAULT_NO_RECEIPT)
    followup = (totals["failed_then_more"] / totals["failed"] if totals.get("failed", 0) >= MIN_OBSERVATIONS // 10
                else DEFAULT_FOLLOWUP)
    # never certain either way: a share of 0 or 1 would rule candidates in or out on a sample
    return delays, min(max(no_receipt, 0.001), 0.5), min(max(followup, 0.01), 0.99)


def _reply_evidence(con: duckdb.DuckDBPyConnection, now: int, oldest: int, window_s: int) -> Delays:
    rows = con.execute(_sampling("gapfill/reply_evidence"), {
        "from_s": oldest, "usable_to_s": now + 86400, "window_s": window_s, "bins": DELAY_BINS}).fetchall()
    return _delays(rows, DEFAULT_REPLY_DELAYS)


def _sampling(name: str) -> str:
    """An evidence query with its sample size (DuckDB takes only a constant there)."""
    return sql_text(name).replace("{sample}", str(EVIDENCE_SAMPLE))


def _delays(rows: list[tuple], default: tuple[tuple[int, float], ...]) -> Delays:
    counts = [0] * DELAY_BINS
    for what, bin_, n in rows:
        if what == "delay":
            counts[bin_] += n
    total = sum(counts)
    if total < MIN_OBSERVATIONS:
        return Delays(_default_edges(default), total)
    edges, running = [0.0], 0
    for n in counts:
        running += n
        edges.append(running / total)
    return Delays(edges, total)


def _default_edges(points: tuple[tuple[int, float], ...]) -> list[float]:
    """The shares at the bin edges, log-linear between the given points."""
    edges = []
    for k in range(DELAY_BINS + 1):
        x = k / 4  # the edge 2^(k/4) - 1 s, as log2(seconds + 1)
        share = 1.0
        for (s0, p0), (s1, p1) in zip(points, points[1:]):
            l0, l1 = math.log2(s0 + 1), math.log2(s1 + 1)
            if x <= l1:
                share = p0 + (p1 - p0) * max(x - l0, 0) / (l1 - l0)
                break
        edges.append(share)
    return edges


def _seconds(value: Any) -> int | None:
    """Unix seconds of a record's time (milliseconds from a dirty feed converted); None if unusable."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    seconds = value // 1000 if value >= 1e11 else value
    return seconds if seconds >= USABLE_FROM_S else None


# -- fetching ---------------------------------------------------------------------------------


def fetch_gaps(client: SmsApiClient, spool: Spool, plan: GapFillPlan, *, workers: int = 4) -> GapFillResult:
    """Ask the planned numbers, `workers` at a time, search by search; every page goes to the spool.
    Needs no database. A permanent provider error stops all calls (it is returned, not raised, so
    that what was done is stored first)."""
    result = GapFillResult([])
    stop = threading.Event()
    lock = threading.Lock()
    oldest = plan.now - A.BY_NUMBER_RETENTION_SECONDS + RETENTION_MARGIN_SECONDS

    def ask(search: Search, number: str) -> dict[str, Any]:
        begin, end = max(search.window_start, oldest), min(search.window_end, plan.now)
        asked = {"phone_e164": number, "begin_time": begin, "end_time": end, "calls": 0, "records_found": 0,
                 "batch_ids": [], "found": set(), "failed": False}
        if end < begin:
            return asked
        try:
            for body, page in client.by_number_pages(search.action, number, begin, end):
                asked["batch_ids"].append(spool.write(search.action, body, sdk_app_id=client.sdk_app_id).batch_id)
                asked["calls"] += 1
                asked["found"].update(k for k in (search.find_key(number, r) for r in page.records) if k is not None)
        except (TencentCloudError, Unreachable) as exc:
            if isinstance(exc, Unreachable) or not exc.retryable:
                with lock:
                    result.error = result.error or exc
                stop.set()
            log.warning("gap fill %s for %s…: %s", search.action, number[:6], exc)
            asked.update(calls=asked["calls"] + 1, failed=True)
        except TransportError as exc:
            log.warning("gap fill %s for %s…: %s", search.action, number[:6], exc)
            asked.update(calls=asked["calls"] + 1, failed=True)
        return asked

    found_this_run: set[tuple] = set()  # a record found for one search is no find for another
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gapfill") as pool:
        for search in plan.searches:
            progress = SearchProgress(search)
            result.progress.append(progress)
            position = 0
            while not stop.is_set():
                room = search.allowance - progress.calls
                if (search.records_found + len(progress.found) >= search.capacity or room <= 0
                        or position >= len(search.numbers)):
                    break
                wave = search.numbers[position : position + min(workers, room)]
                position += len(wave)
                for asked in pool.map(lambda number: ask(search, number), wave):
                    failed, found = asked.pop("failed"), asked.pop("found") - found_this_run
                    progress.found |= found
                    found_this_run |= found
                    asked["records_found"] = len(found)
                    progress.calls += asked["calls"]
                    if failed:  # asked again by the next run
                        progress.failed_numbers += 1
                        progress.failed_calls += asked["calls"]
                    else:
                        progress.asked.append(asked)
            progress.outcome = _outcome(search, progress, position, stopped=stop.is_set())
    return result


def _outcome(search: Search, progress: SearchProgress, position: int, *, stopped: bool) -> str:
    if search.records_found + len(progress.found) >= search.capacity:
        return COMPLETE
    if progress.calls >= search.room:
        return BOUNDED
    if position >= len(search.numbers) and not progress.failed_numbers and not stopped:
        return COMPLETE  # every number that can hold one was asked
    return OPEN  # cut short by the run's budget, a failed call or a stop: the next run goes on


# -- storing ----------------------------------------------------------------------------------


_CALLS_SCHEMA = {"search_id": pl.Utf8, "phone_e164": pl.Utf8, "begin_time": pl.Int64, "end_time": pl.Int64,
                 "calls": pl.Int32, "records_found": pl.Int32, "batch_ids": pl.List(pl.Utf8)}


def store_gap_fill(con: duckdb.DuckDBPyConnection, spool: Spool, plan: GapFillPlan, result: GapFillResult, *,
                   load: Load | None = None) -> GapFillReport:
    """Record what each search did, then load the spool (its pages are there, durable, first: a
    crash in between repeats calls, never loses records), then count what they added to raw."""
    report = GapFillReport(invalid_numbers=plan.invalid_numbers, receipt_delays=plan.delays.get("receipts", ""),
                           reply_delays=plan.delays.get("replies", ""))
    done = [(p, _shares(p)) for p in result.progress]
    shares = [share for _, search_shares in done for share in search_shares]
    with transaction(con):
        insert_frame(con, "raw.gap_fill_calls", pl.DataFrame(
            [{k: v for k, v in row.items() if k in _CALLS_SCHEMA} for share in shares for row in share.asked],
            schema=_CALLS_SCHEMA))
        if done:
            con.executemany(
                "update raw.gap_fill_searches set candidates = ?, calls = calls + ?, numbers_asked = numbers_asked + ?, "
                "records_found = records_found + ?, outcome = ?, searched_at = to_timestamp(?) where search_id = ?",
                [(p.search.candidates, share.calls, len(share.asked), share.found, p.outcome, plan.now,
                  share.loss.search_id) for p, search_shares in done for share in search_shares])
    (load or (lambda con: load_spool(con, spool)))(con)
    pages = pl.DataFrame([(share.loss.search_id, batch_id) for share in shares for row in share.asked
                          for batch_id in row["batch_ids"]],
                         schema={"search_id": pl.Utf8, "batch_id": pl.Utf8}, orient="row")
    added: dict[str, int] = {}
    if not pages.is_empty():
        with registered(con, "_gap_fill_pages", pages):
            added = dict(con.execute("select p.search_id, sum(b.new_records)::integer from _gap_fill_pages p "
                                     "join raw.batches b using (batch_id) group by p.search_id").fetchall())
        con.executemany("update raw.gap_fill_searches set new_records = new_records + ? where search_id = ?",
                        [(n, search_id) for search_id, n in added.items()])

    for p, search_shares in done:
        for share in search_shares:
            loss = share.loss
            lost_pull = loss.reason != "unusable_receipt_time"
            if lost_pull and (p.calls or p.outcome != OPEN):
                report.lost_pulls_searched += 1
                report.possible_lost_records += loss.capacity
            report.calls += share.calls
            report.calls_by_reason[loss.reason] += share.calls
            report.numbers_asked += len(share.asked)
            report.records_found += share.found
            report.new_records += added.get(loss.search_id, 0)
            report.unusable_times_asked += not lost_pull and len(share.asked)
            if p.outcome != OPEN:
                report.unrecovered_at_most += max(loss.capacity - loss.records_found - share.found, 0)
        report.failed_numbers += p.failed_numbers
    for _, _, capacity, found in plan.beyond_retention:
        report.beyond_retention += 1
        report.unrecovered_at_most += max(capacity - found, 0)
    report.searches_left = con.execute(
        "select count(*) from raw.gap_fill_searches where outcome in ('open', 'waiting') and sms_sdk_app_id = $app",
        {"app": plan.sdk_app_id}).fetchone()[0]
    return report
