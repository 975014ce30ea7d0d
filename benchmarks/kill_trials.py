"""Operator trials: `smsledger sync` killed with SIGKILL in each phase, then synced again; and a
fault storm. Prints a markdown table of what happened, for the report and the closing notes.

    python -m benchmarks.kill_trials [--trials 25] [--messages-per-day 4000] [--storm]

Each trial starts `smsledger sync` as a user would (a subprocess of the CLI, against a simulator
whose clock runs, with a few broken pulls so gap filling has work), waits until the phase it aims
at has begun (read from the command's own step lines), waits a random moment more and kills it
with SIGKILL. The next sync runs to its end; its exit status, its time and whether it released the
dead run are recorded. At the end every record the simulator handed out in a response that reached
the spool must be in raw exactly once: lost and duplicated records are counted against its ground
truth.

`--storm`: one sync against every fault at once (5xx, slow responses, resets, truncated bodies,
internal errors, throttling, dirty records), its outcome lines and time.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from support import Running  # noqa: E402  (the tests' helper for a command run as a user runs it)

# The phase a trial aims at, and the line of the sync's output after which it has begun.
PHASES = {
    "drain": "draining the queues",
    "load": "done    spool/queue_pages",
    "gap fill": "done    raw/queue_records",
    "statistics": "building ",
    "staging": "done    raw/statistics_hourly",
    "marts": "done    staging/messages",
}
STORM = ("*:http500=0.03,http502=0.02,slow=0.02,reset=0.03,truncate=0.03,internal=0.03,ratelimit=0.03,dirty=0.1;"
         "slow_seconds=4")


def environment(root: Path, url: str) -> dict[str, str]:
    home = root / "dagster"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SMSLEDGER_", "TENCENTCLOUD_", "DAGSTER_")) and not k.lower().endswith("_proxy")}
    env.update({"SMSLEDGER_ENDPOINT": url, "SMSLEDGER_WAREHOUSE": str(root / "w.duckdb"),
                "SMSLEDGER_SPOOL_DIR": str(root / "spool"), "SMSLEDGER_SENDS_PATH": str(root / "sim" / "sends.ndjson"),
                "SMSLEDGER_CONVERSIONS_PATH": str(root / "sim" / "conversions.ndjson"),
                "SMSLEDGER_START_DATE": "2026-01-01", "DAGSTER_HOME": str(home)})
    return env


def kill_trials(trials: int, messages_per_day: int, seed: int) -> None:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="smsledger-kills-"))
    config = SimulatorConfig(port=0, seed=seed, days=3, messages_per_day=messages_per_day, out_dir=root / "sim",
                             faults="PullSmsSendStatus:reset=0.01,truncate=0.01")
    rows = []
    with Simulator(config) as sim:
        env = environment(root, sim.url)
        phases = list(PHASES)
        for trial in range(1, trials + 1):
            phase = phases[(trial - 1) % len(phases)]
            victim = Running(env, "sync")
            reached = victim.wait_for(PHASES[phase], timeout=600)
            delay = rng.uniform(0.0, 2.5)
            time.sleep(delay)
            killed = victim.process.poll() is None
            if killed:
                victim.process.send_signal(signal.SIGKILL)
            victim.finish(timeout=60)
            after = Running(env, "sync")
            code = after.finish(timeout=1800)
            seconds = after.seconds
            released = any("released the warehouse from run" in line for line in after.lines)
            rows.append((trial, phase if reached else f"{phase} (not reached)", f"{delay:.1f}", killed, code,
                         f"{seconds:.0f}", released))
            print(f"trial {trial}: {rows[-1]}", file=sys.stderr, flush=True)
        handed = [h for h in sim.state.truth_handed_out() if h["action"] == "PullSmsSendStatus"]
    con = duckdb.connect(str(root / "w.duckdb"), read_only=True)
    loaded_requests = {r for (r,) in con.execute("select request_id from raw.batches where outcome = 'ok'").fetchall()}
    rows_, distinct = con.execute("select count(*), count(distinct record_key) from raw.send_status").fetchone()
    keys = {k for (k,) in con.execute("select record_key from raw.send_status").fetchall()}
    con.close()
    spooled = {f"{r['SerialNo']}|{r['ReportStatus']}|{r['UserReceiveTime']}"
               for h in handed if h["request_id"] in loaded_requests for r in h["records"]}
    lost = len(spooled - keys)
    print("| trial | killed during | after (s) | killed | next sync exit | next sync (s) | released the dead run |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    print(f"\n{sum(1 for r in rows if r[3])} kills in {trials} trials; every next sync exited "
          f"{sorted({r[4] for r in rows})}; receipts of spooled responses missing from raw: {lost} of {len(spooled)}; "
          f"duplicated receipts in raw: {rows_ - distinct} ({rows_} rows)")


def storm(messages_per_day: int, seed: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="smsledger-storm-"))
    config = SimulatorConfig(port=0, seed=seed, days=3, messages_per_day=messages_per_day, out_dir=root / "sim",
                             faults=STORM)
    with Simulator(config) as sim:
        sync = Running(environment(root, sim.url), "sync", "--time-budget", "120")
        code = sync.finish(timeout=3600)
        seconds = sync.seconds
    print(f"fault storm ({STORM}): exit {code} after {seconds:.0f}s; its last lines:")
    for line in sync.lines[-25:]:
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--messages-per-day", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--storm", action="store_true", help="the fault storm instead of the kill trials")
    ns = parser.parse_args()
    if ns.storm:
        storm(ns.messages_per_day, ns.seed)
    else:
        kill_trials(ns.trials, ns.messages_per_day, ns.seed)


if __name__ == "__main__":
    main()
