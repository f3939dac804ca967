"""`discscope demo`: the scripted story on a throwaway local stack.

A phantom study (whose truth we know) goes through the REST API like a clinical system would send
it; an "annotator" then corrects the result to the truth; we show what was stored: the YOLO file in
S3 and the feedback record. A second study is reviewed and accepted, which reaches the retraining
threshold: the FeedbackSaved events start the pipeline, whose steps run here; the run ends with
the candidate-vs-production table and the model the endpoint serves afterwards.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import boto3

from devstack.operator import follow
from devstack.pipeline_runner import summary_table
from devstack.retrain_data import RetrainData
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
        # retraining after two reviews, deployed at once when the candidate passes; 300 classifier
        # iterations instead of the pipeline's 900 keep the demo at a few minutes on two cores
        with LocalStack(model, state_dir=None, retrain_data=RetrainData(Path(tmp) / "datasets"),
                        settings={"RETRAIN_MIN_FEEDBACK": "2", "RETRAIN_APPROVAL": "auto"},
                        pipeline_overrides={"ClsIters": 300}) as stack:
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
            history = ", ".join(f"v{f['version']} {f['kind']} by {f['reviewer']['id']} at {f['created_at']}" for f in again["feedback"])
            print(f"    GET /studies/{{id}}: status {again['status']}, review history: {history}")
            text = boto3.client("s3").get_object(Bucket=stack.aws.names.study_bucket, Key=saved["s3_key"])["Body"].read().decode()
            print(f"    S3 object matches the API's answer: {text == saved['yolo']}")
            print(f"    retraining: {stack.store.retrain_state()['pending']} saved review(s); 2 start a run")

            step(6, "a second study is reviewed and accepted as the model saw it: retraining starts")
            write_case(Path(tmp), "demo_study_2", seed=2, herniation_rate=0.5)
            second = client.analyze(Path(tmp) / "demo_study_2.mha", on_status=status_printer())
            client.accept(second["study_id"])
            deadline, runs = time.time() + 60, []
            while not runs and time.time() < deadline:  # the trigger runs behind EventBridge and SQS
                runs = sorted(stack.work_dir.glob("*/progress.log"))
                time.sleep(0.2)
            if not runs:
                print("    no pipeline run started")
                return 1
            result = follow(runs[0].parent, timeout=3600, log=lambda line: print(f"    {line}", flush=True))

            step(7, "the outcome")
            print(summary_table(result))
            deadline = time.time() + 30
            while result.approval == "Approved" and client.current_model()["model_version"] != result.candidate_version \
                    and time.time() < deadline:
                time.sleep(0.3)
            print(f"    GET /models/current: {client.current_model()['model_version']}")
            print(f"\ndemo finished in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "models" / "baseline")))
