"""Phone normalization: documented forms, frame contract, and properties against phonenumbers."""

from __future__ import annotations

import random
import re

import phonenumbers
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from pipelines.normalize.phones import OUTPUT_COLUMNS, normalize_phones

OUTPUT_SCHEMA = {"phone_e164": pl.Utf8, "country_code": pl.Utf8, "iso_code": pl.Utf8, "phone_valid": pl.Boolean}
INPUT_SCHEMA = {"PhoneNumber": pl.Utf8, "CountryCode": pl.Utf8, "SubscriberNumber": pl.Utf8}
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def normalize_phone(number, country_code=None, *, default_region=None):
    """One number through the vectorized rules: the output columns, or None without an E.164 form."""
    frame = pl.DataFrame({"number": [number], "cc": [country_code]}, schema={"number": pl.Utf8, "cc": pl.Utf8})
    row = normalize_phones(frame, "number", "cc", default_region=default_region).row(0, named=True)
    return None if row["phone_e164"] is None else tuple(row[name] for name in OUTPUT_COLUMNS)


def records(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=INPUT_SCHEMA, orient="row")


def normalize(frame: pl.DataFrame, **kwargs) -> pl.DataFrame:
    return normalize_phones(frame, "PhoneNumber", "CountryCode", subscriber_number="SubscriberNumber", **kwargs)


def outputs(frame: pl.DataFrame) -> list[tuple]:
    return frame.select(OUTPUT_COLUMNS).rows()


# ---------------------------------------------------------------------------------------------
# Every documented input form


CN = ("+8618501234444", "86", "CN", True)
GB = ("+447911123456", "44", "GG", True)  # 07911 1xx is a Guernsey range in phonenumbers
NONE = (None, None, None, False)


@pytest.mark.parametrize(
    ("number", "country_code", "subscriber", "expected"),
    [
        pytest.param("+8618501234444", "86", None, CN, id="e164"),
        pytest.param("+8618501234444", None, None, CN, id="e164-no-cc"),
        pytest.param("+8618501234444", "1", None, CN, id="e164-wins-over-cc"),
        pytest.param("8618501234444", "86", None, CN, id="no-plus-with-cc"),
        pytest.param("8618501234444", None, None, CN, id="no-plus-without-cc"),
        pytest.param("8618501234444", "", None, CN, id="no-plus-empty-cc"),
        pytest.param("008618501234444", None, None, CN, id="00-prefix"),
        pytest.param("0086 185 0123 4444", "86", None, CN, id="00-prefix-spaced"),
        pytest.param("18501234444", "86", None, CN, id="national-with-cc"),
        pytest.param("18501234444", "+86", None, CN, id="national-with-plus-cc"),
        pytest.param("18501234444", " 0086 ", None, CN, id="national-with-00-cc"),
        pytest.param("07911123456", "44", None, GB, id="trunk-prefix"),
        pytest.param("7911123456", "44", None, GB, id="nsn-with-cc"),
        pytest.param("+44 (0) 7911 123456", None, None, GB, id="trunk-after-cc"),
        pytest.param("+86018501234444", "86", None, CN, id="provider-doc-trunk-after-cc"),
        pytest.param("+86 185-0123.4444", None, None, CN, id="separators"),
        pytest.param("(+86) 185 0123 4444", None, None, CN, id="parentheses"),
        pytest.param("+86\u3000185\u00a001234444", None, None, CN, id="unicode-spaces"),
        pytest.param("", "86", "18501234444", CN, id="subscriber-fills-empty"),
        pytest.param(None, "86", "185 0123 4444", CN, id="subscriber-fills-null"),
        pytest.param(" - ", "86", "18501234444", CN, id="subscriber-fills-separators-only"),
        pytest.param("+8618501234444", "86", "garbage", CN, id="subscriber-ignored-when-number-present"),
        pytest.param("12025550123", "1", None, ("+12025550123", "1", "US", True), id="nanp-with-trunk"),
        pytest.param("6045550199", "1", None, ("+16045550199", "1", "CA", True), id="shared-cc-region"),
        pytest.param("+1 650 253 0000", None, None, ("+16502530000", "1", "US", True), id="us"),
        pytest.param("4915123456789", "49", None, ("+4915123456789", "49", "DE", True), id="cc-digits-win"),
        pytest.param("7012345678", "7", None, ("+77012345678", "7", "KZ", True), id="national-starting-with-cc"),
        pytest.param("+800 1234 5678", None, None, ("+80012345678", "800", None, True), id="non-geographic"),
        pytest.param("12345678", "800", None, ("+80012345678", "800", None, True), id="non-geographic-national"),
        pytest.param("+8614012345678", None, None, ("+8614012345678", "86", "CN", False), id="possible-not-valid"),
        pytest.param("18501234444", "999", None, NONE, id="unknown-cc-is-no-cc"),
        pytest.param("18501234444", None, None, NONE, id="national-without-cc"),
        pytest.param("+86 185", None, None, NONE, id="too-short"),
        pytest.param("+999 1234 5678", None, None, NONE, id="unknown-calling-code"),
        pytest.param("garbage", "86", None, NONE, id="garbage"),
        pytest.param("+1 800 FLOWERS", None, None, NONE, id="letters"),
        pytest.param("++8618501234444", None, None, NONE, id="double-plus"),
        pytest.param("", "", "", NONE, id="all-empty"),
        pytest.param(None, None, None, NONE, id="all-null"),
    ],
)
def test_documented_forms(number, country_code, subscriber, expected):
    frame = records([(number, country_code, subscriber)])
    assert outputs(normalize(frame)) == [expected]
    assert outputs(normalize(frame, fast_path=False)) == [expected]


def test_default_region_reads_bare_numbers_as_that_region():
    frame = records([("18501234444", None, None), ("13102345678", None, None), ("447911123456", None, None)])
    assert outputs(normalize(frame, default_region="CN")) == [
        CN,
        ("+8613102345678", "86", "CN", True),
        GB,  # not a CN number, so the international reading wins
    ]
    # Without a default region a bare number is only read as international: +1 310 234 5678.
    assert outputs(normalize(frame))[1] == ("+13102345678", "1", "US", True)


def test_unknown_default_region_is_rejected():
    with pytest.raises(ValueError, match="default_region"):
        normalize(records([]), default_region="XX")


def test_normalize_phone_single_values():
    assert normalize_phone("0086 185 0123 4444") == ("+8618501234444", "86", "CN", True)
    assert normalize_phone("07911123456", "44") == tuple(GB)
    assert normalize_phone("18501234444", default_region="CN") == tuple(CN)
    assert normalize_phone("garbage") is None
    assert normalize_phone(None) is None


# ---------------------------------------------------------------------------------------------
# Frame contract


def test_output_schema_and_inputs_untouched():
    frame = records([("+8618501234444", "86", None), ("junk", None, "x")]).with_columns(other=pl.lit(1))
    out = normalize(frame)
    assert out.schema == pl.Schema({**frame.schema, **OUTPUT_SCHEMA})
    assert out.select(frame.columns).equals(frame)


def test_zero_rows():
    out = normalize(records([]))
    assert out.height == 0
    assert out.schema == pl.Schema({**INPUT_SCHEMA, **OUTPUT_SCHEMA})


def test_lazy_in_lazy_out():
    frame = records([("+8618501234444", "86", None)])
    lazy = normalize_phones(frame.lazy(), "PhoneNumber", "CountryCode", subscriber_number="SubscriberNumber")
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(normalize(frame))


def test_row_order_kept_with_duplicates_and_mixed_paths():
    rng = random.Random(5)
    pool = [
        ("+8618501234444", "86", None),
        ("07911123456", "44", None),
        ("garbage", None, None),
        (None, "86", "18501234445"),
        ("+16502530000", None, None),
        ("+8613912345678", None, None),
    ]
    expected = {row: outputs(normalize(records([row])))[0] for row in pool}
    rows = [rng.choice(pool) for _ in range(5000)]
    out = normalize(records(rows))
    assert out.select(*INPUT_SCHEMA).rows() == rows
    assert outputs(out) == [expected[row] for row in rows]


def test_integer_columns_are_read_as_digits():
    frame = pl.DataFrame({"PhoneNumber": [8618501234444, 18501234444, None], "CountryCode": [86, 86, 86]})
    out = normalize_phones(frame, "PhoneNumber", "CountryCode")
    assert out["phone_e164"].to_list() == ["+8618501234444", "+8618501234444", None]


def test_country_code_column_collision_reads_input_then_overwrites():
    frame = pl.DataFrame({"phone": ["18501234444", "07911123456", "junk"], "country_code": ["86", "44", "86"]})
    out = normalize_phones(frame, "phone", "country_code")
    assert out.columns == ["phone", "country_code", "phone_e164", "iso_code", "phone_valid"]
    assert out["country_code"].to_list() == ["86", "44", None]
    assert out["phone_e164"].to_list() == ["+8618501234444", "+447911123456", None]


def test_reserved_scratch_prefix_is_rejected():
    frame = records([]).with_columns(__smsledger_phone_x=pl.lit(1))
    with pytest.raises(ValueError, match="reserved"):
        normalize(frame)


# ---------------------------------------------------------------------------------------------
# Agreement with phonenumbers on valid numbers, in every input form

TYPES = [getattr(PhoneNumberType, name) for name in dir(PhoneNumberType) if name.isupper() and name != "UNKNOWN"]
EXAMPLES = [
    number
    for region in sorted(phonenumbers.SUPPORTED_REGIONS)
    for number_type in TYPES
    if (number := phonenumbers.example_number_for_type(region, number_type)) is not None
    and phonenumbers.is_valid_number(number)
]
FORMS = ["e164", "no_plus", "no_plus_with_cc", "idd_00", "national_with_cc", "nsn_with_cc", "spaces", "dashes_with_cc"]


def render(number: phonenumbers.PhoneNumber, form: str) -> tuple[str, str | None]:
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    cc = str(number.country_code)
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    return {
        "e164": (e164, None),
        "no_plus": (e164[1:], None),
        "no_plus_with_cc": (e164[1:], cc),
        "idd_00": ("00" + e164[1:], None),
        "national_with_cc": (phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL), cc),
        "nsn_with_cc": (phonenumbers.national_significant_number(number), cc),
        "spaces": (international, None),
        "dashes_with_cc": (international.replace(" ", "-"), cc),
    }[form]


def expected_for(number: phonenumbers.PhoneNumber) -> tuple:
    return (
        phonenumbers.format_number(number, PhoneNumberFormat.E164),
        str(number.country_code),
        phonenumbers.region_code_for_number(number),
        True,
    )


def assert_agrees(numbers: list[phonenumbers.PhoneNumber], forms: list[str]) -> None:
    rows = [(*render(number, form), None) for number, form in zip(numbers, forms, strict=True)]
    out = normalize(records(rows))
    mismatches = [
        (row, got, want)
        for row, got, want in zip(rows, outputs(out), map(expected_for, numbers), strict=True)
        if got != want
    ]
    assert not mismatches


def test_every_example_number_in_every_form_agrees_with_phonenumbers():
    numbers = [number for number in EXAMPLES for _ in FORMS]
    assert_agrees(numbers, FORMS * len(EXAMPLES))


cn_mobiles = (
    st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
    .map(lambda nsn: phonenumbers.parse("+86" + nsn))
    .filter(phonenumbers.is_valid_number)
)
valid_numbers = st.one_of(st.sampled_from(EXAMPLES), cn_mobiles)


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(valid_numbers, st.sampled_from(FORMS)), min_size=1, max_size=30))
def test_valid_numbers_in_any_form_agree_with_phonenumbers(cases):
    assert_agrees([number for number, _ in cases], [form for _, form in cases])


# ---------------------------------------------------------------------------------------------
# The fast path agrees with phonenumbers (the slow path) wherever it fires


def fast_path_shapes(nsn: str) -> list[tuple[str, str | None, None]]:
    shapes = [(f"+86{nsn}", None), (f"86{nsn}", "86"), (f"86{nsn}", None), (nsn, "86"), (nsn, None), (f"86{nsn}", "1")]
    return [(number, cc, None) for number, cc in shapes]


@pytest.mark.parametrize("default_region", [None, "CN", "US"])
def test_fast_path_matches_slow_path_for_every_4_digit_prefix(default_region):
    # CN's mobile ranges are decided within the first 5 digits; 1610x and 1740x are the only
    # ranges split at the 5th, so those are swept to 5 digits.
    rng = random.Random(11)
    prefixes = [str(p) for p in range(1000, 2000)] + [f"1610{d}" for d in range(10)] + [f"1740{d}" for d in range(10)]
    nsns = [prefix + "".join(rng.choices("0123456789", k=11 - len(prefix))) for prefix in prefixes]
    rows = [row for nsn in nsns for row in fast_path_shapes(nsn)]
    frame = records(rows)
    fast = normalize(frame, default_region=default_region)
    assert fast.equals(normalize(frame, default_region=default_region, fast_path=False))


@PROPERTY_SETTINGS
@given(
    st.lists(st.from_regex(r"1[0-9]{10}", fullmatch=True), min_size=1, max_size=20),
    st.sampled_from([None, "CN", "US", "GB"]),
)
def test_fast_path_matches_slow_path_on_random_mobiles(nsns, default_region):
    frame = records([row for nsn in nsns for row in fast_path_shapes(nsn)])
    fast = normalize(frame, default_region=default_region)
    assert fast.equals(normalize(frame, default_region=default_region, fast_path=False))


# ---------------------------------------------------------------------------------------------
# Any input: no crash, consistent outputs, idempotent, fast == slow


def check_contract(frame: pl.DataFrame, number: str, country_code: str, subscriber: str | None) -> None:
    out = normalize_phones(frame, number, country_code, subscriber_number=subscriber)
    assert out.select(frame.columns).equals(frame)
    assert {name: out.schema[name] for name in OUTPUT_COLUMNS} == OUTPUT_SCHEMA
    for e164, cc, iso, valid in outputs(out):
        if e164 is None:
            assert (cc, iso, valid) == (None, None, False)
        else:
            assert re.fullmatch(r"\+[1-9][0-9]+", e164) and e164.startswith("+" + cc)
    slow = normalize_phones(frame, number, country_code, subscriber_number=subscriber, fast_path=False)
    assert slow.equals(out)
    again = normalize_phones(out, "phone_e164", "country_code")
    assert outputs(again) == outputs(out)


text_or_none = st.none() | st.text(max_size=25)
phone_like = st.none() | st.from_regex(r"[+0 ()\-.]{0,3}[0-9 \-]{0,18}", fullmatch=True)
calling_codes = st.none() | st.sampled_from(["86", "1", "44", "49", "7", "800", "", "0", "999"])


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(text_or_none, text_or_none, text_or_none), max_size=12))
def test_any_text_is_handled(rows):
    check_contract(records(rows), "PhoneNumber", "CountryCode", "SubscriberNumber")


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(phone_like, calling_codes, phone_like), max_size=12))
def test_phone_like_text_is_handled(rows):
    check_contract(records(rows), "PhoneNumber", "CountryCode", "SubscriberNumber")


int64 = st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1)


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(int64, int64), max_size=12))
def test_any_integers_are_handled(rows):
    frame = pl.DataFrame(rows, schema={"PhoneNumber": pl.Int64, "CountryCode": pl.Int64}, orient="row")
    check_contract(frame, "PhoneNumber", "CountryCode", None)
