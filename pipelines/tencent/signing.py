"""TC3-HMAC-SHA256 request signing (Tencent Cloud API signature v3).

One implementation serves both sides: the client signs with it (`TC3Auth`), the simulator
verifies with it (`compute_signature` over the headers the request says it signed). The official
SDK's `Sign.sign_tc3` is the oracle in tests/test_signing.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Generator, Mapping

import httpx

ALGORITHM = "TC3-HMAC-SHA256"
SERVICE = "sms"
API_VERSION = "2021-01-11"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
CONTENT_TYPE = "application/json"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def credential_date(timestamp: int) -> str:
    """The UTC date of the timestamp: the `Date` of the credential scope."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")


def signing_key(secret_key: str, date: str, service: str = SERVICE) -> bytes:
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k_service = _hmac(k_date, service)
    return _hmac(k_service, "tc3_request")


def canonical_request(
    method: str,
    signed_headers: Mapping[str, str],
    payload_hash: str,
    canonical_uri: str = "/",
    canonical_query: str = "",
) -> tuple[str, str]:
    """(canonical request, SignedHeaders). Header keys and values are lower-cased and trimmed,
    sorted by key, as the service does."""
    items = sorted((k.strip().lower(), v.strip().lower()) for k, v in signed_headers.items())
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in items)
    signed = ";".join(k for k, _ in items)
    request = "\n".join([method.upper(), canonical_uri, canonical_query, canonical_headers, signed, payload_hash])
    return request, signed


def string_to_sign(timestamp: int, canonical: str, service: str = SERVICE) -> str:
    scope = f"{credential_date(timestamp)}/{service}/tc3_request"
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def payload_hash(body: bytes, unsigned: bool = False) -> str:
    return hashlib.sha256(UNSIGNED_PAYLOAD.encode() if unsigned else body).hexdigest()


def compute_signature(
    secret_key: str,
    timestamp: int,
    method: str,
    signed_headers: Mapping[str, str],
    body: bytes,
    *,
    service: str = SERVICE,
    unsigned_payload: bool = False,
    canonical_query: str = "",
) -> tuple[str, str]:
    """(hex signature, SignedHeaders) for a request."""
    canonical, signed = canonical_request(
        method, signed_headers, payload_hash(body, unsigned_payload), canonical_query=canonical_query
    )
    sts = string_to_sign(timestamp, canonical, service)
    key = signing_key(secret_key, credential_date(timestamp), service)
    return hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest(), signed


def authorization_header(
    secret_id: str, secret_key: str, timestamp: int, host: str, body: bytes, content_type: str = CONTENT_TYPE
) -> str:
    signature, signed = compute_signature(
        secret_key, timestamp, "POST", {"content-type": content_type, "host": host}, body
    )
    scope = f"{credential_date(timestamp)}/{SERVICE}/tc3_request"
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed}, Signature={signature}"


@dataclasses.dataclass(frozen=True)
class ParsedAuthorization:
    secret_id: str
    date: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Parse `TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request, SignedHeaders=a;b, Signature=hex`.
    None when the header does not have that shape."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM or not rest:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            return None
        fields[key.strip()] = val.strip()
    try:
        credential = fields["Credential"].split("/")
        signed = tuple(h for h in fields["SignedHeaders"].split(";") if h)
        signature = fields["Signature"]
    except KeyError:
        return None
    if len(credential) != 4 or credential[3] != "tc3_request" or not signed or not signature:
        return None
    return ParsedAuthorization(credential[0], credential[1], credential[2], signed, signature)


class TC3Auth(httpx.Auth):
    """Signs each request the way the official SDK does: `content-type;host`, the body's hash,
    the UTC date of `X-TC-Timestamp`. The secret key never leaves this object."""

    requires_request_body = True

    def __init__(self, secret_id: str, secret_key: str, session_token: str | None = None, clock=time.time):
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._session_token = session_token
        self._clock = clock

    def __repr__(self) -> str:  # never print the key
        return f"TC3Auth(secret_id={self._secret_id[:6]}…)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        timestamp = int(self._clock())
        host = request.headers.get("Host") or request.url.netloc.decode("ascii")
        content_type = request.headers.get("Content-Type", CONTENT_TYPE)
        request.headers["X-TC-Timestamp"] = str(timestamp)
        if self._session_token:
            request.headers["X-TC-Token"] = self._session_token
        request.headers["Authorization"] = authorization_header(
            self._secret_id, self._secret_key, timestamp, host, request.content, content_type
        )
        yield request
