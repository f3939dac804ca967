"""Feedback -> classifier samples: file selection, YOLO parsing, and preprocess_feedback.py against S3 (moto)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from discscope.feedback import FeedbackError, find_feedback, load_samples, parse_yolo
from discscope.phantom import write_case
from lambdas.shared import keys, yolo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "sagemaker"))
import preprocess_feedback  # noqa: E402  (a SageMaker script, not a package module)

A, B, C = "a" * 32, "b" * 32, "c" * 32


def _write(root: Path, key: str, text: str) -> None:
    path = root / key.removeprefix("feedback/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_correction_outranks_an_acceptance_of_the_same_study(tmp_path):
    _write(tmp_path, keys.initial_key(A), "0 0.5 0.5 0.1 0.1\n")
    _write(tmp_path, keys.corrected_key(A), "1 0.5 0.5 0.1 0.1\n")
    _write(tmp_path, keys.initial_key(B), "0 0.5 0.5 0.1 0.1\n")
    _write(tmp_path, "initial_model_predictions/notes.txt", "hello")
    files, skipped = find_feedback(tmp_path)
    assert [(f.study_id, f.kind) for f in files] == [(A, "correction"), (B, "accept")]
    reasons = {s["file"]: s["reason"] for s in skipped}
    assert reasons == {f"initial_model_predictions/initial_{A}.txt": "SUPERSEDED_BY_CORRECTION",
                       "initial_model_predictions/notes.txt": "UNEXPECTED_FILE_NAME"}


def test_yolo_written_by_the_api_reads_back_in_the_package():
    boxes = [yolo.Box("L4-L5", True, 10, 20, 50, 40), yolo.Box("L5-S1", False, 12, 50, 48, 70)]
    parsed = parse_yolo(yolo.to_lines(boxes, 200, 100), 200, 100)
    assert [(b.level, b.herniated) for b in parsed] == [("L4-L5", True), ("L5-S1", False)]
    assert np.allclose(parsed[0].box, (10, 20, 50, 40), atol=1e-3)


@pytest.mark.parametrize("text, message", [
    ("0 0.5 0.5 0.1\n", "line 1: expected"),
    ("0 0.5 0.5 0.1 0.1\n12 0.5 0.5 0.1 0.1\n", "line 2: class 12"),
    ("0 1.5 0.5 0.1 0.1\n", "coordinates"),
    ("0 0.5 0.5 0.1 0.1\n1 0.4 0.4 0.1 0.1\n", "L1-L2 appears twice"),
    ("\n\n", "no boxes"),
])
def test_malformed_yolo_is_refused_with_the_line(text, message):
    with pytest.raises(FeedbackError, match=message):
        parse_yolo(text, 100, 100)


@pytest.fixture
def feedback_bucket(tmp_path):
    """Three studies with feedback in S3 (moto): one good, one malformed, one whose upload is gone."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="studies")
        labels = write_case(tmp_path, "good", seed=3, herniation_rate=0.5)
        from discscope.io import read_study
        from discscope.detection import boxes_on_slice, key_slice
        from discscope.levels import MASK_LEVELS

        mask = read_study(tmp_path / "good_mask.mha").array
        k = key_slice(mask)
        h, w = mask.shape[1:]
        boxes = [yolo.Box(MASK_LEVELS[v], bool(labels["herniation"][MASK_LEVELS[v]]), *box)
                 for v, (box, _) in boxes_on_slice(mask, k).items() if MASK_LEVELS[v] in yolo.LEVELS]
        s3.upload_file(str(tmp_path / "good.mha"), "studies", keys.upload_key(A, "good.mha"))
        s3.upload_file(str(tmp_path / "good.mha"), "studies", keys.upload_key(B, "other.mha"))
        for study in (A, B, C):
            s3.put_object(Bucket="studies", Key=keys.result_key(study, "result.json"),
                          Body=json.dumps({"slice_index": k, "image_size": [h, w]}))
        feedback = tmp_path / "feedback"
        _write(feedback, keys.corrected_key(A), yolo.to_lines(boxes, w, h))
        _write(feedback, keys.initial_key(B), "3 0.5 0.5 nan 0.1\n")
        _write(feedback, keys.initial_key(C), yolo.to_lines(boxes, w, h))
        yield s3, feedback, boxes


def test_preprocess_keeps_the_good_feedback_and_reports_the_rest(feedback_bucket, tmp_path):
    s3, feedback, boxes = feedback_bucket
    out = tmp_path / "out"
    report = preprocess_feedback.preprocess(feedback, out, preprocess_feedback.StudyFiles("studies", s3), log=lambda _: None)
    assert report["samples"] == len(boxes) and report["studies_used"] == 1 and report["corrections"] == 1
    rejected = {r["study_id"]: r for r in report["rejected"]}
    assert set(rejected) == {B, C}
    assert "line 1" in rejected[B]["message"] and "gone" in rejected[C]["message"]
    samples = load_samples(out)
    assert [(s.level, s.label) for s in samples] == [(b.level, int(b.herniated)) for b in boxes]
    for s in samples:
        assert s.stack.shape[0] == 3 and s.stack.dtype == np.float16
        x1, y1, x2, y2 = s.box
        assert 0 <= x1 < x2 <= s.stack.shape[2] and 0 <= y1 < y2 <= s.stack.shape[1]
    assert json.loads((out / "report.json").read_text())["samples"] == len(boxes)


def test_preprocess_script_fails_clearly_when_nothing_is_usable(feedback_bucket, tmp_path, capsys):
    s3, feedback, _ = feedback_bucket
    (feedback / f"user_corrected_labels/overlay_{A}.txt").write_text("garbage\n")
    code = preprocess_feedback.main(["--study-bucket", "studies", "--input-dir", str(feedback), "--output-dir", str(tmp_path / "o")])
    assert code == 1
    assert "no usable feedback" in capsys.readouterr().err
