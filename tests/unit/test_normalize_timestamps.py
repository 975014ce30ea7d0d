"""Timestamp normalization: unix-time flags, provider hour strings, and properties."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.normalize.timestamps import UTC_DATETIME, provider_hour_string, unix_seconds_to_utc

PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW_SECONDS = int(NOW.timestamp())
Y2K = 946684800
FLAGS = {None, "zero", "negative", "milliseconds", "microseconds", "far_future", "not_a_number", "before_2000"}


def utc(*args: int, microsecond: int = 0) -> dt.datetime:
    return dt.datetime(*args, microsecond=microsecond, tzinfo=dt.UTC)


def convert(values: list, dtype: pl.DataType | None = None, **kwargs) -> list[tuple]:
    frame = pl.DataFrame({"t": values}, schema={"t": dtype} if dtype is not None else None)
    out = unix_seconds_to_utc(frame, "t", out="ts", flag="flag", now=NOW, **kwargs)
    assert out.schema["ts"] == UTC_DATETIME and out.schema["flag"] == pl.Utf8
    return out.select("ts", "flag").rows()


# ---------------------------------------------------------------------------------------------
# unix_seconds_to_utc


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1620734188, (utc(2021, 5, 11, 11, 56, 28), None), id="seconds"),
        pytest.param(1620734188123, (utc(2021, 5, 11, 11, 56, 28, microsecond=123000), "milliseconds"), id="ms"),
        pytest.param(1620734188123456, (utc(2021, 5, 11, 11, 56, 28, microsecond=123456), "microseconds"), id="us"),
        pytest.param(0, (None, "zero"), id="zero"),
        pytest.param(-1620734188, (None, "negative"), id="negative"),
        pytest.param(-(2**63), (None, "negative"), id="int64-min"),
        pytest.param(2**63 - 1, (None, "far_future"), id="int64-max"),
        pytest.param(NOW_SECONDS + 86400, (utc(2026, 1, 2), None), id="now-plus-max-future"),
        pytest.param(NOW_SECONDS + 86401, (None, "far_future"), id="past-max-future"),
        pytest.param(99_999_999_999, (None, "far_future"), id="largest-seconds-is-year-5138"),
        pytest.param(Y2K, (utc(2000, 1, 1), None), id="y2k"),
        pytest.param(Y2K - 1, (None, "before_2000"), id="before-y2k"),
        pytest.param(1, (None, "before_2000"), id="one"),
        pytest.param(100_000_000_000, (None, "before_2000"), id="smallest-ms-is-1973"),
        pytest.param(100_000_000_000_000, (None, "before_2000"), id="smallest-us-is-1973"),
        pytest.param(None, (None, None), id="null"),
    ],
)
def test_integer_values(value, expected):
    assert convert([value], pl.Int64) == [expected]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("1620734188", (utc(2021, 5, 11, 11, 56, 28), None), id="digits"),
        pytest.param(" 1620734188\n", (utc(2021, 5, 11, 11, 56, 28), None), id="whitespace"),
        pytest.param("1620734188.5", (utc(2021, 5, 11, 11, 56, 28, microsecond=500000), None), id="decimal"),
        pytest.param("1620734188123", (utc(2021, 5, 11, 11, 56, 28, microsecond=123000), "milliseconds"), id="ms"),
        pytest.param("0", (None, "zero"), id="zero"),
        pytest.param("-5", (None, "negative"), id="negative"),
        pytest.param("abc", (None, "not_a_number"), id="junk"),
        pytest.param("2021-05-11 11:56:28", (None, "not_a_number"), id="datetime-text"),
        pytest.param("nan", (None, "not_a_number"), id="nan"),
        pytest.param("inf", (None, "not_a_number"), id="inf"),
        pytest.param("1" * 40, (None, "far_future"), id="beyond-int64"),
        pytest.param("", (None, None), id="blank-is-missing"),
        pytest.param("   ", (None, None), id="spaces-are-missing"),
        pytest.param(None, (None, None), id="null"),
    ],
)
def test_string_values(value, expected):
    assert convert([value], pl.Utf8) == [expected]


def test_float_and_null_columns():
    assert convert([1620734188.25, float("nan"), None], pl.Float64) == [
        (utc(2021, 5, 11, 11, 56, 28, microsecond=250000), None),
        (None, "not_a_number"),
        (None, None),
    ]
    assert convert([None, None], pl.Null) == [(None, None), (None, None)]


def test_max_future_is_configurable():
    assert convert([NOW_SECONDS + 3600], pl.Int64, max_future=dt.timedelta(minutes=5)) == [(None, "far_future")]


def test_now_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        unix_seconds_to_utc(pl.DataFrame({"t": [1]}), "t", out="ts", flag="f", now=dt.datetime(2026, 1, 1))


def test_unsupported_dtype_is_rejected():
    with pytest.raises(TypeError, match="unix times"):
        unix_seconds_to_utc(pl.DataFrame({"t": [True]}), "t", out="ts", flag="f", now=NOW)


def test_frame_contract():
    frame = pl.DataFrame({"t": [1620734188, 0, None, 1620734188123], "k": [1, 2, 3, 4]})
    out = unix_seconds_to_utc(frame, "t", out="ts", flag="flag", now=NOW)
    assert out.columns == ["t", "k", "ts", "flag"]
    assert out.select("t", "k").equals(frame)
    assert out["flag"].to_list() == [None, "zero", None, "milliseconds"]
    empty = unix_seconds_to_utc(frame.head(0), "t", out="ts", flag="flag", now=NOW)
    assert empty.height == 0 and empty.schema["ts"] == UTC_DATETIME
    lazy = unix_seconds_to_utc(frame.lazy(), "t", out="ts", flag="flag", now=NOW)
    assert isinstance(lazy, pl.LazyFrame) and lazy.collect().equals(out)
    in_place = unix_seconds_to_utc(frame, "t", out="t", flag="flag", now=NOW)
    assert in_place["t"].to_list() == out["ts"].to_list()


int64 = st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1)


@PROPERTY_SETTINGS
@given(st.lists(int64, max_size=30))
def test_any_int64_is_handled(values):
    rows = convert(values, pl.Int64)
    for value, (ts, flag) in zip(values, rows, strict=True):
        assert flag in FLAGS
        if value is None:
            assert (ts, flag) == (None, None)
        elif ts is None:
            assert flag in {"zero", "negative", "far_future", "before_2000"}
        else:
            assert dt.datetime(2000, 1, 1, tzinfo=dt.UTC) <= ts <= NOW + dt.timedelta(days=1)
            unit = {None: 1_000_000, "milliseconds": 1_000, "microseconds": 1}[flag]
            assert ts == dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=value * unit)
    # The same numbers written as text give the same answer.
    as_text = [None if value is None else str(value) for value in values]
    assert convert(as_text, pl.Utf8) == rows


@PROPERTY_SETTINGS
@given(st.lists(st.none() | st.text(max_size=20), max_size=30))
def test_any_text_is_handled(values):
    for ts, flag in convert(values, pl.Utf8):
        assert flag in FLAGS
        assert ts is None or flag in {None, "milliseconds", "microseconds"}


# ---------------------------------------------------------------------------------------------
# Provider hour strings


def test_provider_hour_string():
    assert provider_hour_string(utc(2021, 5, 1, 5, 59), "Asia/Shanghai") == "2021050113"
    assert provider_hour_string(utc(2021, 4, 30, 16), zoneinfo.ZoneInfo("Asia/Shanghai")) == "2021050100"
    with pytest.raises(ValueError, match="timezone-aware"):
        provider_hour_string(dt.datetime(2021, 5, 1), "Asia/Shanghai")


moments = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC))
zones = st.sampled_from(["Asia/Shanghai", "UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe"])


@PROPERTY_SETTINGS
@given(moments, zones)
def test_hour_string_names_the_local_hour(moment, tz):
    local = moment.astimezone(zoneinfo.ZoneInfo(tz))
    assert provider_hour_string(moment, tz) == local.strftime("%Y%m%d%H")
