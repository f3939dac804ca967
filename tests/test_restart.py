"""The local stack keeps studies, results and its API key across a restart (own module: one stack at a time)."""

from __future__ import annotations

import urllib.request

from devstack.stack import LocalStack
from discscope.client import Client
from discscope.dataset import find_cases


def test_state_survives_a_restart(baseline_model, tmp_path, phantom_dir):
    with LocalStack(baseline_model, state_dir=tmp_path) as first:
        c = Client(first.gateway.api_url, first.api_key)
        done = c.analyze(find_cases([phantom_dir])[4].image_path, timeout=180)
        key = first.api_key
    with LocalStack(baseline_model, state_dir=tmp_path) as second:
        assert second.api_key == key
        c = Client(second.gateway.api_url, second.api_key)
        back = c.study(done["study_id"])
        assert back["status"] == "SUCCEEDED" and back["discs"] == done["discs"]
        with urllib.request.urlopen(back["artifacts"]["overlay.png"]) as resp:
            assert resp.read()[:8] == b"\x89PNG\r\n\x1a\n"
        assert c.current_model()["model_version"]


def test_restart_with_unfinished_studies(baseline_model, tmp_path, phantom_dir):
    """A study registered but never uploaded is skipped; one uploaded but not yet run is run."""
    import boto3

    from devstack.gateway import LOCAL_GROUP
    from lambdas.shared import keys

    with LocalStack(baseline_model, state_dir=tmp_path) as first:
        c = Client(first.gateway.api_url, first.api_key)
        never = c.create_study("never.mha", 100, "application/octet-stream")["study_id"]
        pending = keys.new_study_id()
        key = keys.upload_key(pending, "pending.mha")
        first.store.create(pending, "pending.mha", key, "application/octet-stream", 1,
                           owner=f"group:{LOCAL_GROUP}")  # the page's, so its client may wait on it
        boto3.client("s3").put_bucket_notification_configuration(Bucket=first.aws.names.study_bucket,
                                                                 NotificationConfiguration={})
        boto3.client("s3").put_object(Bucket=first.aws.names.study_bucket, Key=key,
                                      Body=find_cases([phantom_dir])[0].image_path.read_bytes())
    with LocalStack(baseline_model, state_dir=tmp_path) as second:
        c = Client(second.gateway.api_url, second.api_key)
        assert c.wait(pending, timeout=120)["status"] == "SUCCEEDED"
        assert c.study(never)["status"] == "UPLOADED"


def test_a_promoted_model_serves_again_after_a_restart(baseline_model, tmp_path):
    """Promotion goes through the deploy Lambda's local endpoint switch; the restart restores it."""
    import json

    import boto3

    from discscope.artifact import load_weights, pack, save_model_dir

    weights, metadata = load_weights(baseline_model)
    promoted = save_model_dir(tmp_path / "promoted", weights, metadata | {"version": "promoted-v2"})
    with LocalStack(baseline_model, state_dir=tmp_path / "state") as first:
        boto3.client("s3").upload_file(str(pack(promoted, tmp_path / "m.tar.gz")), first.aws.names.model_bucket, "cand/model.tar.gz")
        sm = boto3.client("sagemaker")
        arn = sm.create_model_package(
            ModelPackageGroupName="discscope", ModelApprovalStatus="Approved", CustomerMetadataProperties={"model_version": "promoted-v2"},
            InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": f"s3://{first.aws.names.model_bucket}/cand/model.tar.gz"}],
                                    "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]})["ModelPackageArn"]
        event = {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change",
                 "detail": {"ModelPackageArn": arn, "ModelPackageGroupName": "discscope", "ModelApprovalStatus": "Approved"}}
        resp = boto3.client("lambda").invoke(FunctionName="discscope-deploy-model", Payload=json.dumps(event).encode())
        assert json.loads(resp["Payload"].read())[0]["complete"] is True
        assert first.endpoint.model_host.predictor.version == "promoted-v2"
    with LocalStack(baseline_model, state_dir=tmp_path / "state") as second:
        assert second.endpoint.model_host.predictor.version == "promoted-v2"
        assert Client(second.gateway.api_url, second.api_key).current_model()["model_version"] == "promoted-v2"


def test_a_state_folder_from_the_snapshot_days_is_converted(baseline_model, tmp_path):
    """Before write-through, .devstack held periodic snapshots: s3/<bucket>/<key> files and one
    JSON-lines file per table. They are read once into the new layout; nothing is lost."""
    import json

    import boto3

    from devstack.gateway import LOCAL_GROUP
    from lambdas.shared import keys

    sid = keys.new_study_id()
    upload = f"uploads/{sid}/scan.mha"
    (tmp_path / "s3" / "discscope-studies" / "uploads" / sid).mkdir(parents=True)
    (tmp_path / "s3" / "discscope-studies" / upload).write_bytes(b"old bytes")
    (tmp_path / "dynamodb").mkdir()
    item = {"pk": {"S": f"STUDY#{sid}"}, "sk": {"S": "META"}, "study_id": {"S": sid}, "status": {"S": "FAILED"},
            "filename": {"S": "scan.mha"}, "upload_key": {"S": upload}, "error_code": {"S": "NOT_AN_IMAGE"},
            "message": {"S": "old"}, "created_at": {"S": "2026-01-01T00:00:00.000Z"},
            "updated_at": {"S": "2026-01-01T00:00:00.000Z"}, "gsi1pk": {"S": "STUDY"},
            "gsi1sk": {"S": f"2026-01-01T00:00:00.000Z#{sid}"}, "owner": {"S": f"group:{LOCAL_GROUP}"}}
    (tmp_path / "dynamodb" / "discscope-studies.jsonl").write_text(json.dumps(item) + "\n")
    for _ in range(2):  # converted the first time, read from the new layout the second
        with LocalStack(baseline_model, state_dir=tmp_path) as stack:
            c = Client(stack.gateway.api_url, stack.api_key)
            assert c.study(sid)["error_code"] == "NOT_AN_IMAGE"
            assert boto3.client("s3").get_object(Bucket="discscope-studies", Key=upload)["Body"].read() == b"old bytes"
    assert (tmp_path / "snapshot-before-write-through" / "dynamodb").is_dir()
