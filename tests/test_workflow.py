"""The real StudyWorkflow definition executed by moto, with in-process Lambdas and the real endpoint server."""

from __future__ import annotations

import json
import os
import time

import boto3
import pytest

from devstack import lambda_runtime
from devstack.aws import LocalAws
from discscope.dataset import find_cases
from discscope.server import EndpointServer
from lambdas.shared import keys
from lambdas.shared.settings import Settings
from lambdas.shared.store import StudyStore


@pytest.fixture(scope="module")
def stack(baseline_model):
    saved = dict(os.environ)
    endpoint = EndpointServer(baseline_model, port=0).start()
    aws = LocalAws().start(endpoint_url=endpoint.url)
    aws.provision()
    try:
        yield aws, endpoint
    finally:
        aws.stop()
        endpoint.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def store(stack):
    return StudyStore(boto3.resource("dynamodb").Table(Settings.from_env().table_name))


def run_study(aws: LocalAws, store: StudyStore, filename: str, data: bytes, timeout: float = 120) -> dict:
    """Register the study (as the API does), upload it; the S3 event starts the workflow."""
    sid = keys.new_study_id()
    key = keys.upload_key(sid, filename)
    store.create(sid, filename, key, "application/octet-stream", len(data), owner="client:test")
    boto3.client("s3").put_object(Bucket=aws.names.study_bucket, Key=key, Body=data)
    return _wait_status(store, sid, timeout=timeout)


def execute(aws, store, sid, key, timeout=120) -> dict:
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=aws.state_machine_arn, name=f"{sid}-{int(time.time() * 1000)}",
                              input=json.dumps({"study_id": sid, "bucket": aws.names.study_bucket, "key": key}))["executionArn"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            return store.get(sid) | {"_execution": desc["status"]}
        time.sleep(0.3)
    raise AssertionError(f"execution {arn} still running after {timeout}s")


def test_moto_lambda_hook_is_the_shape_we_patch():
    assert lambda_runtime.moto_matches()


def test_valid_study_succeeds_with_artifacts(stack, store, phantom_dir):
    aws, _ = stack
    study = run_study(aws, store, "scan.mha", find_cases([phantom_dir])[0].image_path.read_bytes())
    assert study["status"] == "SUCCEEDED"
    assert len(study["discs"]) >= 5 and study["model_version"]
    s3 = boto3.client("s3")
    for name in ("result.json", "preview.png", "mask.png", "overlay.png", "mask.mha"):
        head = s3.head_object(Bucket=aws.names.study_bucket, Key=keys.result_key(study["study_id"], name))
        assert head["ContentLength"] > 0
    result = json.loads(s3.get_object(Bucket=aws.names.study_bucket, Key=keys.result_key(study["study_id"], "result.json"))["Body"].read())
    assert result["discs"] == study["discs"]


@pytest.mark.parametrize("filename,data,code", [
    ("notes.png", b"this is a text file, renamed\n" * 20, "NOT_AN_IMAGE"),
    ("scan.tif", b"II*\x00" + b"\x00" * 600, "UNSUPPORTED_FORMAT"),
    ("trunc.mha", b"ObjectType = Image\nNDims = 3\nDimSize = 64 64 64\nElementType = MET_SHORT\nElementDataFile = LOCAL\n" + b"\0" * 99,
     "TRUNCATED_FILE"),
])
def test_bad_input_fails_with_code_and_keeps_upload(stack, store, filename, data, code):
    aws, _ = stack
    study = run_study(aws, store, filename, data)
    assert study["status"] == "FAILED"
    assert study["error_code"] == code and study["message"]
    kept = boto3.client("s3").get_object(Bucket=aws.names.study_bucket, Key=study["upload_key"])["Body"].read()
    assert kept == data


def test_endpoint_down_retries_then_fails_and_rerun_recovers(stack, store, phantom_dir, monkeypatch):
    aws, endpoint = stack
    from lambdas import workflow

    data = find_cases([phantom_dir])[1].image_path.read_bytes()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:9")  # nothing listens there
    workflow.default_deps.cache_clear()
    started = time.time()
    study = run_study(aws, store, "scan.mha", data)
    assert study["status"] == "FAILED" and study["error_code"] == "ENDPOINT_UNAVAILABLE"
    assert time.time() - started >= 1 + 2 + 4 - 0.5  # three retries with backoff happened
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint.url)
    workflow.default_deps.cache_clear()
    again = execute(aws, store, study["study_id"], study["upload_key"])
    assert again["status"] == "SUCCEEDED" and "error_code" not in again


def _wait_status(store, sid, statuses=("SUCCEEDED", "FAILED"), timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        study = store.get(sid)
        if study and study["status"] in statuses:
            return study
        time.sleep(0.3)
    raise AssertionError(f"study {sid} did not reach {statuses}: {store.get(sid)}")


def test_s3_upload_triggers_ingest_and_workflow(stack, store, phantom_dir):
    """An object written under uploads/ starts the workflow by itself (URL-encoded key in the event)."""
    aws, _ = stack
    sid = keys.new_study_id()
    key = f"uploads/{sid}/my scan (1).mha"
    boto3.client("s3").put_object(Bucket=aws.names.study_bucket, Key=key,
                                  Body=find_cases([phantom_dir])[2].image_path.read_bytes())
    study = _wait_status(store, sid)
    assert study["status"] == "SUCCEEDED" and study["filename"] == "my scan (1).mha"


def test_duplicate_s3_event_starts_one_execution(stack, store, phantom_dir):
    from lambdas import ingest

    aws, _ = stack
    sid = keys.new_study_id()
    key = keys.upload_key(sid, "dup.mha")
    s3 = boto3.client("s3")
    s3.put_bucket_notification_configuration(Bucket=aws.names.study_bucket, NotificationConfiguration={})  # deliver by hand
    try:
        s3.put_object(Bucket=aws.names.study_bucket, Key=key, Body=find_cases([phantom_dir])[3].image_path.read_bytes())
        event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Post",
                              "s3": {"bucket": {"name": aws.names.study_bucket},
                                     "object": {"key": key, "size": 10, "sequencer": "0055AED6DCD90281E5"}}}]}
        first = ingest.ingest(event)
        second = ingest.ingest(json.loads(json.dumps(event)))
        assert first == second and len(first) == 1
        sfn = boto3.client("stepfunctions")
        names = [e["name"] for e in sfn.list_executions(stateMachineArn=aws.state_machine_arn)["executions"]]
        assert sum(n.startswith(sid) for n in names) == 1
        assert _wait_status(store, sid)["status"] == "SUCCEEDED"
    finally:
        aws.connect_uploads()  # restore the trigger for later tests


def test_endpoint_erroring_is_retried_then_failed(stack, store, phantom_dir, monkeypatch):
    """The real server answering 500 (a crash inside the model) reaches the workflow as a ModelError."""
    aws, endpoint = stack
    calls = []

    def crash(*args, **kwargs):
        calls.append(time.time())
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(endpoint.model_host, "invoke", crash)
    study = run_study(aws, store, "scan.mha", find_cases([phantom_dir])[4].image_path.read_bytes())
    assert study["status"] == "FAILED" and study["error_code"] == "INTERNAL_ERROR"
    assert "illegal memory access" in study["message"]
    assert len(calls) == 4  # the first try and three retries
    assert calls[-1] - calls[0] >= 1 + 2 + 4 - 0.5  # with exponential backoff


REVIEW_RESULT = {"spacing_source": "estimated", "naming_confidence": 0.41, "needs_review": True,
                 "review_reasons": [{"code": "SPACING_ESTIMATED", "message": "no spacing in the header"},
                                    {"code": "LOW_NAMING_CONFIDENCE", "message": "levels may be shifted"}]}


def test_review_fields_are_carried_into_the_study_record(stack, store, phantom_dir, monkeypatch):
    """The endpoint's review fields (needs_review, reasons, naming confidence, per-disc grades) reach
    result.json and the study record through Infer and Persist."""
    aws, endpoint = stack
    real = endpoint.model_host.invoke

    def with_review_fields(*args, **kwargs):
        result = real(*args, **kwargs)
        for i, disc in enumerate(result["discs"]):
            disc |= {"pfirrmann": 2 + i % 3, "bulging_probability": 0.1 * i}
        return result | REVIEW_RESULT

    monkeypatch.setattr(endpoint.model_host, "invoke", with_review_fields)
    study = run_study(aws, store, "scan.mha", find_cases([phantom_dir])[5].image_path.read_bytes())
    assert study["status"] == "SUCCEEDED"
    assert {k: study[k] for k in REVIEW_RESULT} == REVIEW_RESULT
    assert study["discs"][1]["pfirrmann"] == 3 and study["discs"][1]["bulging_probability"] == pytest.approx(0.1)
    assert study["max_probability"] == pytest.approx(max(d["probability"] for d in study["discs"]))
    result = json.loads(boto3.client("s3").get_object(Bucket=aws.names.study_bucket,
                                                      Key=keys.result_key(study["study_id"], "result.json"))["Body"].read())
    assert result["needs_review"] is True and result["review_reasons"] == REVIEW_RESULT["review_reasons"]


def test_an_older_result_without_review_fields_is_kept_as_it_is(stack, store, phantom_dir, monkeypatch):
    aws, endpoint = stack
    real = endpoint.model_host.invoke

    def older_model(*args, **kwargs):
        result = real(*args, **kwargs)
        for key in REVIEW_RESULT:
            result.pop(key, None)
        for disc in result["discs"]:
            disc.pop("pfirrmann", None), disc.pop("bulging_probability", None)
        return result

    monkeypatch.setattr(endpoint.model_host, "invoke", older_model)
    study = run_study(aws, store, "scan.mha", find_cases([phantom_dir])[0].image_path.read_bytes())
    assert study["status"] == "SUCCEEDED"
    assert not set(REVIEW_RESULT) - {"needs_review"} & set(study)  # absent, not stored empty
    assert study["needs_review"] is False  # the worklist reads "not flagged"


def test_infer_asks_for_s3_output_and_keeps_only_the_keys_it_asked_for():
    """The endpoint writes the artifacts; the step names the prefix and records only keys under it."""
    import io
    from dataclasses import replace

    from lambdas import workflow

    sid = keys.new_study_id()
    sent, written = {}, {}

    class Runtime:
        def invoke_endpoint(self, **kwargs):
            sent.update(json.loads(kwargs["Body"]))
            answer = {"model_version": "v", "discs": [], "image_size": [4, 4], "spacing_source": "header",
                      "artifacts": {"overlay.png": keys.result_key(sid, "overlay.png"),
                                    "mask.png": f"results/{keys.new_study_id()}/mask.png", "evil.sh": "results/x"}}
            return {"Body": io.BytesIO(json.dumps(answer).encode())}

    class S3:
        def put_object(self, **kwargs):
            written[kwargs["Key"]] = json.loads(kwargs["Body"])

    deps = workflow.Deps(S3(), Runtime(), None, replace(Settings.from_env(), endpoint_name="discscope"))
    out = workflow.infer({"study_id": sid, "bucket": "studies", "key": f"uploads/{sid}/a.mha"}, deps)
    assert sent == {"s3_uri": f"s3://studies/uploads/{sid}/a.mha", "output_uri": f"s3://studies/results/{sid}/"}
    assert out["artifacts"] == {"overlay.png": f"results/{sid}/overlay.png", "result.json": f"results/{sid}/result.json"}
    assert written[f"results/{sid}/result.json"]["spacing_source"] == "header"  # newer fields pass through
    assert "artifacts" not in written[f"results/{sid}/result.json"]
