"""`smsledger`: the command line. Each command exits 0 on success and, on failure, prints one line
a person can act on (the provider's code and message, the variable to set, the bad file)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import orjson

from pipelines.config import ConfigError, Settings
from pipelines.tencent import actions as A
from pipelines.tencent.errors import TencentCloudError, TransportError, WindowTooOldError

# Actions whose request carries the application id; `smsledger api` fills it in when omitted.
_APP_ID_ACTIONS = frozenset(A.ALL_ACTIONS) - {A.DESCRIBE_PHONE_NUMBER_INFO, A.DESCRIBE_SIGN_LIST, A.DESCRIBE_TEMPLATE_LIST}


class CommandError(Exception):
    """A failure to report as one line and exit status 1."""


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
    with SmsApiClient.from_settings(settings) as client:
        response = client.call(action, params)
    sys.stdout.buffer.write(orjson.dumps(response, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _cmd_simulator(ns: argparse.Namespace) -> int:
    from pipelines.simulator.server import config_from_args, serve

    serve(config_from_args(ns))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsledger", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    api = sub.add_parser("api", help="one signed API call; prints the Response object as JSON")
    api.add_argument("action", help="e.g. PullSmsSendStatus")
    api.add_argument("--json", help="the request body, a JSON object")
    api.set_defaults(run=_cmd_api)

    sim = sub.add_parser("simulator", help="serve the simulated Tencent Cloud SMS API until stopped")
    from pipelines.simulator.server import add_arguments

    add_arguments(sim)
    sim.set_defaults(run=_cmd_simulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = ns.run
    try:
        return run(ns)
    except (CommandError, ConfigError, TencentCloudError, TransportError, WindowTooOldError) as exc:
        print(f"smsledger {ns.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
