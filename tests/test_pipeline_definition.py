"""The SageMaker Pipeline definition `sagemaker/pipeline_definition.json` (built by `sagemaker/pipeline.py`).

The first tests read the committed JSON only (no sagemaker SDK in this venv). The last ones
regenerate it with the SDK venv `.venv-pipeline` (`pip install sagemaker==3.27.0`) and expect the
same bytes twice; they skip when that venv is missing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFINITION = REPO / "sagemaker" / "pipeline_definition.json"
GENERATOR = REPO / "sagemaker" / "pipeline.py"
SDK_PYTHON = REPO / ".venv-pipeline" / "bin" / "python"

PLACEHOLDERS = {
    "ModelBucket",
    "StudyBucket",
    "PipelineRoleArn",
    "ProcessingImageUri",
    "TrainingImageUri",
    "InferenceImageUri",
    "ModelPackageGroupName",
    "DataKeyArn",
}
PARAMETERS = {
    "ProcessingInstanceType": ("String", "ml.m5.xlarge"),
    "TrainingInstanceType": ("String", "ml.g5.xlarge"),
    "EvaluationInstanceType": ("String", "ml.m5.xlarge"),
    "MinImprovement": ("Float", 0.005),
    "MinSensitivity": ("Float", 0.8),
    "ModelApprovalStatus": ("String", "PendingManualApproval"),
    "InitWeights": ("String", "production"),
    "StudyBucket": ("String", "${StudyBucket}"),
    "FeedbackUri": ("String", "s3://${StudyBucket}/feedback/"),
    "TrainDataUri": ("String", "s3://${ModelBucket}/datasets/train/"),
    "EvalDataUri": ("String", "s3://${ModelBucket}/datasets/eval/"),
    "ProductionModelUri": ("String", "s3://${ModelBucket}/models/production/model.tar.gz"),
    "CodeUri": ("String", "s3://${ModelBucket}/code/"),
    "SourceDirUri": ("String", "s3://${ModelBucket}/code/sourcedir.tar.gz"),
    "ClsIters": ("Integer", 900),
    "Seed": ("Integer", 0),
}
CANDIDATE_MODEL = {"Get": "Steps.TrainClassifier.ModelArtifacts.S3ModelArtifacts"}
REPORT = {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"}


def param(name: str) -> dict:
    return {"Get": f"Parameters.{name}"}


def json_get(path: str) -> dict:
    return {"Std:JsonGet": {"Path": path, "PropertyFile": REPORT}}


def join(on: str, *values) -> dict:
    return {"Std:Join": {"On": on, "Values": list(values)}}


@pytest.fixture(scope="module")
def text() -> str:
    return DEFINITION.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def definition(text) -> dict:
    return json.loads(text)


@pytest.fixture(scope="module")
def steps(definition) -> dict:
    """Every step by name, the condition's branches included."""
    found = {}
    for step in definition["Steps"]:
        found[step["Name"]] = step
        for branch in ("IfSteps", "ElseSteps"):
            for inner in step["Arguments"].get(branch, []):
                found[inner["Name"]] = inner
    return found


def references(node) -> set[str]:
    """The step names a JSON fragment reads from ({"Get": "Steps.X..."})."""
    if isinstance(node, dict):
        refs = set()
        if isinstance(node.get("Get"), str) and node["Get"].startswith("Steps."):
            refs.add(node["Get"].split(".")[1])
        for value in node.values():
            refs |= references(value)
        return refs
    if isinstance(node, list):
        return set().union(*map(references, node)) if node else set()
    return set()


def processing_io(step: dict) -> tuple[dict, dict]:
    args = step["Arguments"]
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    outputs = {o["OutputName"]: o["S3Output"] for o in args["ProcessingOutputConfig"]["Outputs"]}
    return inputs, outputs


# --- the committed definition ---------------------------------------------------------------


def test_committed_file_is_canonical_json(text, definition):
    assert text == json.dumps(definition, indent=1, sort_keys=True) + "\n"
    assert definition["Version"] == "2020-12-01"


def test_steps_order_and_types(definition, steps):
    assert [(s["Name"], s["Type"]) for s in definition["Steps"]] == [
        ("PreprocessFeedback", "Processing"),
        ("TrainClassifier", "Training"),
        ("Evaluate", "Processing"),
        ("CheckImprovement", "Condition"),
    ]
    check = steps["CheckImprovement"]["Arguments"]
    assert [(s["Name"], s["Type"]) for s in check["IfSteps"]] == [("RegisterModel", "RegisterModel")]
    assert [(s["Name"], s["Type"]) for s in check["ElseSteps"]] == [("NotBetter", "Fail")]


def test_data_dependencies(definition, steps):
    order = [s["Name"] for s in definition["Steps"]]
    for position, name in enumerate(order):  # each step reads only from steps before it
        assert references(steps[name]["Arguments"]) <= set(order[:position]), name
    assert references(steps["PreprocessFeedback"]["Arguments"]) == set()
    assert references(steps["TrainClassifier"]["Arguments"]) == {"PreprocessFeedback"}
    assert references(steps["Evaluate"]["Arguments"]) == {"TrainClassifier"}
    assert references(steps["RegisterModel"]["Arguments"]) == {"TrainClassifier", "Evaluate"}
    assert references(steps["NotBetter"]["Arguments"]) == {"Evaluate"}


def test_parameters(definition):
    got = {p["Name"]: (p["Type"], p["DefaultValue"]) for p in definition["Parameters"]}
    assert got == PARAMETERS
    declared = set(got)
    used = set(re.findall(r'"Parameters\.(\w+)"', json.dumps(definition["Steps"])))
    assert used <= declared
    assert declared - used == set(), "every parameter is used by some step"


@pytest.mark.parametrize(
    ("name", "script", "instance_param"),
    [
        ("PreprocessFeedback", "preprocess_feedback.py", "ProcessingInstanceType"),
        ("Evaluate", "evaluate.py", "EvaluationInstanceType"),
    ],
)
def test_processing_job_setup(steps, name, script, instance_param):
    args = steps[name]["Arguments"]
    app = args["AppSpecification"]
    assert app["ImageUri"] == "${ProcessingImageUri}"
    assert args["RoleArn"] == "${PipelineRoleArn}"
    cluster = args["ProcessingResources"]["ClusterConfig"]
    assert cluster["InstanceType"] == param(instance_param)
    assert cluster["InstanceCount"] == 1
    # no pip at start: the code input carries its dependencies (lib/), the job needs no internet for them
    assert app["ContainerEntrypoint"] == ["python3", f"/opt/ml/processing/input/code/{script}"]
    assert args["ProcessingOutputConfig"]["KmsKeyId"] == "${DataKeyArn}"
    assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == "${DataKeyArn}"
    assert args["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True
    inputs, _ = processing_io(steps[name])
    assert inputs["code"]["S3Uri"] == param("CodeUri")
    assert inputs["code"]["LocalPath"] == "/opt/ml/processing/input/code"


def test_preprocess_feedback(steps):
    args = steps["PreprocessFeedback"]["Arguments"]
    assert args["AppSpecification"]["ContainerArguments"] == [
        "--study-bucket", param("StudyBucket"), "--input-dir", "/opt/ml/processing/input/feedback",
        "--output-dir", "/opt/ml/processing/output/feedback"]
    assert args["NetworkConfig"]["EnableNetworkIsolation"] is False  # it reads the reviewed studies from S3
    inputs, outputs = processing_io(steps["PreprocessFeedback"])
    assert set(inputs) == {"feedback", "code"}
    assert inputs["feedback"]["S3Uri"] == param("FeedbackUri")
    assert inputs["feedback"]["LocalPath"] == "/opt/ml/processing/input/feedback"
    assert set(outputs) == {"feedback"}
    assert outputs["feedback"]["LocalPath"] == "/opt/ml/processing/output/feedback"
    assert outputs["feedback"]["S3Uri"] == join(
        "/", "s3://${ModelBucket}/pipeline", {"Get": "Execution.PipelineExecutionId"}, "feedback"
    )


def test_train_classifier(steps):
    args = steps["TrainClassifier"]["Arguments"]
    assert args["AlgorithmSpecification"]["TrainingImage"] == "${TrainingImageUri}"
    assert "ContainerEntrypoint" not in args["AlgorithmSpecification"]  # no SDK drivers / SourceCode
    assert args["RoleArn"] == "${PipelineRoleArn}"
    assert args["ResourceConfig"]["InstanceType"] == param("TrainingInstanceType")
    assert args["ResourceConfig"]["InstanceCount"] == 1
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in args["InputDataConfig"]}
    assert channels == {
        "train": param("TrainDataUri"),
        "feedback": {"Get": "Steps.PreprocessFeedback.ProcessingOutputConfig.Outputs['feedback'].S3Output.S3Uri"},
        "production": param("ProductionModelUri"),
        "code": param("SourceDirUri"),  # network isolation: the source dir arrives as a channel
    }
    assert args["EnableNetworkIsolation"] is True
    assert args["ResourceConfig"]["VolumeKmsKeyId"] == args["OutputDataConfig"]["KmsKeyId"] == "${DataKeyArn}"
    assert args["HyperParameters"] == {
        "mode": "classifier",
        "init": param("InitWeights"),
        "cls-iters": join("", param("ClsIters")),
        "seed": join("", param("Seed")),
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": "/opt/ml/input/data/code/sourcedir.tar.gz",
    }
    # kept: a registered package points at its candidate (pipeline/ expires, models/ does not)
    assert args["OutputDataConfig"]["S3OutputPath"] == "s3://${ModelBucket}/models/candidates/"


def test_evaluate(steps):
    step = steps["Evaluate"]
    inputs, outputs = processing_io(step)
    assert {name: (i["S3Uri"], i["LocalPath"]) for name, i in inputs.items()} == {
        "candidate": (CANDIDATE_MODEL, "/opt/ml/processing/input/candidate"),
        "production": (param("ProductionModelUri"), "/opt/ml/processing/input/production"),
        "eval": (param("EvalDataUri"), "/opt/ml/processing/input/eval"),
        "code": (param("CodeUri"), "/opt/ml/processing/input/code"),
    }
    assert set(outputs) == {"evaluation"}
    assert outputs["evaluation"]["LocalPath"] == "/opt/ml/processing/evaluation"
    assert outputs["evaluation"]["S3Uri"] == join("/", "s3://${ModelBucket}/models/evaluations",
                                                 {"Get": "Execution.PipelineExecutionId"})
    assert step["Arguments"]["AppSpecification"]["ContainerArguments"] == [
        "--candidate", "/opt/ml/processing/input/candidate", "--production", "/opt/ml/processing/input/production",
        "--eval", "/opt/ml/processing/input/eval", "--output-dir", "/opt/ml/processing/evaluation"]
    assert step["Arguments"]["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert step["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]


def test_condition_requires_improvement_and_sensitivity(steps):
    conditions = steps["CheckImprovement"]["Arguments"]["Conditions"]
    assert conditions == [
        {
            "Type": "GreaterThanOrEqualTo",
            "LeftValue": json_get("improvement.auc"),
            "RightValue": param("MinImprovement"),
        },
        {
            "Type": "GreaterThanOrEqualTo",
            "LeftValue": json_get("candidate.sensitivity"),
            "RightValue": param("MinSensitivity"),
        },
    ]  # a list of conditions is their AND


def test_fail_step_says_why(steps):
    message = steps["NotBetter"]["Arguments"]["ErrorMessage"]["Std:Join"]
    values = message["Values"]
    for needed in (
        json_get("improvement.auc"),
        json_get("candidate.sensitivity"),
        param("MinImprovement"),
        param("MinSensitivity"),
    ):
        assert needed in values
    words = " ".join(v for v in values if isinstance(v, str)).lower()
    assert "not registered" in words and "improvement" in words and "sensitivity" in words


def test_register_model(steps):
    args = steps["RegisterModel"]["Arguments"]
    assert args["ModelPackageGroupName"] == "${ModelPackageGroupName}"
    assert args["ModelApprovalStatus"] == param("ModelApprovalStatus")
    spec = args["InferenceSpecification"]
    [container] = spec["Containers"]
    assert container["Image"] == "${InferenceImageUri}"
    assert container["ModelDataUrl"] == CANDIDATE_MODEL
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert spec["SupportedContentTypes"] == ["application/json", "application/octet-stream"]
    assert spec["SupportedResponseMIMETypes"] == ["application/json"]
    assert spec["SupportedRealtimeInferenceInstanceTypes"] == ["ml.g5.xlarge", "ml.g4dn.xlarge"]
    assert "SupportedTransformInstanceTypes" not in spec
    statistics = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics == {
        "ContentType": "application/json",
        "S3Uri": join(
            "/",
            {"Get": "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
            "evaluation.json",
        ),
    }
    assert args["CustomerMetadataProperties"] == {"model_version": json_get("candidate.version")}


def test_only_deploy_time_placeholders(text):
    found = re.findall(r"\$\{([^}]*)\}", text)
    assert text.count("${") == len(found)
    assert set(found) == PLACEHOLDERS  # all of them used, nothing else


def test_nothing_from_the_generating_machine(definition):
    body = json.dumps({k: v for k, v in definition.items() if k != "Version"})
    assert not re.search(r"\d{12}", body), "an AWS account id"
    assert "arn:" not in body and "amazonaws.com" not in body
    assert not re.search(r"\b(us|eu|ap|sa|ca|me|af|il)-[a-z]+-\d\b", body), "a region"
    assert not re.search(r"\d{4}-\d{2}-\d{2}", body), "a timestamp"
    assert "sagemaker-" not in body, "an SDK default bucket or job name"
    assert "offline" not in body.lower() and "/tmp" not in body and "/work" not in body
    for key in ("TrainingJobName", "ProcessingJobName", "ModelPackageName"):
        assert f'"{key}"' not in body


# --- regeneration with the sagemaker SDK --------------------------------------------------------


@pytest.fixture(scope="module")
def regenerated() -> list[subprocess.CompletedProcess]:
    """Two independent runs of `pipeline.py --print` (in parallel: the SDK import is slow)."""
    if not SDK_PYTHON.is_file():
        pytest.skip(f"{SDK_PYTHON.relative_to(REPO)} is missing (make creates it: pip install sagemaker==3.27.0)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    runs = [
        subprocess.Popen(
            [str(SDK_PYTHON), str(GENERATOR.relative_to(REPO)), "--print"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr))
    return results


@pytest.mark.slow
@pytest.mark.parametrize("run", [0, 1])
def test_regenerates_committed_bytes(regenerated, run):
    result = regenerated[run]
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, stderr[-3000:]
    assert "refused a network connection" not in stderr
    assert result.stdout == DEFINITION.read_bytes(), (
        "sagemaker/pipeline_definition.json is stale: "
        ".venv-pipeline/bin/python sagemaker/pipeline.py --out sagemaker/pipeline_definition.json"
    )
