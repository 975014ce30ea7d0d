"""`smsledger`: the command line. Each command exits 0 on success and, on failure, prints one line
a person can act on (the provider's code and message, the variable to set, the bad file)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from pipelines.config import MAX_RETENTION_DAYS, ConfigError, Settings, retention_amount
from pipelines.tencent import actions as A
from pipelines.tencent.errors import TencentCloudError, TransportError, WindowTooOldError
from pipelines.app.errors import CommandError, RunFailedError, stop
from pipelines.warehouse.db import WarehouseBusyError

# Actions whose request carries the application id; `smsledger api` fills it in when omitted.
_APP_ID_ACTIONS = frozenset(A.ALL_ACTIONS) - {A.DESCRIBE_PHONE_NUMBER_INFO, A.DESCRIBE_SIGN_LIST, A.DESCRIBE_TEMPLATE_LIST}


def _cmd_api(ns: argparse.Namespace) -> int:
    from pipelines.tencent.client import SmsApiClient

    action = ns.action
    if action not in A.ALL_ACTIONS:
        raise CommandError(f"unknown action {action!r}; one of: {', '.join(A.ALL_ACTIONS)}")
    try:
        params = orjson.loads(ns.json) if ns.json else {}
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"--json is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise CommandError("--json must be a JSON object, e.g. '{\"Limit\": 100}'")
    settings = Settings.from_env()
    if action in _APP_ID_ACTIONS:
        params.setdefault("SmsSdkAppId", settings.sdk_app_id)
        settings = dataclasses.replace(settings, sdk_app_ids=(str(params["SmsSdkAppId"]),))
    with SmsApiClient.from_settings(settings) as client:
        if action in A.QUEUE_ACTIONS:
            response = _pull_queue_once(client, settings, action, params)
        else:
            response = client.call(action, params)
    sys.stdout.buffer.write(orjson.dumps(response, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _pull_queue_once(client, settings: Settings, action: str, params: dict) -> dict:
    """A queue pull hands its records out once: each response goes to the spool before it is
    printed, so the next `smsledger sync` loads it. A pull that broke is not retried (records may
    have left the queue); an answer of RequestLimitExceeded handed nothing out, so it is retried
    after a backoff, as other calls are."""
    from pipelines.spool import INDETERMINATE, Spool
    from pipelines.tencent.envelope import parse_response

    limit = params.get("Limit", A.MAX_LIMIT)
    if type(limit) is not int or not 1 <= limit <= A.MAX_LIMIT:
        raise CommandError(f"Limit must be a whole number from 1 to {A.MAX_LIMIT}, got {orjson.dumps(limit).decode()}")
    spool = Spool(settings.spool_dir)
    attempt = 0
    while True:
        attempt += 1
        raw = client.pull_queue_raw(action, limit)
        if raw.indeterminate:
            spool.write(action, (raw.failure or "unknown failure").encode(), kind=INDETERMINATE,
                        sdk_app_id=client.sdk_app_id)
            raise CommandError(f"{action}: {raw.failure}; records may have left the queue (counted in the spool; "
                               "gap filling looks for them)")
        spooled = spool.write(action, raw.body, sdk_app_id=client.sdk_app_id)
        try:
            response = parse_response(action, raw.body)
        except TencentCloudError as exc:
            if not exc.code.startswith("RequestLimitExceeded") or attempt == client.retry.max_attempts:
                raise
            client.backoff(attempt)
            continue
        print(f"spooled to {spooled.path}; `smsledger sync` loads it", file=sys.stderr)
        return response


def _cmd_demo(ns: argparse.Namespace) -> int:
    from pipelines.app.demo import run_demo

    run_demo(Settings.from_env(require_credentials=False), messages_per_day=ns.messages_per_day, days=ns.days)
    return 0


def _cmd_simulator(ns: argparse.Namespace) -> int:
    from pipelines.simulator.config import config_from_args
    from pipelines.simulator.server import serve

    serve(config_from_args(ns))
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _cmd_sync(ns: argparse.Namespace) -> int:
    from pipelines.app.runner import check_days, last_complete_day, run_days, run_drain

    settings = Settings.from_env()
    if ns.date:
        first = last = ns.date
    else:
        last = last_complete_day(settings)
        first = max(settings.start_date, last - dt.timedelta(days=settings.rematerialize_days))
    check_days(settings, first, last)  # before the drain: queue records are handed out once
    outcomes = []
    # A drain that failed leaves what it spooled for the next load; the days are still built from
    # what the warehouse holds, unless the provider cannot be reached at all.
    drain_error = None
    try:
        outcomes.append(run_drain(settings, time_budget_seconds=ns.time_budget))
    except RunFailedError as exc:
        if exc.cause == "unreachable":
            raise
        drain_error = exc
        print(f"smsledger sync: {exc}; materializing the days from what the warehouse holds", file=sys.stderr)
    outcomes.append(run_days(settings, first, last))
    if drain_error is not None:
        raise drain_error
    return _report(ns.command, outcomes)


def _cmd_backfill(ns: argparse.Namespace) -> int:
    from pipelines.app.runner import check_days, check_writers, run_days, run_drain

    settings = Settings.from_env()
    check_days(settings, ns.start, ns.end)  # before the drain: queue records are handed out once
    check_writers(settings, ns.writers)
    outcomes = []
    if not ns.skip_drain:
        outcomes.append(run_drain(settings, time_budget_seconds=ns.time_budget))
    outcomes.append(run_days(settings, ns.start, ns.end, writers=ns.writers))
    return _report(ns.command, outcomes)


def _report(command: str, outcomes: list) -> int:
    """One line per failed or warned check; exit status 1 when a check of severity ERROR failed."""
    lines = [line for outcome in outcomes for line in outcome.lines()]
    for line in lines:
        print(f"smsledger {command}: {line}", file=sys.stderr)
    return 1 if any(outcome.errors for outcome in outcomes) else 0


def _cmd_sql(ns: argparse.Namespace) -> int:
    from pipelines.app.query import run_query

    settings = Settings.from_env(require_credentials=False)
    try:
        run_query(settings.warehouse, ns.query, ns.format, out=sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (head, less) has what it wanted; no traceback when Python flushes at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _cmd_lake_maintenance(ns: argparse.Namespace) -> int:
    from pipelines.config import is_lake
    from pipelines.warehouse.db import connect
    from pipelines.warehouse.maintenance import maintain

    settings = Settings.from_env(require_credentials=False)
    if ns.retention_days is not None:
        settings = dataclasses.replace(settings, lake_snapshot_retention_days=ns.retention_days)
    if not is_lake(settings.warehouse) and not Path(settings.warehouse).exists():
        print(f"no warehouse at {settings.warehouse}: nothing to do")
        return 0
    con = connect(settings.warehouse)
    try:
        report = maintain(con, retention=settings.lake_snapshot_retention, grace=dt.timedelta(hours=ns.grace_hours))
    finally:
        con.close()
    for line in report.lines():
        print(line)
    return 0


def _not_negative(text: str) -> float:
    """A number of days or hours, 0 or more, below a century (beyond is a typo that would overflow)."""
    value = retention_amount(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to {MAX_RETENTION_DAYS}")
    return value


def _cmd_receive(ns: argparse.Namespace) -> int:
    from pipelines.app.receive import serve

    serve(Settings.from_env(require_credentials=False), ns.host, ns.port)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smsledger")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsledger", description=__doc__)
    parser.add_argument("--version", action="version", version=f"smsledger {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="the main job on the embedded simulator, with a summary")
    demo.add_argument("--messages-per-day", type=int, default=20_000)
    demo.add_argument("--days", type=int, default=7)
    demo.set_defaults(run=_cmd_demo)

    api = sub.add_parser("api", help="one signed API call; prints the Response object as JSON")
    api.add_argument("action", help="e.g. PullSmsSendStatus")
    api.add_argument("--json", help="the request body, a JSON object")
    api.set_defaults(run=_cmd_api)

    sync = sub.add_parser("sync", help="drain the queues, then materialize the day (default: yesterday and the lookback)")
    sync.add_argument("--date", type=_date, help="one day to materialize, YYYY-MM-DD")
    sync.add_argument("--time-budget", type=float, default=300.0, help="seconds the queue drain may take (default 300)")
    sync.set_defaults(run=_cmd_sync)

    backfill = sub.add_parser("backfill", help="materialize a window of daily partitions in one run")
    backfill.add_argument("--start", type=_date, required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--end", type=_date, required=True, help="last day, YYYY-MM-DD (inclusive)")
    backfill.add_argument("--skip-drain", action="store_true", help="do not drain the queues first")
    backfill.add_argument("--time-budget", type=float, default=300.0, help="seconds the queue drain may take")
    backfill.add_argument("--writers", type=int, default=1,
                          help="on a lake: runs that build parts of the days at once (default 1: one run)")
    backfill.set_defaults(run=_cmd_backfill)

    sql = sub.add_parser("sql", help="read-only SQL on the warehouse (works while a sync runs)")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(run=_cmd_sql)

    maintenance = sub.add_parser(
        "lake-maintenance", help="compact the warehouse: on a lake merge small files, expire old snapshots and delete "
                                 "files none references; on a DuckDB file CHECKPOINT (safe while other commands run)")
    maintenance.add_argument("--retention-days", type=_not_negative,
                             help="expire snapshots older than this (default SMSLEDGER_LAKE_SNAPSHOT_RETENTION_DAYS, 7)")
    maintenance.add_argument("--grace-hours", type=_not_negative, default=24.0,
                             help="delete unreferenced files only once they are this old (default 24: readers of old "
                                  "snapshots and writers not yet committed keep theirs)")
    maintenance.set_defaults(run=_cmd_lake_maintenance)

    receive = sub.add_parser("receive", help="receive Tencent's status and reply push callbacks into the spool")
    receive.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, behind a proxy)")
    receive.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    receive.set_defaults(run=_cmd_receive)

    sim = sub.add_parser("simulator", help="serve the simulated Tencent Cloud SMS API until stopped")
    from pipelines.simulator.config import add_arguments

    add_arguments(sim)
    sim.set_defaults(run=_cmd_simulator)
    return parser


def load_dotenv(path: Path = Path(".env")) -> None:
    """Variables of a `.env` file in the current folder, as `dagster dev` reads them; the
    environment wins over the file."""
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if value:
            os.environ.setdefault(key.strip(), value)


def _stop_on_signals(command: str) -> None:
    """SIGINT (Ctrl-C) and SIGTERM (a service manager, `timeout`, `kill`) stop the command at
    once, whatever it is doing or waiting for; a run in progress is marked failed first."""
    def handler(signum: int, frame: object) -> None:
        stop(command)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    load_dotenv()
    _stop_on_signals(ns.command)
    run: Callable[[argparse.Namespace], int] = ns.run
    try:
        return run(ns)
    except (CommandError, ConfigError, TencentCloudError, TransportError, WindowTooOldError, WarehouseBusyError,
            ValueError) as exc:
        print(f"smsledger {ns.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"smsledger {ns.command}: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
