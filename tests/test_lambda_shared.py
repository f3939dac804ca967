"""lambdas/shared: keys, YOLO text and the study store (DynamoDB through moto)."""

from __future__ import annotations

import pytest
from discscope.levels import YOLO_CLASSES

from lambdas.shared import keys, store, yolo


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
    ("scan.nii.gz", "scan.nii.gz"), ("../../etc/passwd", "passwd"), ("C:\\dir\\x.mha", "x.mha"),
    ("Ülçer scan (1).zip", "Ulcer_scan_1.zip"), ("", "study"), ("..", "study"), ("名前.png", "study.png"),
    ("x" * 300 + ".mha", "x" * 100 + ".mha"),
])
def test_safe_filename(name, expected):
    assert keys.safe_filename(name) == expected


def test_upload_keys_parse_url_encoded_events():
    sid = keys.new_study_id()
    assert keys.parse_upload_key(f"uploads/{sid}/my+scan%281%29.mha") == (sid, "my scan(1).mha")
    assert keys.parse_upload_key(f"results/{sid}/x") is None
    assert keys.parse_upload_key("uploads/not-an-id/x.mha") is None
    assert keys.parse_upload_key(f"uploads/{sid}/a/b.mha") is None


def test_status_lifecycle_and_failure_fields(study_store):
    sid = keys.new_study_id()
    study_store.create(sid, "a.mha", keys.upload_key(sid, "a.mha"), "application/octet-stream", 10)
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


def test_list_recent_is_newest_first_and_paginates(study_store):
    ids = []
    for i in range(5):
        sid = keys.new_study_id()
        ids.append(sid)
        study_store.create(sid, f"{i}.mha", keys.upload_key(sid, f"{i}.mha"), "x", 1)
    page, cursor = study_store.list_recent(limit=3)
    assert [s["study_id"] for s in page] == ids[::-1][:3]
    rest, cursor2 = study_store.list_recent(limit=3, cursor=cursor)
    assert [s["study_id"] for s in rest] == ids[::-1][3:]
    assert cursor2 is None
    study_store.add_feedback(ids[0], "correction", "feedback/x.txt", [{"level": "L1-L2"}], "v1")
    assert study_store.feedback(ids[0])[0]["kind"] == "correction"


SNIFF_SAMPLES = [
    (b"PK\x03\x04" + b"\0" * 100, "a.zip"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "a.png"), (b"\xff\xd8\xff\xe0" + b"\0" * 100, "a.jpg"),
    (b"ObjectType = Image\nElementDataFile = LOCAL\n", "a.mha"), (b"NDims = 3\nElementDataFile = a.raw\n", "a.mhd"),
    (b"II*\x00" + b"\0" * 100, "a.tif"), (b"GIF89a" + b"\0" * 100, "a.gif"), (b"\0" * 128 + b"DICM" + b"\0" * 10, "a.dcm"),
    (b"plain text, renamed\n" * 5, "a.png"), (bytes(range(256)), "a.bin"),
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
