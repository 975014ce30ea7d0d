"""The price table (SMSLEDGER_PRICES): what a billable segment costs, by region, message type and
date, so that `Fee` (segments) becomes money in the marts.

A CSV with a header and, per line, `region` (ISO 3166 code of the recipient, e.g. CN, ID),
`message_type` (`mainland` for numbers of mainland China, `international` for the others, as
Tencent prices them), `unit_price` (a decimal, per segment), `currency` (ISO 4217, e.g. CNY) and
`valid_from` (YYYY-MM-DD: the price applies to messages sent that day and after, until a later
row of the same region and type). A message costs `fee` x the unit price of its region and type
in force on its send day; without a matching row its cost is null (never a guess).

The file is the user's: it is read whole at every run, and refused, naming the line and what is
wrong with it, when any line is not a price; then nothing of it is used.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import re
from pathlib import Path

import duckdb
import polars as pl

from pipelines.config import ConfigError
from pipelines.warehouse.db import insert_frame, transaction

COLUMNS = ("region", "message_type", "unit_price", "currency", "valid_from")
MESSAGE_TYPES = ("mainland", "international")
_REGION = re.compile(r"[A-Z]{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")


class PriceTableError(ConfigError):
    """The price table cannot be used; the message names the file, the line and the problem."""


def read_prices(path: Path | str) -> pl.DataFrame:
    """Every price of the file, checked."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceTableError(f"SMSLEDGER_PRICES={path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    reader = csv.reader(text.splitlines())
    header = [name.strip().lower() for name in next(reader, [])]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise PriceTableError(f"SMSLEDGER_PRICES={path}: line 1: the header has no {', '.join(missing)} column "
                              f"(expected {','.join(COLUMNS)})")
    at = {name: header.index(name) for name in COLUMNS}
    rows: dict[str, list] = {name: [] for name in COLUMNS}
    seen: dict[tuple, int] = {}
    for line, record in enumerate(reader, start=2):
        if not any(field.strip() for field in record):
            continue
        if len(record) != len(header):
            raise PriceTableError(f"SMSLEDGER_PRICES={path}: line {line}: {len(record)} fields where the header has "
                                  f"{len(header)}")
        value = {name: record[at[name]].strip() for name in COLUMNS}
        region, kind = value["region"].upper(), value["message_type"].lower()
        if not _REGION.fullmatch(region):
            raise PriceTableError(f"SMSLEDGER_PRICES={path}: line {line}: region {value['region']!r} is not an ISO "
                                  "3166 code such as CN or ID")
        if kind not in MESSAGE_TYPES:
            raise PriceTableError(f"SMSLEDGER_PRICES={path}: line {line}: message_type {value['message_type']!r} is "
                                  f"not one of {', '.join(MESSAGE_TYPES)}")
        if (kind == "mainland") != (region == "CN"):
            raise PriceTableError(f"SMSLEDGER_PRICES={path}: line {line}: region {region} is not "
                                  f"{'mainland China' if kind == 'mainland' else 'outside mainland China'}; "
                                  "mainland prices are for CN, international prices for the other regions")
        try:
            price = decimal.Decimal(value["unit_price"])
        except decimal.InvalidOperation:
            price = None
        if price is None or not price.is_finite() or price < 0:
            raise PriceTableError(f"SMSLEDGER_PRICES={path}: line {line}: unit_price {value['unit_price']!r} is not "
                                  "a price (a decimal of 0 or more)")
        currency = value["currency"].upper()
        if not _CURRENCY.fullmatch(currency):
            raise PriceTableError(f"SMSLEDGER_PRICES={path}: line {line}: currency {value['currency']!r} is not an "
                                  "ISO 4217 code such as CNY or USD")
        try:
            valid_from = dt.date.fromisoformat(value["valid_from"])
        except ValueError:
            raise PriceTableError(f"SMSLEDGER_PRICES={path}: line {line}: valid_from {value['valid_from']!r} is not "
                                  "a date (YYYY-MM-DD)") from None
        key = (region, kind, valid_from)
        if key in seen:
            raise PriceTableError(f"SMSLEDGER_PRICES={path}: line {line}: a second price for {region} {kind} from "
                                  f"{valid_from} (the first is on line {seen[key]})")
        seen[key] = line
        for name, item in zip(COLUMNS, (region, kind, price, currency, valid_from), strict=True):
            rows[name].append(item)
    return pl.DataFrame(rows, schema={"region": pl.Utf8, "message_type": pl.Utf8, "unit_price": pl.Decimal(18, 6),
                                      "currency": pl.Utf8, "valid_from": pl.Date})


def store_prices(con: duckdb.DuckDBPyConnection, prices: pl.DataFrame | None) -> int:
    """Replace raw.prices with the file's prices (none without a file); returns how many."""
    with transaction(con):
        con.execute("delete from raw.prices")
        if prices is not None:
            insert_frame(con, "raw.prices", prices)
    return 0 if prices is None else prices.height
