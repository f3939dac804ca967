"""SageMaker Processing script (pipeline step PreprocessFeedback): YOLO feedback -> classifier samples.

Inputs (SageMaker's processing conventions; flags override the paths for local runs):
- /opt/ml/processing/input/feedback: the study bucket's `feedback/` prefix (a few KB of YOLO text);
- the study bucket itself, read with boto3 for just the studies that have feedback: the upload
  under `uploads/{id}/` and `results/{id}/result.json` (which slice the boxes were drawn on).
  Copying all of `uploads/` into the container would move every study ever made.
Output: /opt/ml/processing/output/feedback/{crops/*.npz, labels.csv, report.json}.

A file that cannot be used (bad YOLO line, study gone, image unreadable, size mismatch) is listed
in report.json with its reason; the others are kept. No usable feedback at all is an error.
"""

from __future__ import annotations

import vendored  # noqa: F401  (first: the code's lib/ on sys.path in a container)

import argparse
import json
import sys
import tempfile
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from discscope.errors import InputError
from discscope.feedback import FeedbackError, find_feedback, parse_yolo, save_samples, study_samples
from discscope.io import read_study
from discscope.preprocess import normalize


class StudyFiles:
    """The upload and result.json of a study in the study bucket."""

    def __init__(self, bucket: str, s3=None):
        self.bucket, self.s3 = bucket, s3 or boto3.client("s3")

    def result(self, study_id: str) -> dict:
        body = self.s3.get_object(Bucket=self.bucket, Key=f"results/{study_id}/result.json")["Body"].read()
        return json.loads(body)

    def upload(self, study_id: str, into: Path) -> Path:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"uploads/{study_id}/").get("Contents", [])
        if not listed:
            raise FeedbackError("the study's upload is gone")
        key = listed[0]["Key"]
        path = into / key.rsplit("/", 1)[-1]
        self.s3.download_file(self.bucket, key, str(path))
        return path


def preprocess(feedback_dir: str | Path, out_dir: str | Path, studies: StudyFiles, log=print) -> dict:
    files, skipped = find_feedback(feedback_dir)
    rows, rejected = [], list(skipped)
    for f in files:
        try:
            result = studies.result(f.study_id)
            height, width = result["image_size"]
            boxes = parse_yolo(f.path.read_text(errors="replace"), width, height)
            with tempfile.TemporaryDirectory() as tmp:
                volume = studies.upload(f.study_id, Path(tmp))
                volume = read_study(volume)
            if tuple(volume.shape[1:]) != (height, width):
                raise FeedbackError(f"the key slice was {width}x{height} but the study reads as {volume.shape[2]}x{volume.shape[1]}")
            samples = study_samples(normalize(volume.array), int(result["slice_index"]), volume.spacing[0], boxes)
            rows += [(f.study_id, f.kind, b, s) for b, s in samples]
        except (FeedbackError, InputError, ClientError, BotoCoreError, KeyError, ValueError, OSError) as exc:
            reason = exc.code if isinstance(exc, InputError) else type(exc).__name__
            rejected.append({"file": f"{f.path.parent.name}/{f.path.name}", "study_id": f.study_id,
                             "reason": reason, "message": str(exc)[:300]})
            log(f"skipped {f.path.name}: {exc}")
    report = {
        "studies_with_feedback": len(files),
        "studies_used": len({r[0] for r in rows}),
        "samples": len(rows),
        "herniated": sum(r[3].label for r in rows),
        "corrections": len({r[0] for r in rows if r[1] == "correction"}),
        "accepted": len({r[0] for r in rows if r[1] == "accept"}),
        "rejected": rejected,
    }
    save_samples(out_dir, rows, report)
    log(f"{report['samples']} disc samples from {report['studies_used']} studies; {len(rejected)} file(s) not used")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study-bucket", required=True)
    parser.add_argument("--input-dir", default="/opt/ml/processing/input/feedback")
    parser.add_argument("--output-dir", default="/opt/ml/processing/output/feedback")
    args = parser.parse_args(argv)
    report = preprocess(args.input_dir, args.output_dir, StudyFiles(args.study_bucket))
    if not report["samples"]:
        print(f"no usable feedback: {json.dumps(report['rejected'])[:2000]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
