"""Our TC3 signer against the official SDK's `Sign.sign_tc3`, and the documented test vector."""

import hashlib
import json

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from tencentcloud.common.sign import Sign

from pipelines.tencent import signing

# reference/tencent-sms-api.md, section 3.1 B
VECTOR_BODY = b'{"Limit": 100, "SmsSdkAppId": "1400006666"}'
VECTOR_AUTH = (
    "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2021-05-11/sms/tc3_request, SignedHeaders=content-type;host, "
    "Signature=6ef30e515aefa1992cd0b2e762945031c646c9a0fa78743ace1e77a402e41ba4"
)


def test_documented_sms_vector():
    auth = signing.authorization_header(
        "AKIDEXAMPLE", "SECRETKEYEXAMPLE", 1620734188, "sms.tencentcloudapi.com", VECTOR_BODY
    )
    assert auth == VECTOR_AUTH


def test_documented_canonical_request_hash_with_extra_signed_header():
    # Section 3.1 A: the official CVM example signs content-type;host;x-tc-action.
    body = json.dumps({"Limit": 1, "Filters": [{"Values": ["未命名"], "Name": "instance-name"}]}).encode()
    assert signing.payload_hash(body) == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    canonical, signed = signing.canonical_request(
        "POST",
        {"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com", "x-tc-action": "DescribeInstances"},
        signing.payload_hash(body),
    )
    assert signed == "content-type;host;x-tc-action"
    assert hashlib.sha256(canonical.encode()).hexdigest() == "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"


@settings(max_examples=200, deadline=None)
@given(
    secret_key=st.text(min_size=1, max_size=48),
    timestamp=st.integers(min_value=0, max_value=4_102_444_800),
    host=st.from_regex(r"[a-z0-9.-]{1,40}(:[0-9]{1,5})?", fullmatch=True),
    body=st.binary(max_size=512),
)
def test_signature_agrees_with_sdk(secret_key, timestamp, host, body):
    date = signing.credential_date(timestamp)
    canonical, _ = signing.canonical_request(
        "POST", {"content-type": "application/json", "host": host}, signing.payload_hash(body)
    )
    expected = Sign.sign_tc3(secret_key, date, "sms", signing.string_to_sign(timestamp, canonical))
    ours, _ = signing.compute_signature(secret_key, timestamp, "POST", {"content-type": "application/json", "host": host}, body)
    assert ours == expected


def test_auth_flow_signs_host_with_port_and_token():
    seen = {}

    def app(request: httpx.Request) -> httpx.Response:
        seen.update(request.headers)
        return httpx.Response(200, json={"Response": {"RequestId": "r"}})

    auth = signing.TC3Auth("AKIDEXAMPLE", "SECRETKEYEXAMPLE", "tok", clock=lambda: 1620734188)
    with httpx.Client(transport=httpx.MockTransport(app), auth=auth) as client:
        client.post("http://127.0.0.1:8765/", content=VECTOR_BODY, headers={"Content-Type": "application/json"})
    assert seen["x-tc-token"] == "tok"
    assert seen["x-tc-timestamp"] == "1620734188"
    parsed = signing.parse_authorization(seen["authorization"])
    assert parsed.signed_headers == ("content-type", "host")
    expected, _ = signing.compute_signature(
        "SECRETKEYEXAMPLE", 1620734188, "POST", {"content-type": "application/json", "host": "127.0.0.1:8765"}, VECTOR_BODY
    )
    assert parsed.signature == expected
    assert "SECRETKEYEXAMPLE" not in repr(auth)
