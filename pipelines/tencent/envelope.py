"""The response envelope of the Tencent Cloud API, read in one place.

Every answer is `{"Response": {..., "RequestId": ...}}`, with `Response.Error` (`Code`, `Message`)
on failure, and HTTP 200 either way. The client, the drain and the loader all read bodies through
`read_envelope`, so a body is judged by one set of rules and one set of messages:

* not JSON, no `Response` object, an `Error` that is not an object, or a record set that is not a
  list: `TransportError` (nothing usable arrived);
* `Response.Error`: an `Envelope` with `error_code`; `raise_for_error` turns it into
  `TencentCloudError` for callers that want the records or nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from pipelines.tencent import actions as A
from pipelines.tencent.errors import TencentCloudError, TransportError


@dataclasses.dataclass(frozen=True)
class Envelope:
    """One parsed response: the `Response` object, its request id and its error, if any."""

    action: str
    response: dict[str, Any]
    request_id: str | None
    error_code: str | None = None
    error_message: str | None = None

    def raise_for_error(self) -> Envelope:
        if self.error_code is not None:
            raise TencentCloudError(self.action, self.error_code, self.error_message or "", self.request_id)
        return self

    def records(self) -> list[Any]:
        """The record set of a pull action (empty when absent); TransportError if it is not a list."""
        name = A.RECORD_SET[self.action]
        records = self.response.get(name) or []
        if not isinstance(records, list):
            raise TransportError(self.action, f"{name} is not a list")
        return records


@dataclasses.dataclass(frozen=True)
class Page:
    """The records of a successful pull response."""

    action: str
    request_id: str
    records: list[dict[str, Any]]


def read_envelope(action: str, body: bytes) -> Envelope:
    try:
        document = orjson.loads(body)
        response = document["Response"]
        if not isinstance(response, dict):
            raise TypeError("Response is not an object")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise TransportError(action, f"response is not the API's JSON envelope ({exc.__class__.__name__}: {exc})") from None
    request_id = response.get("RequestId")
    request_id = None if request_id is None else str(request_id)
    error = response.get("Error")
    if not error:
        return Envelope(action, response, request_id)
    if not isinstance(error, dict):
        raise TransportError(action, "Response.Error is not an object")
    return Envelope(action, response, request_id, str(error.get("Code", "")), str(error.get("Message", "")))


def parse_response(action: str, body: bytes) -> dict[str, Any]:
    """The `Response` object of a successful call; TencentCloudError for `Response.Error`."""
    return read_envelope(action, body).raise_for_error().response


def parse_page(action: str, body: bytes) -> Page:
    envelope = read_envelope(action, body).raise_for_error()
    return Page(action, envelope.request_id or "", envelope.records())
