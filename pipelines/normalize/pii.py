"""Phone numbers as personal data (PIPL, GDPR): keyed tokens and masked forms of E.164 numbers.

With SMSLEDGER_PII_KEY set, the marts hold `phone_token`, an HMAC-SHA-256 of the E.164 number
under that key (hex), instead of the number: the same number always gives the same token, so
joins by number (a reply to the message it answers) keep working, and without the key a token
cannot be turned back into a number by trying every possible number. `phone_masked` keeps what a
person needs to recognise a number on a screen (`+86138****0000`: the calling code, the first three
and the last four digits of the national number).

Tokens are computed once per distinct number and key (staging.phone_tokens keeps them, see
pipelines/warehouse/marts.py), in Python's hmac: the key never enters an SQL statement, whose
errors may repeat its parameters. `key_id` names a key without revealing it, so a warehouse can tell
which key made its tokens.
"""

from __future__ import annotations

import hashlib
import hmac

import polars as pl

TOKEN = "phone_token"
MASKED = "phone_masked"

# The modes of SMSLEDGER_REPLY_TEXT: keep every reply's text, keep it only for opt-outs (which a
# person may need to see), or keep none.
REPLY_TEXT_MODES = ("keep", "optout-only", "drop")


def phone_token(key: bytes, e164: str) -> str:
    """The keyed token of a number (or of any text that holds one, such as a reply's record key)."""
    return hmac.new(key, e164.encode("utf-8"), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A name of the key, the same for the same key: the token of a fixed text, shortened. It tells
    nothing of the key, nor of any number."""
    return phone_token(key, "smsledger: the key of these tokens")[:16]


def masked(e164: str, calling_code: str | None) -> str:
    """`+86138****0000` from `+8613812340000`: the calling code, then the national number with all
    but its first three and last four digits hidden (for a national number under 11 digits, at most
    two at each end, and at least half hidden)."""
    code = calling_code or ""
    national = e164[1 + len(code):] if code and e164.startswith("+" + code) else e164.lstrip("+")
    # At least half of the digits stay hidden: a 10-digit national number shown 3 + 4 would leave
    # a thousand candidates.
    keep_start, keep_end = (3, 4) if len(national) >= 11 else (min(2, len(national) // 4),) * 2
    hidden = len(national) - keep_start - keep_end
    return f"+{code}{national[:keep_start]}{'*' * hidden}{national[len(national) - keep_end:] if keep_end else ''}"


def with_tokens(frame: pl.DataFrame, key: bytes, *, e164: str = "phone_e164",
                calling_code: str = "country_code") -> pl.DataFrame:
    """`frame` with `phone_token` and `phone_masked` of its E.164 column (null where it is null)."""
    distinct = frame.select(pl.col(e164), pl.col(calling_code)).unique().drop_nulls(e164)
    computed = pl.DataFrame(
        {e164: distinct[e164],
         calling_code: distinct[calling_code],
         TOKEN: [phone_token(key, number) for number in distinct[e164]],
         MASKED: [masked(number, code) for number, code in distinct.iter_rows()]},
        schema={e164: pl.Utf8, calling_code: pl.Utf8, TOKEN: pl.Utf8, MASKED: pl.Utf8},
    )
    return frame.join(computed, on=[e164, calling_code], how="left", nulls_equal=True, maintain_order="left")
