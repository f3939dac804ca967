"""Promotes an approved model package to the endpoint (blue/green canary with alarm rollback).

Events (EventBridge, see shared.events):
- SageMaker Model Package State Change, ModelApprovalStatus Approved: new Model + EndpointConfig
  (data capture on, KMS as the CDK configured, the optional VPC), then a blue/green UpdateEndpoint
  (a canary where the fleet allows one, else all at once) that SageMaker rolls back by itself when
  one of ROLLBACK_ALARMS fires. The version is recorded as pending.
- SageMaker Endpoint State Change (InService): the endpoint settled; whichever config it runs
  decides: the pending version becomes current (GET /models/current), or it was rolled back.
Study records carry the version that produced them from the endpoint's own response.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import boto3
from botocore.exceptions import ClientError

from lambdas.shared.events import ENDPOINT_STATE, PACKAGE_STATE, eventbridge_events
from lambdas.shared.observability import tools
from lambdas.shared.settings import Settings
from lambdas.shared.store import StudyStore

logger, tracer, metrics = tools("deploy-model")
CANARY_WAIT_S = 600  # the canary (or the whole new fleet) serves this long while the alarms watch it


@dataclass
class Deps:
    store: StudyStore
    sagemaker: Any
    settings: Settings
    # switches the endpoint to a config; True when the switch is complete on return (the local
    # stack), False when SageMaker finishes it asynchronously (AWS)
    switch: Callable[[str, str, dict, dict], bool] | None = None

    def switch_endpoint(self, endpoint: str, config_name: str, deployment: dict, package: dict) -> bool:
        if self.switch:
            return self.switch(endpoint, config_name, deployment, package)
        self.sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=config_name, DeploymentConfig=deployment,
                                       RetainAllVariantProperties=False)
        return False


def deployment_config(settings: Settings) -> dict:
    """Blue/green, rolled back automatically on any of the alarms while the new fleet bakes.

    SageMaker accepts a canary of at most half the fleet: with two or more instances one instance
    takes the traffic first; a one-instance endpoint shifts all at once and bakes as long.
    """
    count = settings.endpoint_instance_count
    if count >= 2:
        routing = {"Type": "CANARY", "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1}, "WaitIntervalInSeconds": CANARY_WAIT_S}
    else:
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": CANARY_WAIT_S}
    config: dict = {"BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": 300, "MaximumExecutionTimeoutInSeconds": 3600}}
    if settings.rollback_alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in settings.rollback_alarms]}
    return config


def rollout_problem(config: dict, instance_count: int) -> str | None:
    """What SageMaker would refuse in a blue/green policy for this fleet (None: nothing)."""
    routing = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    size = routing.get("CanarySize") or routing.get("LinearStepSize")
    if routing["Type"] == "ALL_AT_ONCE":
        return None if size is None else "ALL_AT_ONCE takes no step size"
    if size is None:
        return f"{routing['Type']} needs a step size"
    share = size["Value"] / 100 if size["Type"] == "CAPACITY_PERCENT" else size["Value"] / instance_count
    return None if 0 < share <= 0.5 else f"{routing['Type']} step {size} is more than half of {instance_count} instance(s)"


def model_version(package: dict) -> str:
    custom = package.get("CustomerMetadataProperties") or {}
    return custom.get("model_version") or f"{package['ModelPackageGroupName']}-v{package['ModelPackageVersion']}"


def resource_name(version: str, package_arn: str) -> str:
    """A SageMaker name (63 chars, alphanumerics and hyphens) unique per package."""
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", version).strip("-")[:40]
    return f"discscope-{slug}-{hashlib.sha256(package_arn.encode()).hexdigest()[:8]}"


def _create_once(create, **kwargs) -> None:
    """Names are derived from the package, so a redelivered event finds its resources made already."""
    try:
        create(**kwargs)
    except ClientError as exc:
        if "already exist" not in str(exc):
            raise


def deploy(package_arn: str, deps: Deps) -> dict:
    sm, settings = deps.sagemaker, deps.settings
    package = sm.describe_model_package(ModelPackageName=package_arn)
    if package.get("ModelApprovalStatus") != "Approved":
        return {"deployed": False, "reason": f"package is {package.get('ModelApprovalStatus')}"}
    version = model_version(package)
    container = package["InferenceSpecification"]["Containers"][0]
    name = resource_name(version, package_arn)
    model = {"ModelName": name, "ExecutionRoleArn": settings.sagemaker_role_arn,
             "PrimaryContainer": {"ModelPackageName": package_arn},
             "Tags": [{"Key": "discscope:model-version", "Value": version}]}
    if settings.vpc_subnets:
        model["VpcConfig"] = {"Subnets": list(settings.vpc_subnets), "SecurityGroupIds": list(settings.vpc_security_groups)}
    _create_once(sm.create_model, **model)
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": settings.endpoint_instance_type,
               "InitialInstanceCount": settings.endpoint_instance_count}
    config = {"EndpointConfigName": name, "ProductionVariants": [variant]}
    if settings.endpoint_volume_kms_key:  # instance types with NVMe storage refuse a volume key (the CDK decides)
        config["KmsKeyId"] = settings.endpoint_volume_kms_key
    if settings.data_capture_uri:
        config["DataCaptureConfig"] = {"EnableCapture": True, "InitialSamplingPercentage": 100,
                                       "DestinationS3Uri": settings.data_capture_uri,
                                       "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]}
        if settings.data_capture_kms_key:
            config["DataCaptureConfig"]["KmsKeyId"] = settings.data_capture_kms_key
    _create_once(sm.create_endpoint_config, **config)
    details = {"model_package_arn": package_arn, "model_data_url": container.get("ModelDataUrl"), "endpoint_config": name,
               "metrics": package.get("ModelMetrics", {})}
    done = deps.switch_endpoint(settings.endpoint_name, name, deployment_config(settings), package)
    if done:
        deps.store.set_current_model(version, **details)
    else:
        deps.store.set_pending_model(version, **details)
    logger.info("endpoint update", extra={"version": version, "config": name, "complete": done})
    return {"deployed": True, "model_version": version, "endpoint_config": name, "complete": done}


def settle(endpoint: str, status: str, deps: Deps) -> dict:
    """After an update: the pending version becomes current if the endpoint runs its config."""
    pending = deps.store.pending_model()
    if endpoint != deps.settings.endpoint_name or status != "InService" or not pending:
        return {"settled": False}
    running = deps.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    deps.store.clear_pending_model()
    if running == pending["endpoint_config"]:
        version = pending.pop("model_version")
        deps.store.set_current_model(version, **{k: v for k, v in pending.items() if k != "requested_at"})
        return {"settled": True, "model_version": version}
    logger.warning("update rolled back", extra={"pending": pending, "running_config": running})
    return {"settled": True, "rolled_back": pending["model_version"]}


def on_event(event: dict, deps: Deps) -> dict:
    detail = event.get("detail", {})
    if event.get("detail-type") == PACKAGE_STATE:
        if detail.get("ModelApprovalStatus") != "Approved" or detail.get("ModelPackageGroupName") != deps.settings.model_package_group:
            return {"deployed": False, "reason": "not an approved package of this group"}
        return deploy(detail["ModelPackageArn"], deps)
    if event.get("detail-type") == ENDPOINT_STATE:
        return settle(detail.get("EndpointName", ""), detail.get("EndpointStatus", ""), deps)
    return {"ignored": event.get("detail-type")}


@lru_cache(maxsize=1)
def default_deps() -> Deps:
    settings = Settings.from_env()
    return Deps(StudyStore(boto3.resource("dynamodb").Table(settings.table_name)), boto3.client("sagemaker"), settings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: Any) -> list[dict]:
    return [on_event(e, default_deps()) for e in eventbridge_events(event)]
