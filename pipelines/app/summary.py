"""The demo's summary: per-day delivery and conversion rates, top failure reasons, reconciliation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipelines.warehouse.db import connect, sql_text


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:5.1f}%"


def summary(warehouse: Path, first: dt.date, last: dt.date, timezone: str = "UTC") -> str:
    con = connect(warehouse, read_only=True)
    try:
        params = {"first_day": first, "last_day": last}
        days = con.execute(sql_text("reports/summary_days"), params).fetchall()
        reasons = con.execute(sql_text("reports/summary_failure_reasons"), params).fetchall()
        recon = con.execute(sql_text("reports/summary_reconciliation"), params).fetchall()
    finally:
        con.close()
    lines = [
        "",
        f"Delivery and conversion, {first} .. {last} (days in {timezone})",
        "  day          submitted  delivered   failed  pending  delivery  conversion  replies  opt-outs",
    ]
    for day, submitted, delivered, failed, pending, rate, conversions, conv_rate, replies, opt_outs in days:
        lines.append(
            f"  {day}  {submitted or 0:>9,}  {delivered:>9,}  {failed:>7,}  {pending or 0:>7,}   {_pct(rate)}"
            f"      {_pct(conv_rate)}  {replies:>7,}  {opt_outs:>8,}"
        )
    lines += ["", "Top failure reasons (by country)"]
    lines += [f"  {description or '(none)':<24} {iso_code or '??':<3} {failed:>7,}" for description, iso_code, failed in reasons]
    mismatched = [row for row in recon if any(row[2:])]
    several_apps = len({row[1] for row in recon}) > 1
    lines += ["", "Reconciliation with the provider's statistics (ours - provider: submitted, receipts, delivered, failed)"]
    if not recon:
        lines.append("  no provider statistics for these days")
    elif not mismatched:
        lines.append(f"  all {len({row[0] for row in recon})} days match the provider exactly")
    else:
        lines += [f"  {day}{f' {app}' if several_apps else ''}: {d_sub:+,} {d_rec:+,} {d_del:+,} {d_fail:+,}"
                  for day, app, d_sub, d_rec, d_del, d_fail in mismatched]
    return "\n".join(lines) + "\n"
