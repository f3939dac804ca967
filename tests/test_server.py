"""The endpoint server over real HTTP: SageMaker's container contract, boto3's runtime client, bad input, hot swap."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config

from discscope.dataset import find_cases
from discscope.server import EndpointServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(baseline_model):
    with EndpointServer(baseline_model, port=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def runtime(server):
    return boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1}))


def _post(url: str, data: bytes, ctype: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_ping(server):
    with urllib.request.urlopen(server.url + "/ping") as resp:
        body = json.loads(resp.read())
    assert resp.status == 200 and body["model_version"]


def test_invocations_raw_bytes(server, phantom_dir):
    data = find_cases([phantom_dir])[0].image_path.read_bytes()
    status, body = _post(server.url + "/invocations", data, "application/octet-stream")
    assert status == 200
    assert len(body["discs"]) >= 5 and body["preview_png"]


def test_boto3_runtime_client_and_model_error(runtime, phantom_dir):
    data = find_cases([phantom_dir])[1].image_path.read_bytes()
    resp = runtime.invoke_endpoint(EndpointName="discscope", Body=data, ContentType="application/octet-stream")
    body = json.loads(resp["Body"].read())
    assert body["discs"] and resp["ContentType"] == "application/json"
    with pytest.raises(runtime.exceptions.ModelError) as ei:
        runtime.invoke_endpoint(EndpointName="discscope", Body=b"just text", ContentType="image/png")
    err = ei.value.response
    assert err["OriginalStatusCode"] == 400
    assert json.loads(err["OriginalMessage"])["error_code"] == "NOT_AN_IMAGE"


@pytest.mark.parametrize("data,ctype,code", [
    (b"", "application/octet-stream", "EMPTY_FILE"),
    (b"ObjectType = Image\nNDims = 3\nDimSize = 64 64 64\nElementType = MET_SHORT\nElementDataFile = LOCAL\n" + b"\0" * 99,
     "application/octet-stream", "TRUNCATED_FILE"),
    (b'{"s3_uri": 5}', "application/json", "BAD_REQUEST"),
    (b"{not json", "application/json", "BAD_REQUEST"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "BAD_REQUEST"),
])
def test_bad_input_is_4xx_and_server_stays_healthy(server, phantom_dir, data, ctype, code):
    status, body = _post(server.url + "/invocations", data, ctype)
    assert status == 400 and body["error_code"] == code and body["message"]
    good = find_cases([phantom_dir])[0].image_path.read_bytes()
    assert _post(server.url + "/invocations", good, "application/octet-stream")[0] == 200


def test_no_spine_is_422_through_the_runtime_client(runtime):
    """A blank volume reads fine; the model finds nothing and says so (the workflow marks it FAILED)."""
    import numpy as np

    data = (b"ObjectType = Image\nNDims = 3\nDimSize = 64 64 4\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n"
            + np.full(64 * 64 * 4, 9, np.uint8).tobytes())
    with pytest.raises(runtime.exceptions.ModelError) as ei:
        runtime.invoke_endpoint(EndpointName="discscope", Body=data, ContentType="application/octet-stream")
    assert ei.value.response["OriginalStatusCode"] == 422
    assert json.loads(ei.value.response["OriginalMessage"])["error_code"] == "NO_SPINE_FOUND"


def test_oversized_request_refused_before_reading(baseline_model):
    from discscope.io import Limits

    with EndpointServer(baseline_model, port=0, limits=Limits(max_bytes=1000)) as srv:
        status, body = _post(srv.url + "/invocations", b"\0" * 5000, "application/octet-stream")
        assert status == 413 and body["error_code"] == "FILE_TOO_LARGE"
        with urllib.request.urlopen(srv.url + "/ping") as resp:
            assert resp.status == 200


def test_s3_uri_request(server, phantom_dir, monkeypatch):
    from moto.server import ThreadedMotoServer

    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    try:
        for k, v in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
                     "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="studies")
        s3.put_object(Bucket="studies", Key="uploads/abc/scan one.mha",
                      Body=find_cases([phantom_dir])[0].image_path.read_bytes())
        status, body = _post(server.url + "/invocations", json.dumps({"s3_uri": "s3://studies/uploads/abc/scan one.mha"}).encode(),
                             "application/json")
        assert status == 200 and len(body["discs"]) >= 5
        status, body = _post(server.url + "/invocations", json.dumps({"s3_uri": "s3://studies/missing.mha"}).encode(),
                             "application/json")
        assert status == 400 and body["error_code"] == "NOT_FOUND"
    finally:
        moto.stop()


def test_hot_swap_and_failed_swap_keeps_serving(baseline_model, phantom_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(baseline_model, other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["version"] = "swapped-v2"
    (other / "metadata.json").write_text(json.dumps(meta))
    data = find_cases([phantom_dir])[0].image_path.read_bytes()
    with EndpointServer(baseline_model, port=0) as srv:
        before = _post(srv.url + "/invocations", data, "application/octet-stream")[1]["model_version"]
        # pings keep answering while a study is being analysed and the model is swapped
        results = []
        worker = threading.Thread(target=lambda: results.append(_post(srv.url + "/invocations", data, "application/octet-stream")))
        worker.start()
        status, body = _post(srv.url + "/admin/model", json.dumps({"model_path": str(other)}).encode(), "application/json")
        worker.join()
        assert status == 200 and body["model_version"] == "swapped-v2"
        assert results[0][0] == 200
        after = _post(srv.url + "/invocations", data, "application/octet-stream")[1]["model_version"]
        assert before != "swapped-v2" and after == "swapped-v2"
        status, body = _post(srv.url + "/admin/model", json.dumps({"model_path": str(tmp_path / "nope")}).encode(), "application/json")
        assert status == 500 and body["error_code"] == "MODEL_ERROR"
        assert _post(srv.url + "/invocations", data, "application/octet-stream")[1]["model_version"] == "swapped-v2"


def test_unknown_route(server):
    status, body = _post(server.url + "/nope", b"x", "text/plain")
    assert status == 404 and body["error_code"] == "NOT_FOUND"
