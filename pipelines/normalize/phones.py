"""Phone numbers to E.164, vectorized over polars frames.

Every record that reaches the warehouse is keyed by its number: replies are attributed to sends
by number, and by-number pulls are asked for by number. The provider writes numbers as E.164
(`+8618501234444`) with a separate `CountryCode` and national `SubscriberNumber`, but the
sending application's log and our simulator's dirty variants also carry `8618501234444`,
`008618501234444`, `185 0123 4444` next to a country code, trunk prefixes, separators, blanks and
garbage. All of them must land on one canonical key.

`phonenumbers` is the authority, but it parses about 45k numbers a second, and a sync handles
millions of rows. So:

1. polars expressions clean each row into a *candidate* (separators removed, `00` turned into
   `+`, `SubscriberNumber` used when `PhoneNumber` is empty) and a cleaned calling code;
2. a fast path, also plain expressions, accepts mainland mobiles whose result is certain:
   the national number must match phonenumbers' own metadata patterns for CN (so its validity,
   region and E.164 form are exactly what phonenumbers would say);
3. every other row goes to phonenumbers, once per distinct (candidate, calling code), and the
   results are joined back in row order.

`normalize_phones(..., fast_path=False)` skips step 2; the tests use it to prove both paths agree.
"""

from __future__ import annotations

import functools
import re
from typing import TypeVar

import phonenumbers
import polars as pl
from phonenumbers import NumberParseException, PhoneNumberFormat
from phonenumbers.phonemetadata import PhoneMetadata

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

# phonenumbers compiles its metadata patterns through `re`, whose cache holds 512: a batch
# spanning many regions then spends most of its time recompiling (measured: 10k numbers/s
# instead of 40k). Keeping them is bounded by the metadata and process-wide by design.
phonenumbers.enable_pattern_cache()

#: Output columns, in the order they are added.
OUTPUT_COLUMNS = ("phone_e164", "country_code", "iso_code", "phone_valid")

_RESULT_DTYPE = pl.Struct(
    {"phone_e164": pl.Utf8, "country_code": pl.Utf8, "iso_code": pl.Utf8, "phone_valid": pl.Boolean}
)
_NO_RESULT = (None, None, None, False)
# Each re-read of an E.164 number strips at least one digit, and there are at most 17.
_MAX_RESTRIPS = 17

# Scratch columns live only inside one call; their prefix is checked against the input schema.
_TMP = "__smsledger_phone_"
_CANDIDATE = _TMP + "candidate"
_CC = _TMP + "cc"
_FAST = _TMP + "fast_nsn"
_SLOW = _TMP + "slow"


def normalize_phones(
    frame: FrameT,
    number: str,
    country_code: str | None = None,
    *,
    subscriber_number: str | None = None,
    default_region: str | None = None,
    fast_path: bool = True,
) -> FrameT:
    """Add `phone_e164`, `country_code`, `iso_code` and `phone_valid` to `frame`.

    `number` names the phone column (Utf8; integer columns, as a CSV reader may infer, are read
    as their digits). `country_code` names an optional calling-code column ("86", "+86", 86);
    it is only used for numbers written without `+`/`00`, a number that carries its own
    calling code wins. `subscriber_number` names an optional national-number column that is used
    when `number` is null or blank. `default_region` (e.g. "CN") is the region assumed for
    national numbers on rows without a usable calling code: SendSms treats bare 11-digit
    numbers as mainland, so pass "CN" for a sends log that was written that way.

    Output columns (existing columns of the same name are replaced, after the inputs have been
    read: so `country_code` may be both the input and the output, and re-normalizing
    `phone_e164` in place is a no-op):

    - `phone_e164` (Utf8): the E.164 form; null when the text is not a phone number or has an
      impossible length for its country. A parseable number of a plausible length keeps its
      key even when phonenumbers' range tables call it invalid: carriers open new ranges before
      the library ships them, and a join key must not vanish because of that.
    - `country_code` (Utf8): the calling code of the parsed number, e.g. "86"; null with
      `phone_e164`.
    - `iso_code` (Utf8): the region, e.g. "CN"; null when phonenumbers cannot tell (invalid
      numbers of a shared calling code such as +1) and for non-geographic codes (+800, +882…).
    - `phone_valid` (Boolean): `phonenumbers.is_valid_number`; False when unparseable.

    Input columns are not modified (unless they carry an output name), no row is dropped and
    row order is kept. Returns the same kind of frame it was given; a LazyFrame stays lazy.
    """
    schema = frame.collect_schema()
    clashes = [name for name in schema.names() if name.startswith(_TMP)]
    if clashes:
        raise ValueError(f"column names starting with {_TMP!r} are reserved: {clashes}")
    if default_region is not None and default_region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"default_region={default_region!r} is not a region phonenumbers knows, e.g. 'CN'")

    # Staged with_columns: each scratch column is computed once (common-subexpression
    # elimination does not reliably catch the repeated when/then chains).
    candidate = pl.col(_CANDIDATE)
    stages = [{_CANDIDATE: _clean_number(pl.col(number))}]
    if subscriber_number is not None:
        # The provider fills PhoneNumber, but a dirty record may only have the national part.
        stages.append({_CANDIDATE: pl.coalesce(candidate, _clean_number(pl.col(subscriber_number)))})
    # Only digits with an optional leading "+" go on; phonenumbers would turn letters into
    # digits ("vanity" numbers) or read extensions, and neither belongs in an SMS recipient.
    stages.append({_CANDIDATE: pl.when(candidate.str.contains(r"^\+?[0-9]+$")).then(candidate)})
    # A "+" number carries its own calling code: dropping the column value there lets the
    # distinct step share one lookup across rows that only differ in a redundant CountryCode.
    cc = _clean_country_code(pl.col(country_code)) if country_code is not None else pl.lit(None, pl.Utf8)
    stages.append({_CC: pl.when(candidate.str.starts_with("+")).then(None).otherwise(cc)})
    if fast_path:
        stages.extend(_fast_cn_mobile(default_region))
    else:
        stages.append({_FAST: pl.lit(None, pl.Utf8)})
    resolve = functools.partial(_resolve_batch, default_region=default_region)
    stages.append(
        {
            _SLOW: pl.when(pl.col(_FAST).is_null() & candidate.is_not_null())
            .then(pl.struct(candidate.alias("candidate"), pl.col(_CC).alias("cc")))
            .map_batches(resolve, return_dtype=_RESULT_DTYPE)
        }
    )
    is_fast, slow = pl.col(_FAST).is_not_null(), pl.col(_SLOW).struct
    stages.append(
        {
            "phone_e164": pl.when(is_fast).then("+86" + pl.col(_FAST)).otherwise(slow.field("phone_e164")),
            "country_code": pl.when(is_fast).then(pl.lit("86")).otherwise(slow.field("country_code")),
            "iso_code": pl.when(is_fast).then(pl.lit("CN")).otherwise(slow.field("iso_code")),
            "phone_valid": is_fast | slow.field("phone_valid").fill_null(False),
        }
    )
    result = frame.lazy()
    for stage in stages:
        result = result.with_columns(**stage)
    result = result.drop(_CANDIDATE, _CC, _FAST, _SLOW)
    return result.collect() if isinstance(frame, pl.DataFrame) else result


def _clean_number(column: pl.Expr) -> pl.Expr:
    """Text as written -> digits with an optional "+", or null when nothing is left."""
    # \s is Unicode-aware in polars' regex engine, so ideographic and no-break spaces go too.
    cleaned = column.cast(pl.Utf8).str.replace_all(r"[\s\-.()]", "")
    # "00" is the international prefix of mainland China and most of the world: 0086... = +86...
    cleaned = cleaned.str.replace(r"^00", "+")
    return pl.when(cleaned != "").then(cleaned)


def _clean_country_code(column: pl.Expr) -> pl.Expr:
    """"86", "+86", "0086", " 86 " or 86 -> "86"; anything else -> null."""
    digits = column.cast(pl.Utf8).str.replace_all(r"[\s+]", "").str.strip_chars_start("0")
    return pl.when(digits.str.contains(r"^[1-9][0-9]{0,2}$")).then(digits)


def _full(pattern: str) -> str:
    return f"^(?:{pattern})$"


@functools.cache
def _cn_patterns() -> tuple[str, str, str]:
    """phonenumbers' CN mobile, general and national-prefix patterns, for polars' regex engine."""
    cn = PhoneMetadata.metadata_for_region("CN")
    return (
        _full(cn.mobile.national_number_pattern),
        _full(cn.general_desc.national_number_pattern),
        f"^(?:{cn.national_prefix_for_parsing})",
    )


def _fast_cn_mobile(default_region: str | None) -> list[dict[str, pl.Expr]]:
    """Stages that set `_FAST` to the national number of a certain mainland mobile, else null.

    Accepted shapes: "+86" + NSN (whatever the CountryCode says), "86" + NSN (no plus) with
    CountryCode 86 or none, bare NSN with CountryCode 86 (or none and default_region CN). The
    NSN must fully match CN's mobile pattern and general pattern (then is_valid_number is True
    and the region is CN), and must not start like a national prefix or carrier code (CN's
    "0", "1xx"/"179xx" selection codes), which phonenumbers might strip: such rows take the slow
    path. The candidate is already digits with an optional "+", so lengths and prefixes suffice
    to cut the NSN out.
    """
    mobile, general, national_prefix = _cn_patterns()
    candidate, cc, nsn = pl.col(_CANDIDATE), pl.col(_CC), pl.col(_FAST)
    cc_is_cn = cc == "86"
    # Without a calling code, "8618501234444" is read as "+8618501234444" (the international
    # reading) or, with default_region CN, as a national number with 86 in front: CN either way.
    no_plus_is_cn = (cc_is_cn | cc.is_null()) if default_region in (None, "CN") else cc_is_cn
    bare_is_cn = (cc_is_cn | cc.is_null()) if default_region == "CN" else cc_is_cn
    length = candidate.str.len_bytes()
    shaped = (
        pl.when(candidate.str.starts_with("+86") & (length == 14))
        .then(candidate.str.slice(3))
        .when(no_plus_is_cn & candidate.str.starts_with("86") & (length == 13))
        .then(candidate.str.slice(2))
        .when(bare_is_cn & (length == 11) & ~candidate.str.starts_with("+"))
        .then(candidate)
    )
    certain = nsn.str.contains(mobile) & nsn.str.contains(general) & ~nsn.str.contains(national_prefix)
    return [{_FAST: shaped}, {_FAST: pl.when(certain).then(nsn)}]


def _resolve_batch(batch: pl.Series, *, default_region: str | None) -> pl.Series:
    """phonenumbers on the distinct (candidate, cc) pairs of a batch, joined back in row order."""
    keys = batch.struct.unnest()
    distinct = keys.drop_nulls("candidate").unique()
    resolved = pl.DataFrame(
        [
            (candidate, cc, *_resolve(candidate, cc, default_region))
            for candidate, cc in distinct.iter_rows()
        ],
        schema={"candidate": pl.Utf8, "cc": pl.Utf8, **_RESULT_DTYPE.to_schema()},
        orient="row",
    )
    joined = keys.join(resolved, on=["candidate", "cc"], how="left", nulls_equal=True, maintain_order="left")
    return joined.select(pl.struct(*_RESULT_DTYPE.to_schema()).alias(batch.name)).to_series()


def _resolve(
    candidate: str, cc: str | None, default_region: str | None
) -> tuple[str | None, str | None, str | None, bool]:
    """One cleaned candidate -> (phone_e164, country_code, iso_code, phone_valid).

    A "+" candidate is parsed as written. Digits without "+" have two readings: national (in
    the region of the row's calling code, else `default_region`) and international ("+" +
    digits: the calling code written without its plus). The first valid one wins, in this order:

    - with a calling code, the international reading first, if the digits start with that code:
      "4915123456789" with CountryCode 49 is +49 15123456789, although phonenumbers also finds
      a valid German number +49 4915123456789 in it;
    - the national reading ("07911123456" with 44; "18501234444" with 86, or with none and
      default_region CN, as SendSms reads bare 11 digits);
    - without a calling code, the international reading.

    Failing those, a national reading of a possible length is kept (invalid); a guessed
    international reading never is.
    """
    if candidate.startswith("+"):
        parsed = _parse(candidate, None)
        possible = parsed is not None and phonenumbers.is_possible_number(parsed)
        return _result(parsed) if possible else _NO_RESULT

    region = _region_for_calling_code(cc) if cc is not None else None
    if region is None:
        cc, region = None, default_region  # an unknown calling code is no calling code
    if cc is not None and candidate.startswith(cc):
        international = _parse("+" + candidate, None)
        if international is not None and phonenumbers.is_valid_number(international):
            return _result(international)
    if region == "001":
        # Non-geographic codes (+800, +882, ...) have no region to parse national numbers in.
        national = _parse(f"+{cc}{candidate}", None)
    elif region is not None:
        national = _parse(candidate, region)
    else:
        national = None
    if national is not None and phonenumbers.is_valid_number(national):
        return _result(national)
    if cc is None:
        international = _parse("+" + candidate, None)
        if international is not None and phonenumbers.is_valid_number(international):
            return _result(international)
    if national is not None and phonenumbers.is_possible_number(national):
        return _result(national)
    return _NO_RESULT


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """phonenumbers.parse, settled on a number that reads back as itself; None if unparseable.

    phonenumbers strips a national prefix after the calling code ("+86 0 185..." is
    +86 185...), and may strip again when it re-reads its own E.164 output ("+86 00 185...").
    Settling on the fixed point is what keeps normalize(normalize(x)) == normalize(x).
    """
    try:
        parsed = phonenumbers.parse(text, region)
        for _ in range(_MAX_RESTRIPS):
            if not _may_restrip(parsed):
                return parsed
            e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
            again = phonenumbers.parse(e164, None)
            if phonenumbers.format_number(again, PhoneNumberFormat.E164) == e164:
                return parsed
            parsed = again
    except NumberParseException:
        return None
    return None  # still shrinking: not a number anyone can key on


def _may_restrip(parsed: phonenumbers.PhoneNumber) -> bool:
    """Whether re-reading the E.164 form could strip a national prefix: the only change it can make."""
    prefix = _national_prefix_pattern(parsed.country_code)
    return prefix is not None and prefix.match(phonenumbers.national_significant_number(parsed)) is not None


@functools.cache
def _national_prefix_pattern(country_code: int) -> re.Pattern[str] | None:
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    pattern = metadata.national_prefix_for_parsing if metadata is not None else None
    return re.compile(pattern) if pattern else None


@functools.cache
def _region_for_calling_code(cc: str) -> str | None:
    region = phonenumbers.region_code_for_country_code(int(cc))
    return None if region == phonenumbers.UNKNOWN_REGION else region


def _result(parsed: phonenumbers.PhoneNumber) -> tuple[str, str, str | None, bool]:
    region = phonenumbers.region_code_for_number(parsed)
    iso = None if region in (None, phonenumbers.UNKNOWN_REGION, "001") else region
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    return e164, str(parsed.country_code), iso, phonenumbers.is_valid_number(parsed)
