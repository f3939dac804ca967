"""retrain_trigger and deploy_model: their plain functions against moto (DynamoDB, SageMaker)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace

import boto3
import pytest
from botocore.stub import Stubber

from lambdas import deploy_model, retrain_trigger
from lambdas.shared.events import ENDPOINT_STATE, FEEDBACK_SAVED, PACKAGE_STATE, PIPELINE_STATUS, SCHEDULED, eventbridge_events
from lambdas.shared.settings import Settings

ROLE = "arn:aws:iam::123456789012:role/sm"


def _event(kind: str, detail: dict | None = None, source: str = "discscope.api") -> dict:
    """As EventBridge delivers it: every event has its own id."""
    return {"id": str(uuid.uuid4()), "source": source, "detail-type": kind, "detail": detail or {}}


@pytest.fixture
def trigger(study_store):
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_pipeline(PipelineName="discscope-retrain", RoleArn=ROLE,
                       PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}))
    settings = replace(Settings.from_env(), retrain_min_feedback=3, retrain_approval="auto")
    study_store.set_current_model("v1", model_data_url="s3://models/v1/model.tar.gz")
    return retrain_trigger.Deps(study_store, sm, settings)


def test_the_pipeline_starts_once_enough_feedback_arrived(trigger):
    results = [retrain_trigger.on_event(_event(FEEDBACK_SAVED), trigger) for _ in range(3)]
    assert [r["started"] for r in results] == [False, False, True]
    assert results[0] == {"started": False, "reason": "BELOW_THRESHOLD", "pending": 1, "threshold": 3}
    execution = trigger.sagemaker.describe_pipeline_execution(PipelineExecutionArn=results[2]["execution_arn"])
    assert execution["PipelineExecutionArn"] == results[2]["execution_arn"]
    state = trigger.store.retrain_state()
    assert state["pending"] == 0 and state["running"] == results[2]["execution_arn"]


def test_a_redelivered_event_counts_once(trigger):
    first = _event(FEEDBACK_SAVED)
    assert retrain_trigger.on_event(first, trigger)["reason"] == "BELOW_THRESHOLD"
    again = retrain_trigger.on_event(json.loads(json.dumps(first)), trigger)  # EventBridge retried it
    assert again == {"started": False, "reason": "DUPLICATE_EVENT", "event_id": first["id"]}
    assert trigger.store.retrain_state()["pending"] == 1
    marker = trigger.store.table.get_item(Key={"pk": "PIPELINE", "sk": f"EVENT#{first['id']}"})["Item"]
    assert int(marker["expires_at"]) > time.time() + 24 * 3600  # outlives EventBridge's retries, then expires
    assert [retrain_trigger.on_event(_event(FEEDBACK_SAVED), trigger)["started"] for _ in range(2)] == [False, True]


def test_no_second_start_while_a_run_is_executing(trigger, monkeypatch):
    started = []
    trigger.start = lambda name, params, token: started.append(params) or f"arn:aws:sagemaker:us-east-1:1:pipeline/{name}/execution/x{len(started)}"
    monkeypatch.setattr(trigger.sagemaker, "describe_pipeline_execution", lambda **_: {"PipelineExecutionStatus": "Executing"})
    for _ in range(3):
        retrain_trigger.on_event(_event(FEEDBACK_SAVED), trigger)
    blocked = [retrain_trigger.on_event(_event(FEEDBACK_SAVED), trigger) for _ in range(4)]
    # the run consumed the first three; the next three reach the threshold again but must wait
    assert len(started) == 1
    assert [b["reason"] for b in blocked] == ["BELOW_THRESHOLD", "BELOW_THRESHOLD", "ALREADY_RUNNING", "ALREADY_RUNNING"]
    assert {p["Name"]: p["Value"] for p in started[0]} == {"ModelApprovalStatus": "Approved",
                                                         "ProductionModelUri": "s3://models/v1/model.tar.gz"}
    # the run ends: its status event frees the lock, and the feedback that waited starts the next run
    done = retrain_trigger.on_event(_event(PIPELINE_STATUS, {"pipelineExecutionArn": "arn:aws:sagemaker:us-east-1:1:pipeline/discscope-retrain/execution/x1",
                                                            "currentPipelineExecutionStatus": "Succeeded"}, "aws.sagemaker"), trigger)
    assert done == {"released": True, "status": "Succeeded"}
    assert retrain_trigger.on_event(_event(SCHEDULED, source="aws.events"), trigger)["started"] is True
    assert len(started) == 2


def test_a_lock_whose_run_finished_is_freed_without_the_status_event(trigger, monkeypatch):
    trigger.start = lambda name, params, token: "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/old"
    for _ in range(3):
        retrain_trigger.on_event(_event(FEEDBACK_SAVED), trigger)
    monkeypatch.setattr(trigger.sagemaker, "describe_pipeline_execution", lambda **_: {"PipelineExecutionStatus": "Failed"})
    trigger.start = lambda name, params, token: "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/new"
    result = retrain_trigger.maybe_start(trigger, "test", force=True)
    assert result["started"] and result["execution_arn"].endswith("/new")
    assert "old Failed" in trigger.store.retrain_state()["last_outcome"]


def test_a_claim_whose_start_died_expires(trigger):
    assert trigger.store.claim_retrain("token-of-a-crashed-start")
    assert retrain_trigger.maybe_start(trigger, "test", force=True)["reason"] == "ALREADY_RUNNING"
    trigger.store.table.update_item(Key={"pk": "PIPELINE", "sk": "RETRAIN"}, UpdateExpression="SET claimed_at = :t",
                                    ExpressionAttributeValues={":t": "2026-01-01T00:00:00.000Z"})
    trigger.start = lambda name, params, token: "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/next"
    assert retrain_trigger.maybe_start(trigger, "test", force=True)["started"] is True


def test_the_schedule_does_nothing_without_new_feedback(trigger):
    assert retrain_trigger.on_event(_event(SCHEDULED, source="aws.events"), trigger)["reason"] == "BELOW_THRESHOLD"


def test_a_failed_start_releases_the_lock(trigger):
    def broken(*_):
        raise RuntimeError("throttled")
    trigger.start = broken
    with pytest.raises(RuntimeError):
        retrain_trigger.maybe_start(trigger, "test", force=True)
    assert "running" not in trigger.store.retrain_state()


def test_events_arrive_directly_or_in_sqs_records():
    event = _event(FEEDBACK_SAVED, {"study_id": "x"})
    assert list(eventbridge_events(event)) == [event]
    assert list(eventbridge_events({"Records": [{"body": json.dumps(event)}, {"body": "{}"}]})) == [event]


# --- deploy_model ----------------------------------------------------------------------------------

@pytest.fixture
def registry(study_store):
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model_package_group(ModelPackageGroupName="discscope")

    def package(status: str, version: str) -> str:
        return sm.create_model_package(
            ModelPackageGroupName="discscope", ModelApprovalStatus=status, CustomerMetadataProperties={"model_version": version},
            InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": f"s3://models/{version}/model.tar.gz"}],
                                    "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
        )["ModelPackageArn"]
    settings = replace(Settings.from_env(), sagemaker_role_arn=ROLE, endpoint_name="discscope", model_package_group="discscope",
                       endpoint_instance_type="ml.g4dn.xlarge", rollback_alarms=("discscope-5xx", "discscope-latency"),
                       data_capture_uri="s3://capture/discscope")
    return sm, package, settings


def test_an_approved_package_goes_out_as_a_canary_with_alarm_rollback(registry, study_store):
    sm, package, settings = registry
    arn = package("Approved", "v2")
    stubbed = boto3.client("sagemaker", region_name="us-east-1")  # UpdateEndpoint is not in moto: checked against the API model
    deps = deploy_model.Deps(study_store, sm, settings)
    with Stubber(stubbed) as stub:
        stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/discscope"}, {
            "EndpointName": "discscope", "EndpointConfigName": deploy_model.resource_name("v2", arn),
            "DeploymentConfig": deploy_model.deployment_config(settings), "RetainAllVariantProperties": False})
        sm.update_endpoint = stubbed.update_endpoint
        result = deploy_model.on_event(_event(PACKAGE_STATE, {"ModelPackageArn": arn, "ModelPackageGroupName": "discscope",
                                                               "ModelApprovalStatus": "Approved"}, "aws.sagemaker"), deps)
        stub.assert_no_pending_responses()
    assert result["deployed"] and result["model_version"] == "v2" and not result["complete"]
    config = sm.describe_endpoint_config(EndpointConfigName=result["endpoint_config"])
    assert config["ProductionVariants"][0]["ModelName"] == result["endpoint_config"]
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == "s3://capture/discscope"
    deployment = deploy_model.deployment_config(settings)
    assert deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"  # one instance
    assert deployment["AutoRollbackConfiguration"]["Alarms"] == [{"AlarmName": "discscope-5xx"}, {"AlarmName": "discscope-latency"}]
    assert "KmsKeyId" not in config and not sm.describe_model(ModelName=result["endpoint_config"]).get("VpcConfig")
    # not current until the endpoint settles on the new config
    assert study_store.current_model() is None and study_store.pending_model()["model_version"] == "v2"


@pytest.mark.parametrize("count, kind", [(1, "ALL_AT_ONCE"), (2, "CANARY"), (3, "CANARY"), (8, "CANARY")])
def test_the_rollout_is_one_sagemaker_accepts_for_the_fleet(registry, count, kind):
    settings = replace(registry[2], endpoint_instance_count=count)
    config = deploy_model.deployment_config(settings)
    assert config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == kind
    assert deploy_model.rollout_problem(config, count) is None
    # the rule itself: a one-instance canary on a one-instance fleet is refused
    canary = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
        "Type": "CANARY", "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1}}}}
    assert deploy_model.rollout_problem(canary, 1) is not None and deploy_model.rollout_problem(canary, 2) is None


def test_endpoint_configs_carry_the_volume_key_and_models_the_vpc(registry, study_store):
    sm, package, settings = registry
    settings = replace(settings, endpoint_volume_kms_key="arn:aws:kms:us-east-1:123456789012:key/k",
                       vpc_subnets=("subnet-1", "subnet-2"), vpc_security_groups=("sg-1",))
    deps = deploy_model.Deps(study_store, sm, settings, switch=lambda *_: False)
    name = deploy_model.deploy(package("Approved", "v6"), deps)["endpoint_config"]
    assert sm.describe_endpoint_config(EndpointConfigName=name)["KmsKeyId"] == settings.endpoint_volume_kms_key
    assert sm.describe_model(ModelName=name)["VpcConfig"] == {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}


def _settle(deps, monkeypatch, running_config: str) -> dict:
    monkeypatch.setattr(deps.sagemaker, "describe_endpoint", lambda **_: {"EndpointConfigName": running_config})
    return deploy_model.on_event(_event(ENDPOINT_STATE, {"EndpointName": "discscope", "EndpointStatus": "InService"}, "aws.sagemaker"), deps)


def test_the_version_becomes_current_when_the_endpoint_settles_on_it(registry, study_store, monkeypatch):
    sm, package, settings = registry
    arn = package("Approved", "v3")
    deps = deploy_model.Deps(study_store, sm, settings, switch=lambda *_: False)
    config = deploy_model.deploy(arn, deps)["endpoint_config"]
    assert deploy_model.deploy(arn, deps)["endpoint_config"] == config  # EventBridge may deliver twice
    assert _settle(deps, monkeypatch, config) == {"settled": True, "model_version": "v3"}
    current = study_store.current_model()
    assert current["model_version"] == "v3" and current["model_package_arn"] == arn


def test_a_rolled_back_update_leaves_the_current_model(registry, study_store, monkeypatch):
    sm, package, settings = registry
    study_store.set_current_model("v1")
    deps = deploy_model.Deps(study_store, sm, settings, switch=lambda *_: False)
    deploy_model.deploy(package("Approved", "v4"), deps)
    assert _settle(deps, monkeypatch, "discscope-v1-old") == {"settled": True, "rolled_back": "v4"}
    assert study_store.current_model()["model_version"] == "v1" and study_store.pending_model() is None


def test_packages_that_are_not_approved_are_not_deployed(registry, study_store):
    sm, package, settings = registry
    deps = deploy_model.Deps(study_store, sm, settings, switch=lambda *_: pytest.fail("must not deploy"))
    assert not deploy_model.deploy(package("PendingManualApproval", "v5"), deps)["deployed"]
    other_group = _event(PACKAGE_STATE, {"ModelPackageArn": "x", "ModelPackageGroupName": "other", "ModelApprovalStatus": "Approved"})
    assert not deploy_model.on_event(other_group, deps)["deployed"]


def test_resources_made_by_an_earlier_delivery_are_reused_other_errors_raise():
    from botocore.exceptions import ClientError

    def exists(**_):  # what SageMaker answers for a name in use (moto accepts duplicates silently)
        raise ClientError({"Error": {"Code": "ValidationException", "Message": "Cannot create already existing model"}}, "CreateModel")

    def denied(**_):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "CreateModel")

    deploy_model._create_once(exists, ModelName="m")
    with pytest.raises(ClientError):
        deploy_model._create_once(denied, ModelName="m")
