"""`discscope demo`: the scripted story on a throwaway local stack.

A phantom study (whose truth we know) goes through the REST API like a clinical system would send
it; an "annotator" then corrects the result to the truth; we show what was stored: the YOLO file in
S3, the feedback record, and the FeedbackSaved event on its way to retraining.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import boto3

from devstack.stack import LocalStack
from discscope.client import Client
from discscope.phantom import write_case

LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


def step(n: int, text: str) -> None:
    print(f"\n[{n}] {text}", flush=True)


def run_demo(model: str) -> int:
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="discscope-demo-") as tmp:
        step(1, "generating a synthetic lumbar MRI study with known herniations")
        labels = write_case(Path(tmp), "demo_study", seed=1, herniation_rate=0.5)
        truth = labels["herniation"]
        study_file = Path(tmp) / "demo_study.mha"
        print(f"    {study_file.name}: herniated levels (truth) {[k for k, v in truth.items() if v] or 'none'}")

        step(2, "starting the local stack (moto AWS, in-process Lambdas, real state machine, endpoint)")
        with LocalStack(model, state_dir=None) as stack:
            print(stack.describe())
            client = Client(stack.gateway.api_url, stack.api_key)

            step(3, "analysing it through the REST API: create study, presigned POST upload, wait")
            from discscope.cli import print_study, status_printer

            study = client.analyze(study_file, on_status=status_printer())
            print_study(study)
            if study["status"] != "SUCCEEDED":
                return 1

            step(4, "an annotator corrects the result to the truth and saves it")
            corrected, changes = [], []
            for d in study["discs"]:
                if d["level"] not in LEVELS:
                    continue
                right = bool(truth.get(d["level"], d["herniated"]))
                if right != d["herniated"]:
                    changes.append(f"{d['level']}: herniated {d['herniated']} -> {right}")
                corrected.append({"box": d["box"], "level": d["level"], "herniated": right})
            print("    changes: " + ("; ".join(changes) if changes else "none needed: the model matched the truth"))
            saved = client.correct(study["study_id"], corrected)
            print(f"    stored {saved['s3_key']}:")
            for line in saved["yolo"].splitlines():
                print(f"      {line}")

            step(5, "what the system kept")
            again = client.study(study["study_id"])
            print(f"    GET /studies/{{id}}: status {again['status']}, feedback {again['feedback']}")
            text = boto3.client("s3").get_object(Bucket=stack.aws.names.study_bucket, Key=saved["s3_key"])["Body"].read().decode()
            print(f"    S3 object matches the API's answer: {text == saved['yolo']}")
            messages = boto3.client("sqs").receive_message(QueueUrl=stack.aws.event_queue_url, WaitTimeSeconds=1,
                                                           MaxNumberOfMessages=10).get("Messages", [])
            for m in messages:
                event = json.loads(m["Body"])
                print(f"    EventBridge {event['detail-type']}: {event['detail']}")
            print(f"\ndemo finished in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "models" / "baseline")))
