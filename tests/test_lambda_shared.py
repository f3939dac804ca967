"""lambdas/shared: keys, YOLO text, the study store (DynamoDB through moto), callers and the worklist."""

from __future__ import annotations

import gzip

import pytest
from discscope.levels import YOLO_CLASSES

from lambdas.shared import keys, store, yolo
from lambdas.shared.identity import Caller, Unauthenticated, caller_from_event, display_name
from lambdas.shared.worklist import WorklistQuery, disc_summary


def test_yolo_classes_match_the_package():
    assert yolo.CLASSES == YOLO_CLASSES


def test_yolo_round_trip_and_clipping():
    boxes = [yolo.Box("L4-L5", True, 10, 20, 50, 30), yolo.Box("L5-S1", False, -5, 40, 30, 52)]
    text = yolo.to_lines(boxes, 100, 80)
    assert text.splitlines() == ["7 0.300000 0.312500 0.400000 0.125000", "8 0.150000 0.575000 0.300000 0.150000"]
    back = yolo.parse(text, 100, 80)
    assert (back[0].level, back[0].herniated) == ("L4-L5", True)
    assert (back[0].x1, back[0].y1, back[0].x2, back[0].y2) == pytest.approx((10, 20, 50, 30))
    assert back[1].x1 == pytest.approx(0)  # clipped to the image


@pytest.mark.parametrize("text,message", [("3 0.5 0.5 0.1", "line 1"), ("12 0.5 0.5 0.1 0.1", "class 12"),
                                          ("1 0.5 1.5 0.1 0.1", "[0, 1]"), ("\n1 a b c d", "line 2")])
def test_yolo_rejects_malformed_lines(text, message):
    with pytest.raises(yolo.YoloError, match=message.replace("[", r"\[").replace("]", r"\]")):
        yolo.parse(text, 100, 100)


def test_yolo_rejects_unknown_level_and_empty_box():
    with pytest.raises(yolo.YoloError):
        yolo.to_lines([yolo.Box("T12-L1", False, 0, 0, 5, 5)], 10, 10)
    with pytest.raises(yolo.YoloError):
        yolo.to_lines([yolo.Box("L1-L2", False, 20, 0, 30, 5)], 10, 10)


@pytest.mark.parametrize("name,expected", [
    ("scan.nii.gz", "upload.nii.gz"), ("patient.2024-01-15.series3.nii.gz", "upload.nii.gz"),
    ("Doe^Jane 1970-01-01.MHA", "upload.mha"), ("../../etc/passwd", "upload"), ("C:\\dir\\x.mha", "upload.mha"),
    ("Ülçer scan (1).zip", "upload.zip"), ("", "upload"), ("..", "upload"), ("名前.png", "upload.png"),
    ("x" * 300 + ".jpeg", "upload.jpeg"), ("series.tar.gz", "upload.gz"), ("scan.mha.exe", "upload"),
])
def test_upload_keys_carry_the_study_id_and_a_known_extension_only(name, expected):
    sid = keys.new_study_id()
    assert keys.upload_key(sid, name) == f"uploads/{sid}/{expected}"


def test_upload_keys_parse_url_encoded_events():
    sid = keys.new_study_id()
    assert keys.parse_upload_key(f"uploads/{sid}/my+scan%281%29.mha") == (sid, "my scan(1).mha")
    assert keys.parse_upload_key(f"results/{sid}/x") is None
    assert keys.parse_upload_key("uploads/not-an-id/x.mha") is None
    assert keys.parse_upload_key(f"uploads/{sid}/a/b.mha") is None


def test_status_lifecycle_and_failure_fields(study_store):
    sid = keys.new_study_id()
    study_store.create(sid, "a.mha", keys.upload_key(sid, "a.mha"), "application/octet-stream", 10, owner="group:a")
    with pytest.raises(store.TransitionError):
        study_store.transition(sid, store.SUCCEEDED)  # must pass through PROCESSING
    study_store.transition(sid, store.PROCESSING)
    failed = study_store.mark_failed(sid, "TRUNCATED_FILE", "pixel data short")
    assert (failed["status"], failed["error_code"]) == ("FAILED", "TRUNCATED_FILE")
    study_store.transition(sid, store.PROCESSING)  # a re-run after the cause is fixed
    done = study_store.transition(sid, store.SUCCEEDED, discs=[{"level": "L4-L5", "probability": 0.25}])
    assert done["status"] == "SUCCEEDED" and "error_code" not in done
    assert done["discs"][0]["probability"] == 0.25
    study_store.transition(sid, store.REVIEWED)
    with pytest.raises(store.TransitionError) as ei:
        study_store.transition(sid, store.PROCESSING)
    assert ei.value.current == "REVIEWED"
    with pytest.raises(store.TransitionError):
        study_store.transition(keys.new_study_id(), store.PROCESSING)  # unknown study


def test_list_recent_is_newest_first_paginates_and_keeps_to_its_owner(study_store):
    ids = []
    for i in range(5):
        sid = keys.new_study_id()
        ids.append(sid)
        study_store.create(sid, f"{i}.mha", keys.upload_key(sid, f"{i}.mha"), "x", 1, owner="group:a")
        other = keys.new_study_id()
        study_store.create(other, f"{i}.mha", keys.upload_key(other, f"{i}.mha"), "x", 1, owner="client:b")
    page, cursor = study_store.list_recent("group:a", limit=3)
    assert [s["study_id"] for s in page] == ids[::-1][:3]
    rest, cursor2 = study_store.list_recent("group:a", limit=3, cursor=cursor)
    assert [s["study_id"] for s in rest] == ids[::-1][3:]
    assert cursor2 is None
    with pytest.raises(ValueError):
        study_store.list_recent("client:b", limit=3, cursor=cursor)  # a cursor of another owner's list
    assert len(study_store.list_recent("client:b", limit=10)[0]) == 5
    assert {s["status"] for s in study_store.unfinished()} == {"UPLOADED"} and len(study_store.unfinished()) == 10
    study_store.add_feedback(ids[0], "correction", "feedback/x.txt", [{"level": "L1-L2"}], "v1")
    assert study_store.feedback(ids[0])[0]["kind"] == "correction"


_NIFTI_HEADER = (348).to_bytes(4, "little") + bytes(340) + b"n+1\0" + bytes(4)
SNIFF_SAMPLES = [
    (b"PK\x03\x04" + b"\0" * 100, "a.zip"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "a.png"), (b"\xff\xd8\xff\xe0" + b"\0" * 100, "a.jpg"),
    (b"ObjectType = Image\nElementDataFile = LOCAL\n", "a.mha"), (b"NDims = 3\nElementDataFile = a.raw\n", "a.mhd"),
    (b"II*\x00" + b"\0" * 100, "a.tif"), (b"GIF89a" + b"\0" * 100, "a.gif"), (b"\0" * 128 + b"DICM" + b"\0" * 10, "a.dcm"),
    (b"plain text, renamed\n" * 5, "a.png"), (bytes(range(256)), "a.bin"),
    (gzip.compress(_NIFTI_HEADER), "upload.nii.gz"), (gzip.compress(_NIFTI_HEADER), "upload"),
    (gzip.compress(_NIFTI_HEADER), "patient.2024-01-15.series3.nii.gz"), (gzip.compress(b"tar" * 400), "a.nii.gz"),
    (_NIFTI_HEADER, "upload"), (b"Comment = hi\n" + b"NDims = 3\n" * 200 + b"ElementDataFile = /etc/services\n", "x.mha"),
]


@pytest.mark.parametrize("head,name", SNIFF_SAMPLES)
def test_lambda_sniffer_agrees_with_the_package(head, name):
    """lambdas/shared/sniff.py is a twin of discscope.io.sniff (Lambdas cannot import the package)."""
    from discscope import io as dio
    from discscope.errors import InputError

    from lambdas.shared import sniff

    try:
        expected = ("ok", dio.sniff(head, name))
    except InputError as exc:
        expected = ("error", exc.code)
    try:
        got = ("ok", sniff.sniff(head, name))
    except sniff.SniffError as exc:
        got = ("error", exc.code)
    assert got == expected


OWNER = "group:radiology"


def _finished(study_store, discs=None) -> str:
    sid = keys.new_study_id()
    study_store.create(sid, "a.mha", keys.upload_key(sid, "a.mha"), "x", 1, owner=OWNER)
    study_store.transition(sid, store.PROCESSING)
    study_store.transition(sid, store.SUCCEEDED, discs=discs or [])
    return sid


def _review(study_store, sid, base, who):
    at = store.now_iso()
    return study_store.save_review(sid, base, at, {"kind": "correction", "reviewer": {"id": who, "name": who}, "discs": []},
                                   {"reviewed_by": who, "reviewed_at": at})


def test_reviews_are_versions_and_a_stale_save_is_refused(study_store):
    sid = _finished(study_store)
    first = _review(study_store, sid, 0, "alice")
    assert (first["version"], first["replaces"]) == (1, 0)
    with pytest.raises(store.StaleVersion) as ei:  # bob still looks at the unreviewed study
        _review(study_store, sid, 0, "bob")
    assert (ei.value.current, ei.value.base) == (1, 0)
    assert ei.value.latest["reviewer"]["id"] == "alice"
    second = _review(study_store, sid, 1, "bob")  # after a reload he saves on version 1
    assert second["version"] == 2
    history = study_store.feedback(sid)
    assert [(f["version"], f["reviewer"]["id"]) for f in history] == [(1, "alice"), (2, "bob")]  # nothing overwritten
    study = study_store.get(sid)
    assert (study["status"], study["feedback_version"], study["reviewed_by"]) == ("REVIEWED", 2, "bob")
    with pytest.raises(store.StaleVersion):  # a version from the future is not the current one either
        _review(study_store, sid, 7, "carol")


def test_review_refused_before_the_study_is_finished(study_store):
    sid = keys.new_study_id()
    study_store.create(sid, "a.mha", keys.upload_key(sid, "a.mha"), "x", 1, owner=OWNER)
    with pytest.raises(store.TransitionError):
        _review(study_store, sid, 0, "alice")
    assert study_store.feedback(sid) == []


def test_a_study_reviewed_before_versioning_continues_at_its_review_count(study_store):
    sid = _finished(study_store)
    study_store.add_feedback(sid, "correction", "feedback/x.txt", [], "v1")  # the old way: no version
    study_store.transition(sid, store.REVIEWED)
    with pytest.raises(store.StaleVersion):
        _review(study_store, sid, 0, "alice")
    assert _review(study_store, sid, 1, "alice")["version"] == 2
    assert [f["version"] for f in study_store.feedback(sid)] == [1, 2]


@pytest.mark.parametrize("event,expected", [
    ({"requestContext": {"authorizer": {"claims": {"cognito:username": "u-123", "cognito:groups": "radiology,admins",
                                                   "token_use": "id", "email": "a@b.org"}}}},
     Caller("u-123", "user", ("radiology", "admins"))),
    ({"requestContext": {"authorizer": {"claims": {"cognito:username": "u-9", "cognito:groups": "[radiology admins]"}}}},
     Caller("u-9", "user", ("radiology", "admins"))),
    ({"requestContext": {"identity": {"userArn": "arn:aws:iam::1:role/ris"}}},
     Caller("arn:aws:iam::1:role/ris", "client", ())),
])
def test_caller_from_api_gateway_request_context(event, expected):
    assert caller_from_event(event) == expected


@pytest.mark.parametrize("event", [{}, {"requestContext": {"identity": {"apiKeyId": "abc123", "apiKey": "secret"}}},
                                   {"requestContext": {"authorizer": {"claims": {"client_id": "x", "token_use": "access"}}}}])
def test_no_principal_is_no_caller(event):
    """API keys and bare client tokens are not how DiscScope authenticates: nobody is made up."""
    with pytest.raises(Unauthenticated):
        caller_from_event(event)


def test_display_name_prefers_the_email_claim():
    claims = {"cognito:username": "5f1c-uuid", "email": "dr.who@example.org"}
    assert display_name({"requestContext": {"authorizer": {"claims": claims}}}) == "dr.who@example.org"
    assert display_name({"requestContext": {"authorizer": {"claims": {"cognito:username": "alice"}}}}) == "alice"


def _listed(n, status, created, **fields):
    return {"study_id": f"s{n}", "status": status, "created_at": created} | fields


WINDOW = [
    _listed(1, "REVIEWED", "2024-05-01T10:00", max_probability=0.99, herniated=True, reviewed_by="alice"),
    _listed(2, "SUCCEEDED", "2024-05-02T10:00", max_probability=0.20, needs_review=True),
    _listed(3, "SUCCEEDED", "2024-05-03T10:00", max_probability=0.90, herniated=True),
    _listed(4, "FAILED", "2024-05-04T10:00"),
    _listed(5, "REVIEWED", "2024-05-05T10:00", max_probability=0.10, reviewed_by="bob"),
    _listed(6, "SUCCEEDED", "2024-05-06T10:00", max_probability=0.50),
]


@pytest.mark.parametrize("params,order", [
    ({}, ["s6", "s4", "s3", "s2", "s5", "s1"]),                                   # unreviewed first, newest first
    ({"sort": "probability"}, ["s3", "s6", "s2", "s4", "s1", "s5"]),              # highest P(LDH), unknown last
    ({"sort": "needs_review"}, ["s2", "s6", "s4", "s3", "s5", "s1"]),
    ({"status": "SUCCEEDED,failed"}, ["s6", "s4", "s3", "s2"]),
    ({"reviewer": "alice"}, ["s1"]),
    ({"herniated": "true"}, ["s3", "s1"]),
    ({"herniated": "false", "needs_review": "false"}, ["s6", "s4", "s5"]),
])
def test_worklist_order_and_filters(params, order):
    assert [s["study_id"] for s in WorklistQuery.from_params(params).arrange(WINDOW)] == order


@pytest.mark.parametrize("params,word", [({"status": "DONE"}, "status"), ({"sort": "size"}, "sort"),
                                         ({"herniated": "maybe"}, "herniated"), ({"since": "last week"}, "since")])
def test_worklist_refuses_unknown_parameters(params, word):
    with pytest.raises(ValueError, match=word):
        WorklistQuery.from_params(params)


def test_disc_summary_tolerates_missing_probabilities():
    assert disc_summary([{"probability": 0.3}, {"probability": 0.7, "herniated": True}, {"level": "T12-L1"}]) == \
        {"max_probability": 0.7, "herniated": True}
    assert disc_summary(None) == {"max_probability": None, "herniated": False}


def test_list_window_by_date_and_cap(study_store):
    ids = [_finished(study_store) for _ in range(4)]
    everything, more = study_store.list_window(OWNER)
    assert [s["study_id"] for s in everything] == ids[::-1] and not more
    capped, more = study_store.list_window(OWNER, cap=3)
    assert len(capped) == 3 and more
    today = everything[0]["created_at"][:10]
    assert len(study_store.list_window(OWNER, since=today, until=today)[0]) == 4
    assert study_store.list_window(OWNER, until="2000-01-01")[0] == []
    assert study_store.list_window("group:another")[0] == []  # each owner's window holds its own studies
    assert set(everything[0]) <= set(store.LIST_FIELDS)  # list entries carry the projected fields only
