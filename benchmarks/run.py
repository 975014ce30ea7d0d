"""smsledger's benchmarks: `python -m benchmarks.run [--quick] [--only NAME ...]` (`make bench`).

Writes benchmarks/out/report.md and benchmarks/out/report.json: the machine (cores, Python,
package versions, load average), then for each benchmark what was measured, how, the repetitions
and every metric's median, min and max. Each benchmark runs in a fresh Python process; the report
is rewritten after each one, so an interrupted run leaves the finished ones.

Benchmarks (in this order):
  end_to_end_vs_references_1m, _10m               smsledger end to end beside dlt and bare polars (benchmarks/compare.py)
  normalize_and_load_1m, normalize_and_load_10m   spool -> raw -> staging throughput and peak RSS
  drain_vs_rate_limit                             drain_queue at the documented 100 requests/s
  client_pulls_per_second                         SmsApiClient pulls/s, limits off, vs the server's capacity
  metric_rebuild (metric_rebuild_1d, _30d)        all marts for 1 and 30 days of 20,000 messages/day
  demo_wall_time                                  `smsledger demo`, cold and re-run
  normalize_bench                                 benchmarks/normalize_bench.py run(1_000_000)

--quick skips the 10M cases and runs the demo twice instead of four times. Scratch data
(about 6 GB for the 10M receipts) goes to a new folder benchmarks/out/work/run-DATE-PID/, removed
at the end unless --keep-data; `--work DIR` uses DIR instead, keeps it, and reuses receipts generated
there before. A full run takes about an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.cases import ALIASES, BENCHMARKS, REPO, Context

OUT = REPO / "benchmarks" / "out"
PACKAGES = ("duckdb", "polars", "httpx", "orjson", "phonenumbers", "dagster", "dagster-duckdb", "uvloop", "pyarrow",
            "smsledger")


def _log(message: str) -> None:
    print(f"[bench {dt.datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def _cpu_times() -> dict[str, int]:
    """System-wide jiffies from /proc/stat: busy (not idle or iowait), steal, total."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    total = sum(fields[:8])
    return {"busy": total - idle - iowait, "steal": steal, "total": total}


def code_state() -> dict:
    """HEAD and a digest of the code under test (pipelines/, assets/, sql/ as on disk): others
    commit while a long run goes on, so each benchmark records what it ran against."""
    import hashlib

    digest = hashlib.sha256()
    for folder in ("pipelines", "assets", "sql"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"commit": commit, "code_digest": digest.hexdigest()[:12]}


def machine_facts() -> dict:
    cpu_model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = {line.split(":")[0]: int(line.split()[1]) for line in f}
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    disk = shutil.disk_usage(OUT if OUT.exists() else REPO)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "mem_total_gib": round(mem.get("MemTotal", 0) / 2**20, 1),
        "mem_available_gib": round(mem.get("MemAvailable", 0) / 2**20, 1),
        "swap_total_gib": round(mem.get("SwapTotal", 0) / 2**20, 1),
        "disk_free_gib": round(disk.free / 2**30, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "packages": versions,
        "git_commit": commit,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- the report -------------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ratio":
        return f"{value:.3f}"
    if float(value).is_integer():
        return f"{value:,.0f}"
    if unit in ("rows/s", "records/s", "pulls/s") or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_markdown(report: dict) -> str:
    m = report["machine"]
    out = [
        "# smsledger benchmarks",
        "",
        f"Generated by `{report['command']}` on {m['date']} (commit {m['git_commit'] or 'unknown'}); "
        f"total wall time {report.get('total_seconds', 0) / 60:.1f} min"
        + ("" if report.get("finished") else " so far (run not finished)") + ".",
        "",
        "## Machine",
        "",
        "| Fact | Value |",
        "| --- | --- |",
        f"| CPU | {m['cpus_usable']} usable of {m['cpu_count']} cores, {m['cpu_model']} |",
        f"| Memory | {m['mem_total_gib']} GiB total, {m['mem_available_gib']} GiB available at start, swap {m['swap_total_gib']} GiB |",
        f"| Kernel, Python | Linux {m['kernel']}, Python {m['python']} |",
        "| Packages | " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) + " |",
        f"| Load average at start (1, 5, 15 min) | {', '.join(str(x) for x in m['load_average_start'])} |",
    ]
    if "load_average_end" in report:
        out.append(f"| Load average at end | {', '.join(str(x) for x in report['load_average_end'])} |")
    out += ["", "The machine is shared: each benchmark lists the load average around it and the share of the "
            "machine's CPU time that other processes used meanwhile.", ""]
    digests = {b["environment"].get("code_digest") for b in report["benchmarks"].values()}
    if len(digests) > 1:
        out += ["**The code under test changed during this run** (others committed meanwhile): each benchmark "
                "below names the commit and code digest it ran against.", ""]
    out += ["## Summary", "", "| Benchmark | Repetitions | Headline (median) | Wall time |", "| --- | --- | --- | --- |"]
    for name, b in report["benchmarks"].items():
        if "error" in b:
            out.append(f"| {name} | - | FAILED: {b['error'].splitlines()[0][:120]} | {b['wall_seconds']:.0f}s |")
            continue
        head = b["metrics"][0] if b.get("metrics") else None
        headline = f"{head['name']}: {_fmt(head.get('median'), head['unit'])} {head['unit']}" if head else "-"
        out.append(f"| {name} | {b.get('repetitions')} | {headline} | {b['wall_seconds']:.0f}s |")
    out.append("")
    for name, b in report["benchmarks"].items():
        out += [f"## {b.get('title', name)}", ""]
        env = b["environment"]
        out.append(f"Load average before / after: {', '.join(str(x) for x in env['load_before'])} / "
                   f"{', '.join(str(x) for x in env['load_after'])}; other processes used "
                   f"{env['others_cpu_share']:.0%} of the machine's CPU time during it (steal {env['steal_share']:.0%}); "
                   f"wall time {b['wall_seconds']:.0f}s. Code: commit {env.get('commit')}, digest of "
                   f"pipelines/, assets/, sql/ {env.get('code_digest')}"
                   + (" (**changed while it ran**)." if env.get("code_changed_during") else "."))
        out.append("")
        if "error" in b:
            out += ["**Failed:**", "", "```", b["error"], "```", ""]
            continue
        out += [f"**What:** {b['what']}", "", f"**How:** {b['how']}", "", f"**Repetitions:** {b['repetitions']}", ""]
        out += ["| Metric | Unit | n | Median | Min | Max |", "| --- | --- | --- | --- | --- | --- |"]
        for mt in b["metrics"]:
            note = f" ({mt['note']})" if mt.get("note") else ""
            out.append(f"| {mt['name']}{note} | {mt['unit']} | {mt['n']} | {_fmt(mt.get('median'), mt['unit'])} | "
                       f"{_fmt(mt.get('min'), mt['unit'])} | {_fmt(mt.get('max'), mt['unit'])} |")
        out.append("")
        for note in b.get("notes", []):
            out.append(f"- {note}")
        if b.get("notes"):
            out.append("")
    return "\n".join(out) + "\n"


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "report.md").write_text(render_markdown(report))


# -- running ----------------------------------------------------------------------------------------


def run_child(name: str, ns: argparse.Namespace) -> dict:
    """One benchmark in a fresh interpreter; returns its result (or the error) plus the conditions."""
    result_path = ns.work / f"{name}.result.json"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.run", "--child", name, "--result", str(result_path),
           "--work", str(ns.work)] + (["--quick"] if ns.quick else [])
    code = code_state()
    load_before = [round(x, 2) for x in os.getloadavg()]
    cpu_before = _cpu_times()
    ours_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    ours_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    code_after = code_state()["code_digest"]
    cpu_after = _cpu_times()
    ticks = os.sysconf("SC_CLK_TCK")
    ours = (ours_after.ru_utime + ours_after.ru_stime) - (ours_before.ru_utime + ours_before.ru_stime)
    total = (cpu_after["total"] - cpu_before["total"]) / ticks
    busy = (cpu_after["busy"] - cpu_before["busy"]) / ticks
    steal = (cpu_after["steal"] - cpu_before["steal"]) / ticks
    environment = {
        "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
        "machine_cpu_seconds": total, "machine_busy_cpu_seconds": busy, "our_cpu_seconds": ours,
        "others_cpu_share": max(0.0, (busy - ours) / total) if total else 0.0,
        "steal_share": steal / total if total else 0.0,
        **code,
        "code_changed_during": code_after != code["code_digest"],
    }
    if proc.stderr:
        sys.stderr.write(proc.stderr[-20000:])
    if proc.returncode == 0 and result_path.exists():
        result = json.loads(result_path.read_text())
    else:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:]) if proc.stderr else ""
        result = {"title": name, "error": f"exit status {proc.returncode}\n{tail}"}
    result["wall_seconds"] = wall
    result["environment"] = environment
    return result


def child_main(ns: argparse.Namespace) -> None:
    ctx = Context(work=ns.work, quick=ns.quick, log=_log)
    ns.work.mkdir(parents=True, exist_ok=True)
    result = BENCHMARKS[ns.child](ctx)
    ns.result.write_text(json.dumps(result, default=str))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip normalize_and_load_10m; two demo runs")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--out", type=Path, default=OUT, help="where report.md and report.json go (default benchmarks/out)")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder, kept afterwards; generated receipts found there are reused "
                             "(default: a new folder OUT/work/run-DATE-PID, removed at the end)")
    parser.add_argument("--keep-data", action="store_true", help="keep the default scratch folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.child:
        child_main(ns)
        return

    names = list(BENCHMARKS)
    if ns.only:
        wanted = []
        for name in ns.only:
            name = ALIASES.get(name, name)
            if name not in BENCHMARKS:
                parser.error(f"unknown benchmark {name!r}; one of: {', '.join([*BENCHMARKS, *ALIASES])}")
            if name not in wanted:
                wanted.append(name)
        names = [n for n in names if n in wanted]
    if ns.quick:
        names = [n for n in names if not n.endswith("_10m")]

    ns.out.mkdir(parents=True, exist_ok=True)
    # A folder of this run's own unless --work names one: concurrent runs must not share scratch
    # space (one would delete the other's spool). Only a folder made here is removed at the end.
    own_work = ns.work is None
    if own_work:
        ns.work = ns.out / "work" / f"run-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    ns.work.mkdir(parents=True, exist_ok=True)
    report = {"command": "python -m benchmarks.run" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
              "machine": machine_facts(), "benchmarks": {}, "finished": False}
    _log(f"machine: {report['machine']['cpus_usable']} cores, load average {report['machine']['load_average_start']}; "
         f"running {', '.join(names)}")
    started = time.perf_counter()
    try:
        for name in names:
            _log(f"--- {name}")
            report["benchmarks"][name] = result = run_child(name, ns)
            report["total_seconds"] = time.perf_counter() - started
            write_report(report, ns.out)
            _log(f"--- {name}: {'FAILED' if 'error' in result else 'done'} in {result['wall_seconds']:.0f}s")
    finally:
        report["total_seconds"] = time.perf_counter() - started
        report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        report["finished"] = len(report["benchmarks"]) == len(names)
        write_report(report, ns.out)
        if own_work and not ns.keep_data:
            shutil.rmtree(ns.work, ignore_errors=True)
    _log(f"report: {ns.out / 'report.md'} ({report['total_seconds'] / 60:.1f} min)")
    if any("error" in b for b in report["benchmarks"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
