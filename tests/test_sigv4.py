"""The local AWS front's signature checks against what botocore signs, and against tampering."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials

from devstack.sigv4 import Credentials, Denied, Request, verify_header, verify_post, verify_presigned
from discscope.client import multipart

CREDS = Credentials("DEVSTACKTEST", "a-secret-only-the-stack-knows", "us-east-1")
HOST = "127.0.0.1:4566"


def signed(method: str, path: str, service: str, body: bytes = b"", headers: dict | None = None,
           secret: str = CREDS.secret_key) -> Request:
    req = AWSRequest(method=method, url=f"http://{HOST}{path}", data=body, headers=headers or {})
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(BotoCredentials(CREDS.access_key, secret), service, "us-east-1").add_auth(req)
    prepared = req.prepare()
    return as_request(prepared.method, prepared.url, dict(prepared.headers) | {"Host": HOST}, body)


def as_request(method: str, url: str, headers: dict, body: bytes) -> Request:
    parts = urlsplit(url)
    return Request(method, parts.path, parts.query, {k.lower(): [v] for k, v in headers.items()}, body)


def now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.mark.parametrize("method,path,service,body,headers", [
    ("GET", "/discscope-studies/uploads/x/my%20scan%20%C3%BC%281%29.mha", "s3", b"", {}),
    ("PUT", "/discscope-studies/results/x/result.json", "s3", b'{"discs": []}', {"Content-Type": "application/json"}),
    ("GET", "/discscope-studies?list-type=2&prefix=uploads%2F", "s3", b"", {}),
    ("POST", "/", "dynamodb", b'{"TableName": "t"}', {"X-Amz-Target": "DynamoDB_20120810.Scan",
                                                      "Content-Type": "application/x-amz-json-1.0"}),
    ("POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Ax/invocations", "lambda", b"{}", {}),
])
def test_what_botocore_signs_is_accepted(method, path, service, body, headers):
    assert verify_header(signed(method, path, service, body, headers), CREDS, now()).service == service


def test_tampering_and_other_keys_are_refused():
    good = signed("POST", "/", "dynamodb", b'{"TableName": "t"}', {"X-Amz-Target": "DynamoDB_20120810.Scan"})
    for change in ({"body": b'{"TableName": "other"}'}, {"raw_path": "/x"}, {"method": "PUT"}):
        forged = Request(**(good.__dict__ | change))
        with pytest.raises(Denied) as ei:
            verify_header(forged, CREDS, now())
        assert ei.value.status == 403
    with pytest.raises(Denied) as ei:
        verify_header(signed("GET", "/b", "s3", secret="guessed"), CREDS, now())
    assert ei.value.code == "SignatureDoesNotMatch"
    with pytest.raises(Denied) as ei:
        verify_header(good, CREDS, now() + timedelta(minutes=20))
    assert ei.value.code == "RequestTimeTooSkewed"
    s3 = signed("PUT", "/b/k", "s3", b"payload")
    s3.body = b"another payload"  # the signed x-amz-content-sha256 no longer matches
    with pytest.raises(Denied) as ei:
        verify_header(s3, CREDS, now())
    assert ei.value.code == "XAmzContentSHA256Mismatch"


def test_presigned_urls():
    req = AWSRequest(method="GET", url=f"http://{HOST}/discscope-studies/results/a%20b/preview.png", headers={})
    S3SigV4QueryAuth(BotoCredentials(CREDS.access_key, CREDS.secret_key), "s3", "us-east-1", expires=60).add_auth(req)
    url = req.prepare().url
    ok = as_request("GET", url, {"Host": HOST}, b"")
    assert verify_presigned(ok, CREDS, now()).kind == "presigned"
    with pytest.raises(Denied):
        verify_presigned(as_request("GET", url.replace("preview.png", "mask.mha"), {"Host": HOST}, b""), CREDS, now())
    with pytest.raises(Denied) as ei:
        verify_presigned(ok, CREDS, now() + timedelta(seconds=61))
    assert "expired" in ei.value.message


def _form(conditions=None, fields=None, expires=60):
    s3 = boto3.client("s3", endpoint_url=f"http://{HOST}", region_name="us-east-1", config=Config(signature_version="s3v4"),
                      aws_access_key_id=CREDS.access_key, aws_secret_access_key=CREDS.secret_key)  # as the API signs
    return s3.generate_presigned_post(Bucket="discscope-studies", Key="uploads/a/upload.mha",
                                      Fields=fields or {"Content-Type": "image/png"},
                                      Conditions=conditions or [{"Content-Type": "image/png"},
                                                                ["content-length-range", 1, 100]],
                                      ExpiresIn=expires)


def _post(fields: dict, data: bytes, raw_parts: bytes = b"") -> Request:
    body, ctype = multipart(fields, "scan.png", data, "image/png")
    if raw_parts:  # extra parts before the file
        boundary = ctype.split("boundary=")[1].encode()
        body = raw_parts.replace(b"BOUNDARY", boundary) + body
    return Request("POST", "/discscope-studies", "", {"content-type": [ctype], "host": [HOST]}, body)


def test_post_policy_holds_the_form_to_its_conditions():
    form = _form()
    assert verify_post(_post(form["fields"], b"x" * 50), "discscope-studies", CREDS, now()).form["key"] == \
        "uploads/a/upload.mha"
    refusals = {
        "too large": (form["fields"], b"x" * 101, "EntityTooLarge"),
        "empty": (form["fields"], b"", "EntityTooSmall"),
        "other key": (form["fields"] | {"key": "uploads/b/upload.mha"}, b"x", "AccessDenied"),
        "content type": (form["fields"] | {"Content-Type": "text/html"}, b"x", "AccessDenied"),
        "extra field": (form["fields"] | {"success_action_redirect": "http://evil"}, b"x", "AccessDenied"),
        "signature": (form["fields"] | {"x-amz-signature": "0" * 64}, b"x", "SignatureDoesNotMatch"),
    }
    for what, (fields, data, code) in refusals.items():
        with pytest.raises(Denied) as ei:
            verify_post(_post(fields, data), "discscope-studies", CREDS, now())
        assert ei.value.code == code, what
    with pytest.raises(Denied) as ei:  # the right bucket only
        verify_post(_post(form["fields"], b"x"), "another-bucket", CREDS, now())
    assert ei.value.code == "AccessDenied"
    with pytest.raises(Denied) as ei:
        verify_post(_post(form["fields"], b"x"), "discscope-studies", CREDS, now() + timedelta(seconds=61))
    assert "expired" in ei.value.message
    # two `key` fields: the policy would see one and the store might use the other
    twice = b'--BOUNDARY\r\nContent-Disposition: form-data; name="key"\r\n\r\nuploads/b/upload.mha\r\n'
    with pytest.raises(Denied) as ei:
        verify_post(_post(form["fields"], b"x", twice), "discscope-studies", CREDS, now())
    assert ei.value.status == 400


def test_sigv2_forms_are_refused():
    """SigV2 (AWSAccessKeyId + signature) is what boto3 makes without s3v4; S3 refuses it for new buckets."""
    s3 = boto3.client("s3", endpoint_url=f"http://{HOST}", region_name="us-east-1",
                      aws_access_key_id=CREDS.access_key, aws_secret_access_key=CREDS.secret_key)
    form = s3.generate_presigned_post(Bucket="discscope-studies", Key="uploads/a/upload.mha")
    with pytest.raises(Denied) as ei:
        verify_post(_post(form["fields"], b"x"), "discscope-studies", CREDS, now())
    assert ei.value.status == 400


def test_a_policy_we_did_not_sign_is_refused():
    form = _form()
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    policy["conditions"] = [c for c in policy["conditions"] if not (isinstance(c, list) and c[0] == "content-length-range")]
    forged = form["fields"] | {"policy": base64.b64encode(json.dumps(policy).encode()).decode()}
    with pytest.raises(Denied) as ei:
        verify_post(_post(forged, b"x" * 1000), "discscope-studies", CREDS, now())
    assert ei.value.code == "SignatureDoesNotMatch"
