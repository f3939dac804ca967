"""Continuous retraining on the local stack: feedback through the API -> FeedbackSaved -> retrain
trigger -> pipeline steps (subprocesses) -> CheckImprovement from the definition -> Model Registry ->
deploy Lambda -> the endpoint serves the new version (or, for a worse candidate, nothing changes)."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
import torch

from devstack.pipeline_runner import summary_table
from devstack.retrain_data import RetrainData
from devstack.stack import LocalStack
from discscope.artifact import load_weights, save_model_dir
from discscope.client import Client
from discscope.models import HerniationNet
from discscope.phantom import write_case
from lambdas.shared.yolo import LEVELS

FEEDBACK_STUDIES = 2


@pytest.fixture(scope="module")
def retrain_data(tmp_path_factory) -> RetrainData:
    data = RetrainData(tmp_path_factory.mktemp("datasets"), train_cases=8, eval_cases=10)
    data.ensure()
    return data


@pytest.fixture(scope="module")
def untrained_classifier_model(baseline_model, tmp_path_factory) -> Path:
    """The baseline's U-Net with a classifier that never learnt anything: a production model that
    retraining must beat."""
    weights, metadata = load_weights(baseline_model)
    torch.manual_seed(0)
    weights["classifier"] = HerniationNet(**weights["classifier_config"]).state_dict()
    weights["temperature"] = 1.0
    return save_model_dir(tmp_path_factory.mktemp("weak"), weights, metadata | {"version": "untrained-classifier"})


def _send_feedback(client: Client, folder: Path, seeds: range) -> list[str]:
    """Studies analysed through the API and corrected to their truth, like an annotator would."""
    ids = []
    for seed in seeds:
        labels = write_case(folder, f"fb{seed}", seed=seed, herniation_rate=0.5)["herniation"]
        study = client.analyze(folder / f"fb{seed}.mha", timeout=120)
        assert study["status"] == "SUCCEEDED", study
        discs = [{"box": d["box"], "level": d["level"], "herniated": bool(labels.get(d["level"], False))}
                 for d in study["discs"] if d["level"] in LEVELS]
        client.correct(study["study_id"], discs)
        ids.append(study["study_id"])
    return ids


def _run(stack: LocalStack, timeout: float = 400):
    deadline = time.time() + 30
    while not stack._threads and time.time() < deadline:
        time.sleep(0.2)
    stack.wait_for_runs(timeout)
    assert len(stack.runs) == 1, "the feedback should have started exactly one pipeline run"
    return next(iter(stack.runs.values()))


def _wait_for_version(client: Client, version: str, timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        current = client.current_model()
        if current["model_version"] == version:
            return current
        time.sleep(0.3)
    raise AssertionError(f"the current model never became {version}: {current}")


def _stack(model: Path, data: RetrainData, overrides: dict) -> LocalStack:
    return LocalStack(model, state_dir=None, retrain_data=data, pipeline_overrides=overrides,
                      settings={"RETRAIN_MIN_FEEDBACK": str(FEEDBACK_STUDIES), "RETRAIN_APPROVAL": "auto"}).start()


def test_a_better_candidate_is_registered_promoted_and_serves_the_next_study(untrained_classifier_model, retrain_data, tmp_path):
    # 150 iterations on 8 phantoms: AUC rises far (0.45 -> about 0.86), but the sensitivity at the
    # calibrated threshold swings with a one-case validation split, so its bar is off here;
    # test_pipeline_runner checks that bar on fixed evaluation reports.
    stack = _stack(untrained_classifier_model, retrain_data, {"ClsIters": 150, "InitWeights": "scratch", "MinSensitivity": 0.0})
    try:
        client = Client(stack.gateway.api_url, stack.api_key)
        _send_feedback(client, tmp_path, range(300, 300 + FEEDBACK_STUDIES))
        result = _run(stack)
        assert result.decision == "REGISTERED" and result.approval == "Approved", summary_table(result)
        ev = result.evaluation
        assert ev["production"]["version"] == "untrained-classifier"
        assert ev["improvement"]["auc"] >= 0.005 and ev["candidate"]["auc"] > ev["production"]["auc"]
        assert ev["eval_set"]["cases"] == 10
        package = boto3.client("sagemaker").describe_model_package(ModelPackageName=result.model_package_arn)
        assert package["ModelApprovalStatus"] == "Approved"
        assert package["CustomerMetadataProperties"]["model_version"] == result.candidate_version
        assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith("evaluation.json")

        current = _wait_for_version(client, result.candidate_version)
        assert current["model_package_arn"] == result.model_package_arn
        assert boto3.client("sagemaker").describe_endpoint(EndpointName="discscope")["EndpointConfigName"] == current["endpoint_config"]
        write_case(tmp_path, "next", seed=400)
        nxt = client.analyze(tmp_path / "next.mha", timeout=120)
        assert nxt["model_version"] == result.candidate_version
        feedback_from = {f["model_version"] for f in stack.store.list_recent("group:local-clinicians", limit=10)[0] if f["status"] == "REVIEWED"}
        assert feedback_from == {"untrained-classifier"}  # the records keep the version that produced them
    finally:
        stack.stop()


def test_a_worse_candidate_is_not_registered_and_production_stays(baseline_model, retrain_data, tmp_path):
    # a few iterations from scratch cannot match the shipped classifier
    stack = _stack(baseline_model, retrain_data, {"ClsIters": 5, "InitWeights": "scratch"})
    try:
        client = Client(stack.gateway.api_url, stack.api_key)
        before = client.current_model()
        _send_feedback(client, tmp_path, range(500, 500 + FEEDBACK_STUDIES))
        result = _run(stack)
        assert result.decision == "NOT_BETTER" and result.status == "Failed", summary_table(result)
        assert result.evaluation["improvement"]["auc"] < 0.005
        assert result.message.startswith("Candidate not registered: AUC improvement ")
        assert boto3.client("sagemaker").list_model_packages(ModelPackageGroupName="discscope")["ModelPackageSummaryList"] == []
        time.sleep(1)  # give any (wrong) deployment event the chance to arrive
        assert client.current_model()["model_version"] == before["model_version"]
        write_case(tmp_path, "next", seed=600)
        assert client.analyze(tmp_path / "next.mha", timeout=120)["model_version"] == before["model_version"]
        assert "running" not in stack.store.retrain_state()  # the run's status event freed the lock
    finally:
        stack.stop()


def test_manual_approval_waits_for_discscope_approve(untrained_classifier_model, retrain_data, tmp_path):
    """`discscope retrain` and `discscope approve` as an MLOps engineer runs them against `make up`."""
    from devstack import operator

    state = tmp_path / "state"
    stack = LocalStack(untrained_classifier_model, state_dir=state, retrain_data=retrain_data,
                       pipeline_overrides={"ClsIters": 150, "InitWeights": "scratch", "MinSensitivity": 0.0},
                       settings={"RETRAIN_APPROVAL": "manual", "RETRAIN_MIN_FEEDBACK": "100"}).start()
    try:
        client = Client(stack.gateway.api_url, stack.api_key)
        _send_feedback(client, tmp_path, range(700, 701))  # below the threshold: only the command starts a run
        assert not stack._threads
        lines: list[str] = []
        assert operator.retrain(state, timeout=400, log=lines.append) == 0
        result = next(iter(stack.runs.values()))
        assert result.approval == "PendingManualApproval"
        assert any(f"discscope approve {result.candidate_version}" in line for line in lines)
        assert any(line.startswith("retraining ") and "REGISTERED" in line for line in "\n".join(lines).splitlines())
        time.sleep(1)
        assert client.current_model()["model_version"] == "untrained-classifier"  # nothing deployed before approval

        assert operator.approve(state, result.candidate_version, log=lines.append) == 0
        assert client.current_model()["model_version"] == result.candidate_version
        assert operator.approve(state, "no-such-version", log=lines.append) == 1
    finally:
        stack.stop()
    with pytest.raises(operator.StackNotRunning, match="make up"):
        operator.connect(state)
