"""Keyed tokens and masked forms of numbers, and the price table: what is accepted, what is refused
with the line that is wrong."""

import datetime as dt
import decimal
import hashlib
import hmac

import polars as pl
import pytest

from pipelines.config import ConfigError, Settings
from pipelines.normalize.pii import masked, phone_token, with_tokens
from pipelines.warehouse.prices import PriceTableError, read_prices

KEY = b"k" * 32


def test_a_token_is_the_keyed_hash_of_the_number_and_the_mask_hides_the_middle():
    assert phone_token(KEY, "+8613812340000") == hmac.new(KEY, b"+8613812340000", hashlib.sha256).hexdigest()
    assert phone_token(KEY, "+8613812340000") != phone_token(b"other-key-000000", "+8613812340000")
    assert masked("+8613800000000", "86") == "+86138****0000"
    assert masked("+6281234567890", "62") == "+62812****7890"
    assert masked("+6581234567", "65") == "+6581****67"
    # under 11 national digits, at least half hidden
    assert masked("+12125551234", "1") == "+121******34"
    assert masked("+919876543210", "91") == "+9198******10"
    assert masked("+298123456", "298") == "+2981****6"


def test_tokens_join_back_in_row_order_and_keep_nulls():
    frame = pl.DataFrame({"phone_e164": ["+8613800000000", None, "+8613800000000", "+447911123456"],
                          "country_code": ["86", None, "86", "44"], "n": [1, 2, 3, 4]})
    out = with_tokens(frame, KEY)
    assert out["n"].to_list() == [1, 2, 3, 4]
    assert out["phone_token"][0] == out["phone_token"][2] == phone_token(KEY, "+8613800000000")
    assert out["phone_token"][1] is None and out["phone_masked"][1] is None
    assert out["phone_masked"].to_list()[3] == "+4479******56"


def test_settings_check_the_key_and_the_reply_text_mode_without_repeating_the_key():
    with pytest.raises(ConfigError, match="SMSLEDGER_PII_KEY must be at least 16") as info:
        Settings.from_env({"SMSLEDGER_PII_KEY": "short-secret", "SMSLEDGER_ENDPOINT": "http://127.0.0.1:1"})
    assert "short-secret" not in str(info.value)
    with pytest.raises(ConfigError, match="SMSLEDGER_REPLY_TEXT='all'"):
        Settings.from_env({"SMSLEDGER_REPLY_TEXT": "all", "SMSLEDGER_ENDPOINT": "http://127.0.0.1:1"})
    settings = Settings.from_env({"SMSLEDGER_PII_KEY": "a" * 24, "SMSLEDGER_ENDPOINT": "http://127.0.0.1:1",
                                  "SMSLEDGER_PII_RETENTION_DAYS": "30"})
    assert settings.pii_retention_days == 30 and "a" * 24 not in repr(settings)


def test_a_price_table_reads(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("\ufeffregion,message_type,unit_price,currency,valid_from\n"
                    "CN,mainland,0.045,CNY,2026-01-01\n"
                    "id,International,0.32,cny,2026-01-01\n\n"
                    "ID,international,0.30,CNY,2026-06-01\n")
    prices = read_prices(path)
    assert prices.rows() == [("CN", "mainland", decimal.Decimal("0.045000"), "CNY", dt.date(2026, 1, 1)),
                             ("ID", "international", decimal.Decimal("0.320000"), "CNY", dt.date(2026, 1, 1)),
                             ("ID", "international", decimal.Decimal("0.300000"), "CNY", dt.date(2026, 6, 1))]


@pytest.mark.parametrize("line, problem", [
    ("CN,mainland,abc,CNY,2026-01-01", "line 3: unit_price 'abc' is not a price"),
    ("CN,mainland,-1,CNY,2026-01-01", "line 3: unit_price '-1' is not a price"),
    ("CN,mainland,0.04,yuan,2026-01-01", "line 3: currency 'yuan' is not an ISO 4217 code"),
    ("CN,mainland,0.04,CNY,01/02/2026", "line 3: valid_from '01/02/2026' is not a date"),
    ("China,mainland,0.04,CNY,2026-01-01", "line 3: region 'China' is not an ISO 3166 code"),
    ("CN,domestic,0.04,CNY,2026-01-01", "line 3: message_type 'domestic' is not one of mainland, international"),
    ("ID,mainland,0.04,CNY,2026-01-01", "line 3: region ID is not mainland China"),
    ("CN,mainland,0.04,CNY", "line 3: 4 fields where the header has 5"),
    ("CN,mainland,0.05,CNY,2026-01-01", "line 3: a second price for CN mainland from 2026-01-01 (the first is on line 2)"),
])
def test_a_price_table_that_does_not_parse_is_refused_with_the_line(tmp_path, line, problem):
    path = tmp_path / "prices.csv"
    path.write_text(f"region,message_type,unit_price,currency,valid_from\nCN,mainland,0.045,CNY,2026-01-01\n{line}\n")
    with pytest.raises(PriceTableError) as info:
        read_prices(path)
    assert str(info.value).startswith(f"SMSLEDGER_PRICES={path}: {problem}")


def test_a_header_without_a_column_or_a_missing_file_is_refused(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("region,unit_price,currency,valid_from\n")
    with pytest.raises(PriceTableError, match="line 1: the header has no message_type column"):
        read_prices(path)
    with pytest.raises(PriceTableError, match="cannot be read"):
        read_prices(tmp_path / "absent.csv")
