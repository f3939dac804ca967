"""`discscope retrain` and `discscope approve`: an MLOps engineer's commands against the running local stack.

They find the stack through `.devstack/stack.json` (written by `discscope up`) and act through its
AWS stand-in the way one would in AWS: invoke the retrain trigger with a "Retrain Requested" event,
approve a package in the Model Registry. The stack process runs the pipeline and the deployment;
these commands follow its progress and end with the summary and the version the endpoint serves.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import boto3

from devstack.aws import REGION, RETRAIN_FUNCTION
from devstack.pipeline_runner import RunResult, emit_package_state, summary_table
from discscope.client import Client


class StackNotRunning(RuntimeError):
    pass


def connect(state_dir: Path) -> dict:
    """Point boto3 at the running stack's moto server; returns the stack file."""
    path = Path(state_dir) / "stack.json"
    if not path.is_file():
        raise StackNotRunning(f"no local stack is running (no {path}): start it with `make up`")
    stack = json.loads(path.read_text())
    credentials = json.loads((Path(state_dir) / "aws_credentials.json").read_text())
    os.environ.update({"AWS_ENDPOINT_URL": stack["aws_url"], "AWS_DEFAULT_REGION": REGION,
                       "AWS_ACCESS_KEY_ID": credentials["access_key"], "AWS_SECRET_ACCESS_KEY": credentials["secret_key"]})
    api_key = (Path(state_dir) / "api_key").read_text().strip()
    stack["client"] = Client(stack["api_url"], api_key)
    try:
        stack["client"].current_model()
    except Exception as exc:
        raise StackNotRunning(f"the local stack in {path} does not answer ({exc}): start it with `make up`") from None
    return stack


def retrain(state_dir: Path, timeout: float = 3600, log=print) -> int:
    stack = connect(state_dir)
    payload = {"source": "discscope.cli", "detail-type": "Retrain Requested", "detail": {}}
    resp = boto3.client("lambda").invoke(FunctionName=RETRAIN_FUNCTION, Payload=json.dumps(payload).encode())
    answer = json.loads(resp["Payload"].read())
    if resp.get("FunctionError") or not answer or not answer[0].get("started"):
        log(f"retraining did not start: {answer}")
        return 1
    arn = answer[0]["execution_arn"]
    log(f"pipeline execution {arn} started")
    result = follow(Path(stack["work_dir"]) / arn.rsplit("/", 1)[-1], timeout, log)
    log("\n" + summary_table(result))
    if result.approval == "Approved":
        wait_for_version(stack["client"], result.candidate_version, log)
    elif result.approval:
        log(f"\nwaiting for a person: approve with `discscope approve {result.candidate_version}`")
    return 0 if result.status == "Succeeded" else 2


def approve(state_dir: Path, version: str, log=print) -> int:
    stack = connect(state_dir)
    sm = boto3.client("sagemaker")
    group = os.environ.get("MODEL_PACKAGE_GROUP", "discscope")
    for summary in sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]:
        package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        if (package.get("CustomerMetadataProperties") or {}).get("model_version") == version:
            break
    else:
        log(f"no model package with version {version} in the group {group}")
        return 1
    # the metadata is sent again because moto's UpdateModelPackage drops it otherwise (AWS keeps it)
    sm.update_model_package(ModelPackageArn=package["ModelPackageArn"], ModelApprovalStatus="Approved",
                            ApprovalDescription="approved with discscope approve",
                            CustomerMetadataProperties=package["CustomerMetadataProperties"])
    emit_package_state(group, package["ModelPackageArn"], "Approved")  # what SageMaker emits in AWS
    log(f"approved {package['ModelPackageArn']}")
    wait_for_version(stack["client"], version, log)
    return 0


def follow(run_dir: Path, timeout: float, log) -> RunResult:
    """Print the run's progress as the stack writes it; return its result."""
    deadline, shown = time.time() + timeout, 0
    while time.time() < deadline:
        lines = (run_dir / "progress.log").read_text().splitlines() if (run_dir / "progress.log").is_file() else []
        for line in lines[shown:]:
            log(line)
        shown = len(lines)
        if (run_dir / "result.json").is_file():
            data = json.loads((run_dir / "result.json").read_text())
            return RunResult(**data | {"steps": [tuple(s) for s in data["steps"]]})
        time.sleep(0.5)
    raise TimeoutError(f"the pipeline run in {run_dir} did not finish in {timeout:.0f} s")


def wait_for_version(client: Client, version: str, log, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if client.current_model()["model_version"] == version:
            log(f"the endpoint now serves {version} (GET /models/current)")
            return
        time.sleep(0.5)
    log(f"the endpoint did not switch to {version} within {timeout:.0f} s")
