"""The local pipeline runner decides CheckImprovement with the committed definition's own condition."""

from __future__ import annotations

import pytest

from pathlib import Path

from devstack.pipeline_runner import Expressions, LocalPipelineRunner, parameter_defaults

PLACEHOLDERS = {name: f"local-{name}" for name in ("ModelBucket", "StudyBucket", "PipelineRoleArn", "ModelPackageGroupName",
                                                   "DataKeyArn", "ProcessingImageUri", "TrainingImageUri", "InferenceImageUri")}


def _report(improvement: float, sensitivity: float) -> dict:
    return {"candidate": {"auc": 0.9, "sensitivity": sensitivity, "version": "c"},
            "production": {"auc": 0.9 - improvement, "sensitivity": 0.9, "version": "p"},
            "improvement": {"auc": improvement}}


@pytest.fixture(scope="module")
def runner() -> LocalPipelineRunner:
    """Only the definition is needed to decide; no buckets or datasets."""
    return LocalPipelineRunner(Path("unused"), PLACEHOLDERS)


@pytest.mark.parametrize("improvement, sensitivity, passed", [
    (0.02, 0.85, True),     # better and sensitive enough
    (0.005, 0.80, True),    # exactly on both bars (>=)
    (0.004, 0.95, False),   # not enough better
    (0.10, 0.79, False),    # better but loses sensitivity
    (-0.05, 0.95, False),   # worse
])
def test_check_improvement_follows_the_definition(runner, improvement, sensitivity, passed):
    params = parameter_defaults(runner.definition)
    ok, message = runner.check(params, _report(improvement, sensitivity))
    assert ok is passed
    if not passed:
        assert message == (f"Candidate not registered: AUC improvement {improvement} (required >= 0.005), "
                           f"sensitivity {sensitivity} (required >= 0.8)")


def test_parameters_override_the_definition_defaults(runner):
    params = parameter_defaults(runner.definition) | {"MinImprovement": 0.2}
    assert runner.check(params, _report(0.1, 0.9))[0] is False


def test_unknown_expressions_are_refused():
    with pytest.raises(ValueError, match="unsupported pipeline expression"):
        Expressions({}, {}).value({"Std:Split": {}})


# --- the runner interprets a definition: inputs, container command, outputs, property files, condition ---

MINI = {
    "Version": "2020-12-01", "PipelineName": "mini",
    "Parameters": [{"Name": "Bar", "Type": "Float", "DefaultValue": 0.5}, {"Name": "Data", "Type": "String", "DefaultValue": "s3://${B}/d"}],
    "Steps": [
        {"Name": "Score", "Type": "Processing", "Arguments": {
            "AppSpecification": {"ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/score.py"],
                                 "ContainerArguments": ["--data", "/opt/ml/processing/input/data", "--out", "/opt/ml/processing/out"]},
            "ProcessingInputs": [
                {"InputName": "data", "S3Input": {"S3Uri": {"Get": "Parameters.Data"}, "LocalPath": "/opt/ml/processing/input/data"}},
                {"InputName": "code", "S3Input": {"S3Uri": "s3://${B}/code/", "LocalPath": "/opt/ml/processing/input/code"}}],
            "ProcessingOutputConfig": {"Outputs": [{"OutputName": "report", "S3Output": {
                "LocalPath": "/opt/ml/processing/out", "S3Uri": {"Std:Join": {"On": "/", "Values": [
                    "s3://${B}/runs", {"Get": "Execution.PipelineExecutionId"}]}}}}]}},
         "PropertyFiles": [{"PropertyFileName": "Report", "OutputName": "report", "FilePath": "report.json"}]},
        {"Name": "Check", "Type": "Condition", "Arguments": {
            "Conditions": [{"Type": "GreaterThanOrEqualTo", "RightValue": {"Get": "Parameters.Bar"},
                            "LeftValue": {"Std:JsonGet": {"Path": "score", "PropertyFile": {"Get": "Steps.Score.PropertyFiles.Report"}}}}],
            "IfSteps": [],
            "ElseSteps": [{"Name": "Low", "Type": "Fail", "Arguments": {"ErrorMessage": {"Std:Join": {"On": "", "Values": [
                "score ", {"Std:JsonGet": {"Path": "score", "PropertyFile": {"Get": "Steps.Score.PropertyFiles.Report"}}}]}}}}]}},
    ],
}
SCRIPT = """import argparse, json, pathlib
p = argparse.ArgumentParser(); p.add_argument("--data"); p.add_argument("--out"); a = p.parse_args()
values = [float(f.read_text()) for f in sorted(pathlib.Path(a.data).rglob("*.txt"))]
pathlib.Path(a.out, "report.json").write_text(json.dumps({"score": sum(values) / len(values), "n": len(values)}))
"""


@pytest.fixture
def mini(tmp_path, monkeypatch):
    import json

    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="mini")
        for i, v in enumerate(("0.2", "0.8", "0.9")):
            s3.put_object(Bucket="mini", Key=f"d{i}.txt", Body=v.encode())
        s3.put_object(Bucket="mini", Key="code/score.py", Body=SCRIPT.encode())
        monkeypatch.setattr("devstack.pipeline_runner.LocalPipelineRunner._emit_status", lambda self, result: None)
        yield s3, LocalPipelineRunner(tmp_path, {"B": "mini"}, log=lambda line: None, definition_text=json.dumps(MINI))


def test_steps_run_from_their_arguments_and_the_condition_reads_the_property_file(mini):
    import json

    s3, runner = mini
    passed = runner.run("arn:aws:sagemaker:us-east-1:123456789012:pipeline/mini/execution/run1", {"Bar": "0.6"})
    assert (passed.status, passed.decision) == ("Succeeded", "SUCCEEDED"), passed.message
    report = json.loads(s3.get_object(Bucket="mini", Key="runs/run1/report.json")["Body"].read())
    assert report == {"score": pytest.approx(0.6333, abs=1e-3), "n": 3}  # every input object reached the container
    failed = runner.run("arn:aws:sagemaker:us-east-1:123456789012:pipeline/mini/execution/run2", {"Bar": "0.7"})
    assert (failed.status, failed.decision) == ("Failed", "NOT_BETTER")
    assert failed.message.startswith("score 0.633")


def test_a_requirements_file_that_cannot_install_on_its_own_fails_the_step(mini):
    """The original bug: the code's requirements carried `-r ../lambdas/requirements.txt`."""
    s3, runner = mini
    s3.put_object(Bucket="mini", Key="code/container-requirements.txt", Body=b"-r ../lambdas/requirements.txt\n")
    result = runner.run("arn:aws:sagemaker:us-east-1:123456789012:pipeline/mini/execution/run3")
    assert result.decision == "FAILED" and result.message.startswith("Score: ")
    assert result.steps[0][0] == "Score" and result.steps[0][2] == "Failed"


def test_placeholders_and_parameter_types_as_the_cdk_and_sagemaker_give_them():
    from devstack.pipeline_runner import fill_placeholders, load_definition, typed_parameters

    with pytest.raises(ValueError, match="unfilled placeholder"):
        fill_placeholders('{"a": "${ModelBucket}"}', {})
    params = typed_parameters(load_definition(), {"ClsIters": "150", "MinSensitivity": "0", "Unknown": "x"})
    assert params["ClsIters"] == 150 and params["MinSensitivity"] == 0.0 and "Unknown" not in params


def test_the_image_interpreter_sees_torch_and_boto3_but_not_the_codes_dependencies():
    import subprocess

    from devstack.container_env import image_python

    python = image_python()
    probe = "import importlib.util as u; print([n for n in ('torch', 'boto3', 'SimpleITK', 'cv2', 'matplotlib') if u.find_spec(n)])"
    seen = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True, env={}).stdout.strip()
    assert seen == "['torch', 'boto3']"
