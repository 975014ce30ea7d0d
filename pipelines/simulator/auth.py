"""Checks of the common headers and the TC3-HMAC-SHA256 signature of a request, recomputed from
the bytes and header values actually received (with the shared `pipelines.tencent.signing`).

Order and codes (reference sections 1.1, 3 and 4.1; where the docs are silent, the choice is
noted): missing `X-TC-Action`/`X-TC-Version`/`X-TC-Region`/`X-TC-Timestamp` -> `MissingParameter`;
version other than 2021-01-11 -> `NoSuchVersion` (the only version simulated); unknown action ->
`InvalidAction`; region outside the documented SMS regions -> `UnsupportedRegion`; a timestamp
that is not an integer -> `InvalidParameter`; an `Authorization` header that does not parse, is
not for service `sms`, or does not sign both `content-type` and `host` ->
`AuthFailure.InvalidAuthorization`; |X-TC-Timestamp - real time| > 300 s ->
`AuthFailure.SignatureExpire` (real wall-clock time, not the simulated clock); unknown SecretId ->
`AuthFailure.SecretIdNotFound`; a credential date that is not the UTC date of the timestamp, or a
signature that does not match -> `AuthFailure.SignatureFailure`. `X-TC-Token` is accepted and not
checked (the simulator has no temporary credentials).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping

from pipelines.tencent import signing
from pipelines.tencent.actions import ALL_ACTIONS

MAX_CLOCK_SKEW_SECONDS = 300
REGIONS = frozenset({
    "ap-guangzhou", "ap-shanghai", "ap-beijing", "ap-chengdu", "ap-chongqing", "ap-hongkong",
    "ap-singapore", "ap-bangkok", "ap-mumbai", "ap-seoul", "ap-tokyo", "na-ashburn", "na-siliconvalley",
    "eu-frankfurt",
})


class AuthError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message


def check_request(headers: Mapping[str, str], body: bytes, credentials: Mapping[str, str],
                  *, method: str = "POST", now: float | None = None) -> str:
    """Validate the common headers and signature; return the action. `headers` has lower-case
    names; `credentials` maps SecretId to SecretKey."""
    for name, param in (("x-tc-action", "Action"), ("x-tc-version", "Version"), ("x-tc-region", "Region"),
                        ("x-tc-timestamp", "Timestamp")):
        if not headers.get(name):
            raise AuthError("MissingParameter", f"The request is missing a required parameter `{param}`.")
    if headers["x-tc-version"] != signing.API_VERSION:
        raise AuthError("NoSuchVersion", f"The requested version `{headers['x-tc-version']}` of API "
                        f"`{headers['x-tc-action']}` does not exist.")
    action = headers["x-tc-action"]
    if action not in ALL_ACTIONS:
        raise AuthError("InvalidAction", f"The action `{action}` is not valid for this version.")
    if headers["x-tc-region"] not in REGIONS:
        raise AuthError("UnsupportedRegion", f"The region `{headers['x-tc-region']}` is not supported.")
    try:
        timestamp = int(headers["x-tc-timestamp"])
    except ValueError:
        raise AuthError("InvalidParameter", "The value of parameter `Timestamp` is not an integer.") from None

    parsed = signing.parse_authorization(headers.get("authorization", ""))
    if parsed is None or parsed.service != signing.SERVICE or not {"content-type", "host"} <= set(parsed.signed_headers):
        raise AuthError("AuthFailure.InvalidAuthorization", "Authorization header is malformed or incomplete.")
    real_now = time.time() if now is None else now
    if abs(timestamp - real_now) > MAX_CLOCK_SKEW_SECONDS:
        raise AuthError("AuthFailure.SignatureExpire",
                        f"Signature expired. Timestamp: {timestamp}, server time: {int(real_now)}.")
    secret_key = credentials.get(parsed.secret_id)
    if secret_key is None:
        raise AuthError("AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that your "
                        "SecretId is correct.")
    if parsed.date != signing.credential_date(timestamp):
        raise AuthError("AuthFailure.SignatureFailure", f"The credential date {parsed.date} is not the UTC date "
                        "of X-TC-Timestamp.")
    signed = {name: headers.get(name, "") for name in parsed.signed_headers}
    unsigned = headers.get("x-tc-content-sha256") == signing.UNSIGNED_PAYLOAD
    signature, _ = signing.compute_signature(secret_key, timestamp, method, signed, body, unsigned_payload=unsigned)
    if not hmac.compare_digest(signature, parsed.signature):
        raise AuthError("AuthFailure.SignatureFailure", "The provided credentials could not be validated. "
                        "Please check your signature is correct.")
    return action
