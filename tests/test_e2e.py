"""End to end on the local stack, as a clinical system meets it: REST API with API key, presigned POST
upload, S3 event, ingest, the real state machine, the endpoint server, DynamoDB and S3 results."""

from __future__ import annotations

import io
import urllib.request
import zipfile

import boto3
import cv2
import numpy as np
import pytest

from devstack.aws import reset_clients
from devstack.gateway import page_user
from devstack.stack import LocalStack
from discscope.client import ApiError, Client
from discscope.dataset import find_cases
from lambdas.shared import keys, yolo


@pytest.fixture(scope="module")
def analysed(client, phantom_dir) -> dict:
    return client.analyze(find_cases([phantom_dir])[0].image_path, timeout=180)


def _png(shape) -> bytes:
    return cv2.imencode(".png", np.zeros(shape, np.uint8))[1].tobytes()


def _upload_bytes(client: Client, filename: str, data: bytes) -> dict:
    created = client.create_study(filename, len(data), "application/octet-stream")
    client.upload(created["upload"], filename, data, "application/octet-stream")
    return client.wait(created["study_id"], timeout=180)


def test_api_key_required(stack):
    req = urllib.request.Request(stack.gateway.api_url + "/studies")
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req)
    assert ei.value.code == 403


def test_full_path_result_in_s3_dynamodb_and_api(stack, client, analysed):
    assert analysed["status"] == "SUCCEEDED"
    assert [d["level"] for d in analysed["discs"]][:5] == ["L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2"]
    # artifacts are downloadable through their presigned GET URLs
    for name in ("preview.png", "mask.png", "overlay.png", "mask.mha", "result.json"):
        with urllib.request.urlopen(analysed["artifacts"][name]) as resp:
            assert len(resp.read()) > 0
    item = boto3.resource("dynamodb").Table(stack.aws.names.table).get_item(
        Key={"pk": f"STUDY#{analysed['study_id']}", "sk": "META"})["Item"]
    assert item["status"] == "SUCCEEDED" and item["model_version"] == client.current_model()["model_version"]
    listed = client.studies(limit=5)["studies"]
    assert analysed["study_id"] in [s["study_id"] for s in listed]


def test_correction_round_trip_yolo_line_by_line(stack, client, analysed):
    h, w = analysed["image_size"]
    discs = [{"box": [10, 20, 60, 32], "level": "L4-L5", "herniated": True},
             {"box": [12, 40, 64, 50], "level": "L5-S1", "herniated": False}]
    saved = client.correct(analysed["study_id"], discs)
    text = boto3.client("s3").get_object(Bucket=stack.aws.names.study_bucket, Key=keys.corrected_key(analysed["study_id"]))["Body"].read().decode()
    expected = [f"7 {35 / w:.6f} {26 / h:.6f} {50 / w:.6f} {12 / h:.6f}", f"8 {38 / w:.6f} {45 / h:.6f} {52 / w:.6f} {10 / h:.6f}"]
    assert text.splitlines() == expected == saved["yolo"].splitlines()
    again = client.study(analysed["study_id"])
    assert again["status"] == "REVIEWED" and again["reviewed_discs"] == discs
    assert [f["kind"] for f in again["feedback"]] == ["correction"]


def test_accept_writes_the_model_predictions(stack, client, phantom_dir):
    study = client.analyze(find_cases([phantom_dir])[1].image_path, timeout=180)
    client.accept(study["study_id"])
    text = boto3.client("s3").get_object(Bucket=stack.aws.names.study_bucket, Key=keys.initial_key(study["study_id"]))["Body"].read().decode()
    h, w = study["image_size"]
    lumbar = [d for d in study["discs"] if d["level"] in yolo.LEVELS]
    assert len(text.splitlines()) == len(lumbar)
    for line, disc in zip(text.splitlines(), lumbar):
        box = yolo.parse(line, w, h)[0]
        assert (box.level, box.herniated) == (disc["level"], disc["herniated"])
        assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(disc["box"], abs=1e-3)


def test_feedback_refused_before_the_study_is_done_and_for_bad_boxes(client, analysed):
    created = client.create_study("later.mha", 100, "application/octet-stream")
    with pytest.raises(ApiError) as ei:
        client.accept(created["study_id"])
    assert (ei.value.status, ei.value.code) == (409, "NOT_READY")
    with pytest.raises(ApiError) as ei:
        client.correct(analysed["study_id"], [{"box": [0, 0, 99999, 5], "level": "L4-L5", "herniated": False}])
    assert ei.value.code == "BOX_OUTSIDE_IMAGE"
    with pytest.raises(ApiError) as ei:
        client.correct(analysed["study_id"], [{"box": [5, 5, 1, 1], "level": "L9-L10"}])
    assert ei.value.code == "BAD_REQUEST" and "level" in ei.value.message and "box" in ei.value.message


@pytest.mark.parametrize("body,code", [({"filename": "a.mha", "size": 0}, "BAD_REQUEST"),
                                       ({"filename": "a.mha", "size": 10, "content_type": "text/html"}, "BAD_REQUEST"),
                                       ({"size": 10}, "BAD_REQUEST"),
                                       ({"filename": "a.mha", "size": 10**12}, "FILE_TOO_LARGE")])
def test_create_study_validation(client, body, code):
    with pytest.raises(ApiError) as ei:
        client._request("POST", "/studies", body)
    assert ei.value.code == code


def test_unknown_study_and_bad_cursor(client):
    with pytest.raises(ApiError) as ei:
        client.study(keys.new_study_id())
    assert (ei.value.status, ei.value.code) == (404, "NOT_FOUND")
    with pytest.raises(ApiError) as ei:
        client.study("../../etc")
    assert ei.value.status == 404
    with pytest.raises(ApiError) as ei:
        client.studies(cursor="not-a-cursor")
    assert ei.value.code == "BAD_CURSOR"


def _mixed_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("s1.png", _png((64, 64)))
        zf.writestr("s2.png", _png((80, 64)))
    return buf.getvalue()


@pytest.mark.parametrize("filename,data,code", [
    ("empty.mha", b"", "EMPTY_FILE"),
    ("trunc.mha", b"ObjectType = Image\nNDims = 3\nDimSize = 64 64 64\nElementType = MET_SHORT\nElementDataFile = LOCAL\n" + b"\0" * 99,
     "TRUNCATED_FILE"),
    ("notes.png", b"a text file renamed to png\n" * 10, "NOT_AN_IMAGE"),
    ("scan.gif", b"GIF89a" + b"\0" * 100, "UNSUPPORTED_FORMAT"),
    ("mixed.zip", None, "INCONSISTENT_SLICES"),
])
def test_bad_input_through_the_whole_path(stack, client, phantom_dir, filename, data, code):
    data = _mixed_zip() if data is None else data
    if data:
        study = _upload_bytes(client, filename, data)
    else:  # the upload policy refuses 0 bytes (as S3 does); an operator's direct PUT still reaches Validate
        created = client.create_study(filename, 10, "application/octet-stream")
        with pytest.raises(ApiError) as ei:
            client.upload(created["upload"], filename, b"", "application/octet-stream")
        assert "EntityTooSmall" in ei.value.message
        boto3.client("s3").put_object(Bucket=stack.aws.names.study_bucket, Key=created["upload"]["fields"]["key"], Body=b"")
        study = client.wait(created["study_id"], timeout=60)
    assert study["status"] == "FAILED" and study["error_code"] == code and study["message"]
    kept = boto3.client("s3").get_object(Bucket=stack.aws.names.study_bucket, Key=study["upload_key"])["Body"].read()
    assert kept == data  # the upload stays
    ok = client.analyze(find_cases([phantom_dir])[2].image_path, timeout=180)
    assert ok["status"] == "SUCCEEDED"  # the next valid study still works


def test_oversized_upload_fails_validation(stack, client, monkeypatch):
    """An object larger than the limit that reaches the bucket another way (an operator's PUT: the
    upload form's policy refuses it before) is stopped by Validate."""
    from lambdas import workflow

    created = client.create_study("big.png", 3000, "image/png")
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1000")
    workflow.default_deps.cache_clear()
    try:
        boto3.client("s3").put_object(Bucket=stack.aws.names.study_bucket, Key=created["upload"]["fields"]["key"],
                                      Body=_png((512, 512)) + b"\0" * 2000)
        study = client.wait(created["study_id"], timeout=60)
    finally:
        monkeypatch.undo()
        reset_clients()
    assert study["status"] == "FAILED" and study["error_code"] == "FILE_TOO_LARGE"


@pytest.mark.parametrize("filename", ["../../../etc/passwd.mha", "Doe^Jane Ünïcödé 1970-01-01.mha", "脊椎.MHA"])
def test_hostile_and_unicode_filenames(stack, client, phantom_dir, filename):
    """The name (it may hold a patient's) stays in the study record; the key has the id and extension."""
    data = find_cases([phantom_dir])[3].image_path.read_bytes()
    study = _upload_bytes(client, filename, data)
    assert study["status"] == "SUCCEEDED"
    assert study["upload_key"] == f"uploads/{study['study_id']}/upload.mha"
    assert study["filename"] == filename


def test_static_files_do_not_escape_the_web_folder(stack):
    import http.client

    host, port = stack.gateway.httpd.server_address[:2]
    for path in ("/%2e%2e/%2e%2e/etc/passwd", "/../README.md", "/vendor/../../Makefile"):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 404, path
        resp.read()
        conn.close()
    with urllib.request.urlopen(stack.gateway.url + "/vendor/annotorious/annotorious.js") as resp:
        assert resp.status == 200


def _yolo_text(stack, key: str) -> str:
    return boto3.client("s3").get_object(Bucket=stack.aws.names.study_bucket, Key=key)["Body"].read().decode()


def test_two_reviewers_versions_and_a_stale_accept_refused(stack, client, phantom_dir, monkeypatch):
    """Alice corrects; Bob, whose page still shows the unreviewed study, accepts: refused with 409, her
    correction stays; after a reload Bob's save becomes version 2 and the history names both."""
    study = client.analyze(find_cases([phantom_dir])[4].image_path, timeout=180)
    sid = study["study_id"]
    assert study["feedback_version"] == 0 and study["feedback"] == []
    mine = [{"box": d["box"], "level": d["level"], "herniated": not d["herniated"], "model_disc": i}
            for i, d in enumerate(study["discs"]) if d["level"] in yolo.LEVELS]
    monkeypatch.setattr(stack.gateway, "user", page_user("alice"))
    saved = client.correct(sid, mine, base_version=0)
    assert saved["version"] == 1 and saved["reviewer"]["id"] == "alice"
    text = _yolo_text(stack, keys.corrected_key(sid))

    monkeypatch.setattr(stack.gateway, "user", page_user("bob"))
    with pytest.raises(ApiError) as ei:
        client.accept(sid, base_version=0)
    assert (ei.value.status, ei.value.code) == (409, "STALE_VERSION")
    assert "alice" in ei.value.message and "version 1" in ei.value.message and "Reload" in ei.value.message
    s3 = boto3.client("s3")
    with pytest.raises(s3.exceptions.NoSuchKey):  # the stale accept wrote no training file
        _yolo_text(stack, keys.initial_key(sid))
    after = client.study(sid)
    assert after["reviewed_discs"] == mine and after["review"]["by"]["id"] == "alice"
    assert _yolo_text(stack, keys.corrected_key(sid)) == text

    accepted = client.accept(sid, base_version=1)
    assert accepted["version"] == 2
    final = client.study(sid)
    assert final["feedback_version"] == 2 and final["review"]["kind"] == "accept" and final["reviewed_by"] == "bob"
    assert [(f["version"], f["kind"], f["reviewer"]["id"]) for f in final["feedback"]] == \
        [(1, "correction", "alice"), (2, "accept", "bob")]
    assert final["feedback"][0]["discs"] == mine  # version 1 is still there, unchanged
    assert all(f["created_at"] for f in final["feedback"])


def test_t12_l1_is_kept_with_the_review_but_not_in_the_yolo_file(stack, client, analysed):
    study = client.study(analysed["study_id"])
    h, w = study["image_size"]
    body = {"discs": [{"box": [10, 60, 50, 70], "level": "L5-S1", "herniated": False}],
            "other_discs": [{"box": [10, 5, 50, 15], "level": "T12-L1", "herniated": True}],
            "base_version": study["feedback_version"]}
    saved = client._request("POST", f"/studies/{study['study_id']}/corrections", body)
    assert [d["level"] for d in saved["discs"]] == ["L5-S1", "T12-L1"]
    assert len(saved["yolo"].splitlines()) == 1 and saved["yolo"].startswith("8 ")
    assert [d["level"] for d in client.study(study["study_id"])["reviewed_discs"]] == ["L5-S1", "T12-L1"]
    with pytest.raises(ApiError) as ei:  # other_discs is for levels outside the YOLO classes only
        client._request("POST", f"/studies/{study['study_id']}/corrections",
                        {"discs": [], "other_discs": [{"box": [1, 1, 5, 5], "level": "L4-L5"}],
                         "base_version": saved["version"]})
    assert ei.value.code == "BAD_REQUEST"


def test_worklist_filters_and_order_through_the_api(stack, client, phantom_dir, monkeypatch):
    monkeypatch.setattr(stack.gateway, "user", page_user("carol"))
    fresh = client.analyze(find_cases([phantom_dir])[5].image_path, timeout=180)
    reviewed = client.analyze(find_cases([phantom_dir])[0].image_path, timeout=180)
    client.accept(reviewed["study_id"])
    listed = client.studies(limit=100)
    order = [s["study_id"] for s in listed["studies"]]
    assert order.index(fresh["study_id"]) < order.index(reviewed["study_id"])  # unreviewed first
    first_reviewed = next(i for i, s in enumerate(listed["studies"]) if s["status"] == "REVIEWED")
    assert all(s["status"] != "REVIEWED" for s in listed["studies"][:first_reviewed])
    assert listed["caller"] == {"id": "carol", "kind": "user"} and "carol" in listed["reviewers"]
    mine = client.studies(reviewer="carol")["studies"]
    assert [s["study_id"] for s in mine] == [reviewed["study_id"]] and mine[0]["reviewed_at"]
    entry = next(s for s in listed["studies"] if s["study_id"] == fresh["study_id"])
    assert entry["max_probability"] == pytest.approx(max(d["probability"] for d in fresh["discs"]))
    assert entry["herniated"] == any(d["herniated"] for d in fresh["discs"]) and entry["needs_review"] is False
    by_p = [s.get("max_probability") for s in client.studies(limit=100, sort="probability", status="SUCCEEDED")["studies"]]
    assert by_p == sorted(by_p, key=lambda p: -(p if p is not None else -1))
    page1 = client.studies(limit=2, status="SUCCEEDED,REVIEWED")
    page2 = client.studies(limit=2, cursor=page1["next_cursor"], status="SUCCEEDED,REVIEWED")
    assert not {s["study_id"] for s in page1["studies"]} & {s["study_id"] for s in page2["studies"]}
    with pytest.raises(ApiError) as ei:
        client.studies(sort="size")
    assert ei.value.code == "BAD_REQUEST"
