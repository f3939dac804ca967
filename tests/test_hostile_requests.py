"""Abuse of the running local stack, as an attacker or a careless client would: forged and
over-sized uploads, unsigned AWS calls, other web pages after the API key, malformed API requests.
Also the two things a user needs after a failure: run a study again, or send it a fixed file."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from discscope.client import ApiError, Client, multipart
from discscope.dataset import find_cases
from lambdas.shared import keys

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def phantom(phantom_dir) -> bytes:
    return find_cases([phantom_dir])[0].image_path.read_bytes()


def s3():
    return boto3.client("s3")


def _post_form(url: str, fields: dict, data: bytes, content_type: str = "application/octet-stream") -> tuple[int, str]:
    body, ctype = multipart(fields, "upload.bin", data, content_type)
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _exists(stack, key: str) -> bool:
    try:
        s3().head_object(Bucket=stack.aws.names.study_bucket, Key=key)
        return True
    except ClientError:
        return False


# --- the upload form is held to its policy ------------------------------------------------------


def test_upload_larger_than_declared_is_refused(stack, client):
    created = client.create_study("a.png", 1000, "image/png")
    status, text = _post_form(created["upload"]["url"], created["upload"]["fields"], b"\0" * (2 * 1024 * 1024), "image/png")
    assert status == 400 and "EntityTooLarge" in text
    assert not _exists(stack, created["upload"]["fields"]["key"])


def test_form_fields_outside_the_policy_are_refused(stack, client):
    created = client.create_study("a.png", 1000, "image/png")
    url, fields = created["upload"]["url"], created["upload"]["fields"]
    other = client.create_study("b.mha", 1000, "application/octet-stream")
    other_key = other["upload"]["fields"]["key"]
    s3().put_object(Bucket=stack.aws.names.study_bucket, Key=other_key, Body=b"the other study's upload")
    forged = base64.b64encode(b"\x00" * 32).hex()[:64]
    cases = {
        "wrong content type": fields | {"Content-Type": "text/html"},
        "another study's upload": fields | {"key": other_key},
        "another study's result": fields | {"key": keys.result_key(other["study_id"], "result.json")},
        "feedback": fields | {"key": keys.corrected_key(other["study_id"])},
        "forged signature": fields | {"x-amz-signature": forged},
        "an extra field": fields | {"acl": "public-read"},
        "no policy": {k: v for k, v in fields.items() if k != "policy"},
    }
    for what, form in cases.items():
        status, text = _post_form(url, form, b"PNG?", "image/png")
        assert status in (400, 403), what
    body = s3().get_object(Bucket=stack.aws.names.study_bucket, Key=other_key)["Body"].read()
    assert body == b"the other study's upload"
    for name in ("result.json",):
        assert not _exists(stack, keys.result_key(other["study_id"], name))
    assert not _exists(stack, keys.corrected_key(other["study_id"]))
    assert not _exists(stack, fields["key"])


def test_expired_upload_form_is_refused(stack, monkeypatch):
    from lambdas import api

    monkeypatch.setenv("PRESIGN_EXPIRY_S", "1")
    api.default_deps.cache_clear()
    try:
        created = Client(stack.gateway.api_url, stack.api_key).create_study("a.png", 1000, "image/png")
    finally:
        monkeypatch.undo()
        api.default_deps.cache_clear()
    time.sleep(2.1)
    status, text = _post_form(created["upload"]["url"], created["upload"]["fields"], b"x" * 10, "image/png")
    assert status == 403 and "expired" in text


# --- the local AWS answers signed requests only ---------------------------------------------------


def _raw(url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_unsigned_or_forged_aws_requests_are_refused(stack):
    bucket_url = f"{stack.aws.url}/{stack.aws.names.study_bucket}"
    assert _raw(bucket_url)[0] == 403  # list the whole bucket, unsigned
    assert _raw(f"{stack.aws.url}/")[0] == 403
    assert _raw(f"{stack.aws.url}/moto-api/reset", "POST")[0] == 403
    assert _raw(f"{stack.aws.url}/moto-api/")[0] == 403
    forged = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/s3/aws4_request, "
              "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
    assert _raw(bucket_url, headers={"Authorization": forged, "x-amz-date": "20240101T000000Z"})[0] in (400, 403)
    for key, secret in (("ak", "sk"), (stack.aws.credentials.access_key, "a wrong secret")):
        other = boto3.client("s3", endpoint_url=stack.aws.url, aws_access_key_id=key, aws_secret_access_key=secret,
                             region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
        with pytest.raises(ClientError) as ei:
            other.list_objects_v2(Bucket=stack.aws.names.study_bucket)
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        ddb = boto3.client("dynamodb", endpoint_url=stack.aws.url, aws_access_key_id=key, aws_secret_access_key=secret,
                           region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
        with pytest.raises(ClientError):
            ddb.scan(TableName=stack.aws.names.table)
    assert s3().list_objects_v2(Bucket=stack.aws.names.study_bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_presigned_urls_cover_one_object_for_a_while(stack):
    key = keys.result_key("0" * 32, "result.json")
    s3().put_object(Bucket=stack.aws.names.study_bucket, Key=key, Body=b"{}")
    signer = boto3.client("s3", config=Config(signature_version="s3v4"))  # as the API Lambda signs (SigV2 is refused)
    url = signer.generate_presigned_url("get_object", Params={"Bucket": stack.aws.names.study_bucket, "Key": key},
                                      ExpiresIn=3)
    assert _raw(url)[0] == 200
    assert _raw(url.replace("result.json", "preview.png"))[0] == 403  # another object, same signature
    time.sleep(4.1)
    assert _raw(url)[0] == 403


# --- the API key stays with the page's own origin ------------------------------------------------


def _gateway(stack, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection(*stack.gateway.httpd.server_address[:2], timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    out = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return out


def test_config_js_and_api_refuse_other_pages(stack):
    status, headers, body = _gateway(stack, "/config.js", headers={"Sec-Fetch-Site": "same-origin"})
    assert status == 200 and stack.api_key.encode() in body
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin" and headers["X-Content-Type-Options"] == "nosniff"
    for site in ("cross-site", "same-site"):
        status, _, body = _gateway(stack, "/config.js", headers={"Sec-Fetch-Site": site})
        assert status == 403 and stack.api_key.encode() not in body
    evil = {"Origin": "http://127.0.0.1:1", "x-api-key": stack.api_key}
    status, headers, _ = _gateway(stack, "/api/studies", headers=evil)
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = _gateway(stack, "/api/studies", "OPTIONS",
                                  {"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    own = stack.gateway.origins[0]
    status, headers, _ = _gateway(stack, "/api/studies", "OPTIONS", {"Origin": own, "Access-Control-Request-Method": "GET"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == own
    status, _, body = _gateway(stack, "/config.js", headers={"Host": "attacker.example:80"})  # DNS rebinding
    assert status == 403 and stack.api_key.encode() not in body


class _EvilPage(SimpleHTTPRequestHandler):
    html = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.html)))
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args):
        pass


def test_a_page_on_another_port_cannot_read_the_key(stack):
    """In Chromium: another origin on the same host (same site) includes config.js and calls the API."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it")
    _EvilPage.html = f"""<html><body><script src="{stack.gateway.url}/config.js"></script><script>
      window.result = {{config: window.DISCSCOPE_CONFIG ? JSON.stringify(window.DISCSCOPE_CONFIG) : null}};
      fetch("{stack.gateway.api_url}/studies", {{credentials: "include"}})
        .then(r => r.text()).then(t => window.result.api = t, e => window.result.api = "refused: " + e);
      fetch("{stack.gateway.url}/config.js").then(r => r.text())
        .then(t => window.result.fetched = t, e => window.result.fetched = "refused: " + e);
    </script></body></html>""".encode()
    evil = ThreadingHTTPServer(("127.0.0.1", 0), _EvilPage)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            page.wait_for_function("window.result && window.result.api !== undefined && window.result.fetched !== undefined")
            result = page.evaluate("window.result")
            own = browser.new_page()  # the page itself still gets its key
            own.goto(stack.gateway.url + "/")
            assert own.evaluate("window.DISCSCOPE_CONFIG.apiKey") == stack.api_key
            browser.close()
    finally:
        evil.shutdown()
    assert result["config"] is None
    assert result["api"].startswith("refused") and result["fetched"].startswith("refused")
    assert stack.api_key not in json.dumps(result)


# --- malformed API requests get a 4xx and change nothing ------------------------------------------


def test_nan_boxes_and_lax_types_are_refused_before_anything_is_written(stack, client, phantom):
    created = client.create_study("scan.mha", len(phantom), "application/octet-stream")
    client.upload(created["upload"], "scan.mha", phantom, "application/octet-stream")
    study = client.wait(created["study_id"], timeout=180)
    sid = study["study_id"]
    bad = [
        '{"discs": [{"box": [NaN, 1, 5, 6], "level": "L4-L5", "herniated": false}]}',
        '{"discs": [{"box": [1, 1, Infinity, 6], "level": "L4-L5"}]}',
        '{"discs": [{"box": ["10", 1, 20, 6], "level": "L4-L5"}]}',
        '{"discs": [{"box": [1, 1, 20, 6], "level": "L4-L5", "herniated": "yes"}]}',
        "[" * 50_000 + "]" * 50_000,
    ]
    for text in bad:
        status, _, body = _gateway(stack, f"/api/studies/{sid}/corrections", "POST",
                                   {"x-api-key": stack.api_key, "Content-Type": "application/json"}, text.encode())
        assert status == 400 and json.loads(body)["error_code"] == "BAD_REQUEST", text[:60]
    assert not _exists(stack, keys.corrected_key(sid))
    assert client.study(sid)["status"] == "SUCCEEDED" and client.study(sid)["feedback"] == []
    status, _, body = _gateway(stack, "/api/studies", "POST", {"x-api-key": stack.api_key},
                               b'{"filename": "a.mha", "size": "10"}')
    assert status == 400


def test_forged_cursors_are_bad_cursor(client):
    forged = [{"pk": "STUDY#x", "sk": "META", "gsi1pk": "STUDY", "gsi1sk": "x"}, {"pk": {"S": "x"}}, ["a"],
              {"pk": "STUDY#" + "a" * 32, "sk": "META", "gsi1pk": "OTHER", "gsi1sk": "t#" + "a" * 32}]
    for value in forged:
        cursor = base64.urlsafe_b64encode(json.dumps(value).encode()).decode()
        with pytest.raises(ApiError) as ei:
            client.studies(cursor=cursor)
        assert (ei.value.status, ei.value.code) == (400, "BAD_CURSOR")
    with pytest.raises(ApiError) as ei:
        client.studies(cursor=base64.urlsafe_b64encode(b"[" * 10000).decode())
    assert ei.value.code == "BAD_CURSOR"


def test_http_abuse_of_the_gateway(stack):
    for method in ("PUT", "DELETE", "PATCH"):
        status, headers, body = _gateway(stack, "/api/studies", method, {"x-api-key": stack.api_key})
        assert status in (404, 405) and headers["Content-Type"] == "application/json" and json.loads(body)
    host, port = stack.gateway.httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as s:  # Content-Length: -1 is answered at once
        s.sendall(b"POST /api/studies HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: -1\r\n\r\n" % (host.encode(), port))
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    req = urllib.request.Request(stack.gateway.api_url + "/studies", data=b"{" + b" " * (5 * 1024 * 1024) + b"}",
                                 headers={"x-api-key": stack.api_key, "Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as ei:  # a 413, not a broken pipe
        urllib.request.urlopen(req, timeout=60)
    assert ei.value.code == 413
    errors = []

    def one():
        try:
            Client(stack.gateway.api_url, stack.api_key).current_model()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# --- after a failure: run it again, or send the fixed file ---------------------------------------


def test_a_fixed_file_on_the_same_form_starts_a_new_run(stack, client, phantom):
    """The same study's upload form, used again with the right file (before, the second upload's
    execution name repeated the first's and no run started)."""
    created = client.create_study("patient.2024-01-15.series3.mha", len(phantom), "application/octet-stream")
    client.upload(created["upload"], "x", b"not an image at all\n" * 4, "application/octet-stream")
    failed = client.wait(created["study_id"], timeout=60)
    assert failed["status"] == "FAILED" and failed["error_code"] == "NOT_AN_IMAGE"
    client.upload(created["upload"], "x", phantom, "application/octet-stream")
    deadline = time.time() + 180
    while client.study(created["study_id"])["status"] == "FAILED" and time.time() < deadline:
        time.sleep(0.3)
    done = client.wait(created["study_id"], timeout=180)
    assert done["status"] == "SUCCEEDED" and "error_code" not in done


def test_retry_runs_a_failed_study_again(stack, client, phantom, monkeypatch):
    from discscope.server import ShuttingDown

    def down(*args, **kwargs):
        raise ShuttingDown()

    monkeypatch.setattr(stack.endpoint.model_host, "invoke", down)
    created = client.create_study("scan.mha", len(phantom), "application/octet-stream")
    client.upload(created["upload"], "scan.mha", phantom, "application/octet-stream")
    failed = client.wait(created["study_id"], timeout=120)
    assert failed["status"] == "FAILED" and failed["error_code"] == "ENDPOINT_UNAVAILABLE"
    monkeypatch.undo()
    rerun = client._request("POST", f"/studies/{created['study_id']}/retry", {})
    assert rerun["status"] == "UPLOADED"
    with pytest.raises(ApiError) as ei:  # one re-run at a time
        client._request("POST", f"/studies/{created['study_id']}/retry", {})
    assert (ei.value.status, ei.value.code) == (409, "NOT_FAILED")
    done = client.wait(created["study_id"], timeout=180)
    assert done["status"] == "SUCCEEDED" and done["previous_error"] == "ENDPOINT_UNAVAILABLE"
    with pytest.raises(ApiError) as ei:
        client._request("POST", f"/studies/{created['study_id']}/retry", {})
    assert ei.value.code == "NOT_FAILED"
    assert s3().get_object(Bucket=stack.aws.names.study_bucket, Key=done["upload_key"])["Body"].read() == phantom


def test_gzip_nifti_with_a_patients_name_as_file_name(stack, client, tmp_path, phantom_dir):
    import gzip

    import SimpleITK as sitk

    sitk.WriteImage(sitk.ReadImage(str(find_cases([phantom_dir])[1].image_path)), str(tmp_path / "v.nii"))
    data = gzip.compress((tmp_path / "v.nii").read_bytes())
    name = "patient.2024-01-15.series3.nii.gz"
    created = client.create_study(name, len(data), "application/gzip")
    client.upload(created["upload"], name, data, "application/gzip")
    done = client.wait(created["study_id"], timeout=180)
    assert done["status"] == "SUCCEEDED", done
    assert done["filename"] == name and done["upload_key"] == f"uploads/{done['study_id']}/upload.nii.gz"
    listed = s3().list_objects_v2(Bucket=stack.aws.names.study_bucket)["Contents"]
    assert not [o["Key"] for o in listed if "patient" in o["Key"] or "2024-01-15" in o["Key"]]
