"""Tencent's push callbacks (reference §6): the documented bodies, checked, and mapped to records
in the API's field names, so that the loader keys and stores them exactly like pulled records.

`smsledger receive` spools each push's raw body under its own action name (`CallbackSmsStatus`,
`CallbackSmsReply`) before answering; the loader reads it through `map_body`.

* A delivery-status push is a JSON **array** (at most 100 per push) of objects with
  `user_receive_time` ("YYYY-MM-DD HH:MM:SS", zone undocumented: read in the provider's zone,
  `SMSLEDGER_PROVIDER_TIMEZONE`, like the statistics hours), `nationcode`, `mobile` (national),
  `report_status`, `errmsg` (the carrier's code: DELIVRD, UNDELIV, ...), `description` (a
  sentence), `sid` (the SerialNo) and `ext` (the SessionContext, when enabled).
* A reply push is one JSON **object** with `extend`, `mobile`, `nationcode`, `sign`, `text` and
  `time` (unix seconds).

`errmsg` becomes `Description`: the pulls' `Description` is that code ("DELIVRD"), so a receipt
reads the same whichever way it came, and failure reasons group by carrier code. The callback's
own `description` sentence, and any field the documentation does not name, are kept in
`extra_fields` under their callback names.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo
from typing import Any

import orjson

STATUS = "CallbackSmsStatus"
REPLY = "CallbackSmsReply"
ACTIONS = (STATUS, REPLY)
TABLES = {STATUS: "raw.send_status", REPLY: "raw.reply_status"}

# A reply push says no application (its URL is one per account, its body names none). A receiver
# serving one application spools it as that one's; one serving several spools it without, and the
# loader stores it under this value: staging and the marts attribute it to the application whose
# message it answers (pipelines/warehouse/staging.py `build_replies`, sql/marts/replies.sql).
UNSAID_APPLICATION = ""

# The answer the documentation asks for; the only one it says the provider takes as "received".
ACKNOWLEDGED = b'{"result":0,"errmsg":"OK"}'

_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
# Callback fields that become API fields; the others are kept in extra_fields.
_STATUS_MAPPED = frozenset({"user_receive_time", "nationcode", "mobile", "report_status", "errmsg", "sid", "ext"})
_REPLY_MAPPED = frozenset({"extend", "mobile", "nationcode", "sign", "text", "time"})


class ShapeError(ValueError):
    """The body as a whole is not the documented shape; the message is the reason."""


@dataclasses.dataclass
class Batch:
    """One push, mapped: records in API field names (in body order), and the items that could not
    be mapped as (position in the body, reason, the item as JSON)."""

    records: list[dict[str, Any]]
    rejected: list[tuple[int, str, str]]

    @property
    def total(self) -> int:
        return len(self.records) + len(self.rejected)


def spooled_application(action: str, named: str | None, default: str) -> str:
    """The application of a spool file's records: the one its name says; none for a reply push
    spooled without one (UNSAID_APPLICATION); `default`, the first configured application, for
    other files without one (spooled by older versions)."""
    if named is not None:
        return named
    return UNSAID_APPLICATION if action == REPLY else default


def items(action: str, body: bytes) -> list[Any]:
    """The pushed items of a body (a reply push is one item); ShapeError when the body is not the
    documented shape for `action`."""
    if action not in ACTIONS:
        raise ShapeError(f"{action} is not a callback action")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ShapeError(f"callback body is not JSON ({exc})") from None
    if action == STATUS:
        if not isinstance(document, list):
            raise ShapeError(f"status callback body is a JSON {_kind(document)}, not an array")
        return document
    if not isinstance(document, dict):
        raise ShapeError(f"reply callback body is a JSON {_kind(document)}, not an object")
    return [document]


def body_problem(action: str, body: bytes) -> str | None:
    """Why a body is not the documented shape, or None; the receiver logs it, the loader
    quarantines it."""
    try:
        items(action, body)
    except ShapeError as exc:
        return str(exc)
    return None


def map_body(action: str, body: bytes, provider_timezone: str | zoneinfo.ZoneInfo) -> Batch:
    """The records of one spooled push; ShapeError when the body as a whole is unusable."""
    zone = provider_timezone if isinstance(provider_timezone, zoneinfo.ZoneInfo) else zoneinfo.ZoneInfo(provider_timezone)
    batch = Batch([], [])
    for index, item in enumerate(items(action, body)):
        try:
            batch.records.append(status_record(item, zone) if action == STATUS else reply_record(item))
        except ValueError as exc:
            batch.rejected.append((index, str(exc), orjson.dumps(item).decode()))
    return batch


def status_record(item: Any, zone: zoneinfo.ZoneInfo) -> dict[str, Any]:
    """A PullSmsSendStatus record from one delivery-status item; ValueError (the reason) when it
    cannot be keyed: no sid, or a receive time that is not the documented local time."""
    if not isinstance(item, dict):
        raise ValueError(f"status callback item is a JSON {_kind(item)}, not an object")
    sid = item.get("sid")
    if not isinstance(sid, str) or not sid.strip():
        raise ValueError("status callback item without sid")
    received = item.get("user_receive_time")
    if received is not None:
        received = _local_to_unix(received, zone)
    nationcode, mobile = _digits_as_text(item.get("nationcode")), _digits_as_text(item.get("mobile"))
    record = {
        "SerialNo": sid,
        "PhoneNumber": _e164(nationcode, mobile),
        "CountryCode": nationcode,
        "SubscriberNumber": mobile,
        "ReportStatus": item.get("report_status"),
        "Description": item.get("errmsg"),
        "UserReceiveTime": received,
        "SessionContext": item.get("ext"),
    }
    record.update({k: v for k, v in item.items() if k not in _STATUS_MAPPED})
    return record


def reply_record(item: dict[str, Any]) -> dict[str, Any]:
    """A PullSmsReplyStatus record from a reply push; ValueError (the reason) without a number or
    a unix-seconds time, which a reply's key needs."""
    nationcode, mobile = _digits_as_text(item.get("nationcode")), _digits_as_text(item.get("mobile"))
    when = item.get("time")
    if not isinstance(mobile, str) or not mobile.strip():
        raise ValueError("reply callback without mobile")
    if type(when) is not int:
        raise ValueError(f"reply callback time {when!r} is not unix seconds")
    record = {
        "PhoneNumber": _e164(nationcode, mobile),
        "CountryCode": nationcode,
        "SubscriberNumber": mobile,
        "SignName": item.get("sign"),
        "ExtendCode": item.get("extend"),
        "ReplyContent": item.get("text"),
        "ReplyTime": when,
    }
    record.update({k: v for k, v in item.items() if k not in _REPLY_MAPPED})
    return record


def _local_to_unix(text: Any, zone: zoneinfo.ZoneInfo) -> int:
    if not isinstance(text, str) or not _LOCAL_TIME.fullmatch(text):
        raise ValueError(f"user_receive_time {text!r} is not YYYY-MM-DD HH:MM:SS")
    try:
        local = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ValueError(f"user_receive_time {text!r} is not a date and time") from None
    return int(local.replace(tzinfo=zone).timestamp())


def _digits_as_text(value: Any) -> Any:
    """A number or calling code sent as a JSON number is read as its digits (the API's fields
    are strings); any other value is left for the loader to keep in extra_fields."""
    return str(value) if type(value) is int and value >= 0 else value


def _e164(nationcode: Any, mobile: Any) -> str | None:
    """`+` calling code national number, as the pulls write PhoneNumber. The national number is
    appended as sent: a trunk prefix in it (a UK 07...) is removed later by staging's
    normalization, which also keys replies."""
    if not isinstance(mobile, str) or not mobile.strip():
        return None
    mobile = mobile.strip()
    if mobile.startswith("+"):
        return mobile
    if not isinstance(nationcode, str) or not nationcode.strip().lstrip("+"):
        return None
    return f"+{nationcode.strip().lstrip('+')}{mobile}"


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
