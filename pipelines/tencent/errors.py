"""Errors of the Tencent Cloud API, and which of them are worth retrying.

The service answers HTTP 200 with `Response.Error` for most failures, so the client checks the
envelope, not the status. One exception type carries action, code, message and request id; its
one-line `str()` is what a person sees.
"""

from __future__ import annotations

# Codes that a later, identical request may not meet: rate limits and transient backend faults.
RETRYABLE_PREFIXES = ("RequestLimitExceeded",)
RETRYABLE_CODES = frozenset(
    {
        "InternalError",
        "InternalError.OtherError",
        "InternalError.RequestTimeException",
        "InternalError.SendAndRecvFail",
        "InternalError.Timeout",
        "InternalError.UnknownError",
        "InternalError.ParseBackendResponseFail",
        "ServiceUnavailable",
        "ResourceUnavailable",
    }
)

# What to do about a code that will fail the same way every time.
_HINTS = {
    "AuthFailure.SecretIdNotFound": "check TENCENTCLOUD_SECRET_ID (no spaces; key not deleted or disabled)",
    "AuthFailure.SignatureFailure": "check TENCENTCLOUD_SECRET_KEY matches TENCENTCLOUD_SECRET_ID",
    "AuthFailure.SignatureExpire": "the machine's clock is more than 5 minutes off; sync it (NTP)",
    "AuthFailure.InvalidSecretId": "TENCENTCLOUD_SECRET_ID is not a cloud API key",
    "AuthFailure.TokenFailure": "TENCENTCLOUD_SESSION_TOKEN is wrong or expired",
    "AuthFailure.InvalidAuthorization": "the Authorization header is malformed (a proxy rewriting headers?)",
    "AuthFailure.UnauthorizedOperation": "grant the key's CAM user access to SMS (QcloudSMSReadOnlyAccess)",
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail": "SMSLEDGER_SDK_APP_ID does not belong to this key's account",
    "InvalidParameterValue.SdkAppIdNotExist": "check SMSLEDGER_SDK_APP_ID (the SmsSdkAppId of the console)",
    "UnauthorizedOperation.RequestIpNotInWhitelist": "add this machine's IP to the SMS application's allowlist",
    "UnauthorizedOperation.RequestPermissionDeny": "ask the SMS helper to enable this action for the application",
    "UnauthorizedOperation.ServiceSuspendDueToArrears": "the account is suspended for arrears",
    "FailedOperation.NotEnterpriseCertification": "signature/template lists need an enterprise-verified account",
    "FailedOperation.ProhibitSubAccountUse": "use the main account's keys to list templates",
}


def is_retryable_code(code: str) -> bool:
    return code in RETRYABLE_CODES or code.startswith(RETRYABLE_PREFIXES)


class TencentCloudError(Exception):
    """`Response.Error` of an action: the provider's code and message, and its request id."""

    def __init__(self, action: str, code: str, message: str, request_id: str | None = None):
        super().__init__(action, code, message, request_id)
        self.action = action
        self.code = code
        self.message = message
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        return is_retryable_code(self.code)

    def __str__(self) -> str:
        hint = _HINTS.get(self.code)
        text = f"{self.action}: {self.code}: {self.message} (RequestId {self.request_id or '-'})"
        return f"{text}; {hint}" if hint else text


class TransportError(Exception):
    """The request did not produce a readable response: connection refused or reset, timeout,
    HTTP 5xx, a body that is not the documented JSON envelope. For a queue pull this is
    *indeterminate*: the provider may have handed records out that we never saw."""

    def __init__(self, action: str, cause: str, *, status_code: int | None = None):
        super().__init__(action, cause)
        self.action = action
        self.cause = cause
        self.status_code = status_code

    def __str__(self) -> str:
        return f"{self.action}: {self.cause}"


class Unreachable(TransportError):
    """The request never left this machine: connection refused, a name that does not resolve, a
    TLS handshake or proxy that failed. Nothing can have been handed out, so a queue pull that
    fails this way is not indeterminate."""

    def __init__(self, action: str, endpoint: str, cause: str):
        super().__init__(action, cause)
        self.endpoint = endpoint

    def __str__(self) -> str:
        return (f"cannot reach {self.endpoint} ({self.cause}); check SMSLEDGER_ENDPOINT, the network, "
                "or the proxy (HTTPS_PROXY)")


class WindowTooOldError(ValueError):
    """A by-number window reaching beyond the provider's 7-day retention; refused before any request."""
