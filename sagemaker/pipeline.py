"""Build the SageMaker Pipeline ``discscope-retrain`` (continuous retraining) with the sagemaker SDK v3.

Steps: PreprocessFeedback (processing) -> TrainClassifier (training) -> Evaluate (processing,
candidate vs production on a fixed set, writes evaluation.json) -> CheckImprovement (condition:
AUC gain >= MinImprovement and sensitivity >= MinSensitivity) -> RegisterModel (Model Registry)
or NotBetter (fail step that says why).

The definition is generated offline and deterministically: fake credentials and a fixed region
in the environment, role validation and telemetry off, a stub default bucket, no SourceCode on
the ModelTrainer (that would upload SDK drivers to a timestamped path; train.py comes from
``SourceDirUri`` via ``sagemaker_program``/``sagemaker_submit_directory`` instead), and every
socket connection refused while the SDK runs. Deploy-time values are ``${Name}`` placeholders
that the CDK fills with ``Fn.sub``.

SDK v3 quirks worked around here (all without touching AWS):
- roles: ModelTrainer asks IAM about any role that is not an ARN and Processor expands role
  names through IAM, so the trainer gets a stand-in ARN that is swapped for
  ``${PipelineRoleArn}`` after construction, and the session's ``expand_role`` is a no-op;
- ModelBuilder.register: the model data (a step property) is set as ``s3_model_data_url``, and
  ``dependencies=None`` keeps it off the script-mode path (which would add an empty
  SAGEMAKER_PROGRAM and the generating machine's region to the container environment);
- integer parameters go into HyperParameters (a string map) through ``to_string()``.

Regenerate (needs the SDK venv, `pip install sagemaker==3.27.0`, not the discscope package):

    .venv-pipeline/bin/python sagemaker/pipeline.py --out sagemaker/pipeline_definition.json
    .venv-pipeline/bin/python sagemaker/pipeline.py --print

Do not add an ``__init__.py`` to sagemaker/: it would shadow the SDK.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import warnings
from pathlib import Path

# This file lives in a folder named "sagemaker": keep it off sys.path so `import sagemaker`
# finds the SDK, not this folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

# Offline, deterministic SDK: all of this must be set before the SDK is imported (so importing
# this module points the process's AWS settings at fakes; it is meant for generation only).
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAOFFLINEPIPELINE0",
        "AWS_SECRET_ACCESS_KEY": "offline-pipeline-definition-only",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "SAGEMAKER_VALIDATE_ROLE": "false",
        # No SDK defaults files (/etc/xdg/sagemaker, ~/.config/sagemaker) may leak into the output.
        "XDG_CONFIG_HOME": "/dev/null/no-sagemaker-config",
        "XDG_CONFIG_DIRS": "/dev/null/no-sagemaker-config",
    }
)
for _name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "SAGEMAKER_ADMIN_CONFIG_OVERRIDE",
              "SAGEMAKER_USER_CONFIG_OVERRIDE"):  # fmt: skip
    os.environ.pop(_name, None)


import boto3
from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
from sagemaker.core.network import NetworkConfig
from sagemaker.core.processing import Processor
from sagemaker.core.shapes import (
    ProcessingInput,
    ProcessingOutput,
    ProcessingS3Input,
    ProcessingS3Output,
    StoppingCondition,
)
from sagemaker.core.training.configs import Compute, InputData, Networking, OutputDataConfig
from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import (
    ParameterFloat,
    ParameterInteger,
    ParameterString,
)
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.model_step import ModelStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
from sagemaker.serve import ModelBuilder
from sagemaker.train.model_trainer import ModelTrainer

# Quiet the SDK's chatter about things that are expected here (it runs without AWS, no job
# starts, and job names are dropped from the definition); real warnings still show.
for _name in ("sagemaker", "sagemaker.config", "botocore"):
    logging.getLogger(_name).setLevel(logging.WARNING)
for _name in ("sagemaker.core.workflow.utilities", "sagemaker.mlops.workflow.model_step"):
    logging.getLogger(_name).addFilter(lambda r: not r.getMessage().startswith("Popping out"))
warnings.filterwarnings("ignore", message="Running within a PipelineSession")

PIPELINE_NAME = "discscope-retrain"
REGION = "us-east-1"
# The SDK needs a default bucket; every S3 location below is explicit, so it never shows up.
BUCKET = "discscope-offline-unused"
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}

MODEL_BUCKET = "${ModelBucket}"
ROLE = "${PipelineRoleArn}"
PROCESSING_IMAGE = "${ProcessingImageUri}"
TRAINING_IMAGE = "${TrainingImageUri}"
INFERENCE_IMAGE = "${InferenceImageUri}"
MODEL_PACKAGE_GROUP = "${ModelPackageGroupName}"
DATA_KEY = "${DataKeyArn}"  # KMS key of every job's volume and outputs

_STAND_IN_ROLE_ARN = "arn:aws:iam::000000000000:role/replaced-by-PipelineRoleArn"

PROC = "/opt/ml/processing"
CODE_DIR = f"{PROC}/input/code"
# The training job gets its source dir as a channel: with network isolation it cannot fetch it from S3.
TRAIN_CODE = "/opt/ml/input/data/code/sourcedir.tar.gz"


@contextlib.contextmanager
def _no_network():
    """Make any connection attempt (DNS included) fail loudly while the SDK runs."""

    def refuse(*args, **_kwargs):
        target = [a for a in args[:2] if not isinstance(a, socket.socket)]
        print(f"pipeline.py: refused a network connection to {target}", file=sys.stderr)
        raise ConnectionRefusedError("sagemaker/pipeline.py builds the definition offline")

    saved = {name: getattr(socket, name) for name in ("create_connection", "getaddrinfo")}
    saved_methods = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex")}
    for name in saved:
        setattr(socket, name, refuse)
    for name in saved_methods:
        setattr(socket.socket, name, refuse)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(socket, name, value)
        for name, value in saved_methods.items():
            setattr(socket.socket, name, value)


class _OfflineSession(PipelineSession):
    """A PipelineSession that never asks IAM: the role is a deploy-time placeholder."""

    def expand_role(self, role):
        return role


def _session() -> PipelineSession:
    boto_session = boto3.Session(
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    session = _OfflineSession(boto_session=boto_session, sagemaker_config=SDK_CONFIG)
    session._default_bucket = BUCKET
    return session


def _processor(session: PipelineSession, instance_type, script: str, isolated: bool) -> Processor:
    """Runs `script` from the code input; its dependencies are vendored there (lib/): no pip at start.

    `isolated`: no network at all (SageMaker still moves the inputs and outputs); a job that calls
    AWS APIs itself needs the network.
    """
    return Processor(
        role=ROLE,
        image_uri=PROCESSING_IMAGE,
        instance_count=1,
        instance_type=instance_type,
        entrypoint=["python3", f"{CODE_DIR}/{script}"],
        base_job_name=f"discscope-{Path(script).stem.replace('_', '-')}",
        volume_kms_key=DATA_KEY,
        output_kms_key=DATA_KEY,
        network_config=NetworkConfig(enable_network_isolation=isolated, encrypt_inter_container_traffic=True),
        sagemaker_session=session,
    )


def _input(name: str, source, destination: str) -> ProcessingInput:
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=source,
            local_path=destination,
            s3_data_type="S3Prefix",
            s3_input_mode="File",
            s3_data_distribution_type="FullyReplicated",
        ),
    )


def _output(name: str, source: str, destination) -> ProcessingOutput:
    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(s3_uri=destination, local_path=source, s3_upload_mode="EndOfJob"),
    )


def _execution_prefix(root: str, *parts: str) -> Join:
    """s3://${ModelBucket}/<root>/<execution id>/<parts...>"""
    return Join(
        on="/",
        values=[f"s3://{MODEL_BUCKET}/{root}", ExecutionVariables.PIPELINE_EXECUTION_ID, *parts],
    )


def build_pipeline() -> Pipeline:
    session = _session()

    processing_instance_type = ParameterString("ProcessingInstanceType", default_value="ml.m5.xlarge")
    training_instance_type = ParameterString("TrainingInstanceType", default_value="ml.g5.xlarge")
    evaluation_instance_type = ParameterString("EvaluationInstanceType", default_value="ml.m5.xlarge")
    min_improvement = ParameterFloat("MinImprovement", default_value=0.005)
    min_sensitivity = ParameterFloat("MinSensitivity", default_value=0.8)
    approval_status = ParameterString("ModelApprovalStatus", default_value="PendingManualApproval")
    init_weights = ParameterString("InitWeights", default_value="production")
    study_bucket = ParameterString("StudyBucket", default_value="${StudyBucket}")
    feedback_uri = ParameterString("FeedbackUri", default_value="s3://${StudyBucket}/feedback/")
    train_data_uri = ParameterString("TrainDataUri", default_value=f"s3://{MODEL_BUCKET}/datasets/train/")
    eval_data_uri = ParameterString("EvalDataUri", default_value=f"s3://{MODEL_BUCKET}/datasets/eval/")
    production_model_uri = ParameterString(
        "ProductionModelUri", default_value=f"s3://{MODEL_BUCKET}/models/production/model.tar.gz"
    )
    code_uri = ParameterString("CodeUri", default_value=f"s3://{MODEL_BUCKET}/code/")
    source_dir_uri = ParameterString(
        "SourceDirUri", default_value=f"s3://{MODEL_BUCKET}/code/sourcedir.tar.gz"
    )
    cls_iters = ParameterInteger("ClsIters", default_value=900)
    seed = ParameterInteger("Seed", default_value=0)
    parameters = [
        processing_instance_type, training_instance_type, evaluation_instance_type,
        min_improvement, min_sensitivity, approval_status, init_weights,
        study_bucket, feedback_uri, train_data_uri, eval_data_uri, production_model_uri,
        code_uri, source_dir_uri, cls_iters, seed,
    ]  # fmt: skip

    # 1. Feedback (YOLO txt in the study bucket) -> training samples. It reads the reviewed studies
    # from the study bucket itself (not every upload as an input), so it needs the network.
    # Its output is working data under pipeline/ (expired by a lifecycle rule).
    preprocess = ProcessingStep(
        name="PreprocessFeedback",
        step_args=_processor(session, processing_instance_type, "preprocess_feedback.py", isolated=False).run(
            inputs=[
                _input("feedback", feedback_uri, f"{PROC}/input/feedback"),
                _input("code", code_uri, CODE_DIR),
            ],
            outputs=[_output("feedback", f"{PROC}/output/feedback", _execution_prefix("pipeline", "feedback"))],
            # every container path is an argument: the definition says all the job gets
            arguments=["--study-bucket", study_bucket, "--input-dir", f"{PROC}/input/feedback",
                       "--output-dir", f"{PROC}/output/feedback"],
        ),
    )
    feedback_s3 = preprocess.properties.ProcessingOutputConfig.Outputs["feedback"].S3Output.S3Uri

    # 2. Train the herniation classifier (script mode: train.py from SourceDirUri, given as the
    # "code" channel). Candidates are kept under models/ (no expiry: registered packages point there).
    trainer = ModelTrainer(
        sagemaker_session=session,
        # ModelTrainer resolves a role that is not an ARN through IAM (a network call), so it
        # gets a well-formed stand-in here and the ${PipelineRoleArn} placeholder right after.
        role=_STAND_IN_ROLE_ARN,
        base_job_name="discscope-train",
        training_image=TRAINING_IMAGE,
        compute=Compute(instance_type=training_instance_type, instance_count=1, volume_size_in_gb=50,
                        volume_kms_key_id=DATA_KEY),
        networking=Networking(enable_network_isolation=True, enable_inter_container_traffic_encryption=True),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=4 * 3600),
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{MODEL_BUCKET}/models/candidates/",
                                            kms_key_id=DATA_KEY),
        hyperparameters={  # HyperParameters is a string map: integers go in as Std:Join
            "mode": "classifier",
            "init": init_weights,
            "cls-iters": cls_iters.to_string(),
            "seed": seed.to_string(),
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": TRAIN_CODE,
        },
    )
    trainer.role = ROLE
    train = TrainingStep(
        name="TrainClassifier",
        step_args=trainer.train(
            input_data_config=[
                InputData(channel_name="train", data_source=train_data_uri),
                InputData(channel_name="feedback", data_source=feedback_s3),
                InputData(channel_name="production", data_source=production_model_uri),
                InputData(channel_name="code", data_source=source_dir_uri),
            ]
        ),
    )
    candidate_model = train.properties.ModelArtifacts.S3ModelArtifacts

    # 3. Evaluate candidate vs production on the fixed evaluation set (no network needed). The
    # report is kept under models/: registered packages point at it.
    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluate = ProcessingStep(
        name="Evaluate",
        step_args=_processor(session, evaluation_instance_type, "evaluate.py", isolated=True).run(
            inputs=[
                _input("candidate", candidate_model, f"{PROC}/input/candidate"),
                _input("production", production_model_uri, f"{PROC}/input/production"),
                _input("eval", eval_data_uri, f"{PROC}/input/eval"),
                _input("code", code_uri, CODE_DIR),
            ],
            outputs=[_output("evaluation", f"{PROC}/evaluation", _execution_prefix("models/evaluations"))],
            arguments=["--candidate", f"{PROC}/input/candidate", "--production", f"{PROC}/input/production",
                       "--eval", f"{PROC}/input/eval", "--output-dir", f"{PROC}/evaluation"],
        ),
        property_files=[report],
    )
    evaluation_s3 = evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri

    def report_value(json_path: str) -> JsonGet:
        return JsonGet(step_name=evaluate.name, property_file=report, json_path=json_path)

    # 5. Register the candidate in the Model Registry.
    builder = ModelBuilder(
        sagemaker_session=session,
        role_arn=ROLE,
        image_uri=INFERENCE_IMAGE,
        instance_type="ml.g5.xlarge",
        # model.tar.gz carries code/inference.py (SageMaker's PyTorch serving layout).
        env_vars={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"},
        # The default {"auto": True} sends register() down the script-mode path, which adds
        # an empty SAGEMAKER_PROGRAM and this machine's region to the container environment.
        dependencies=None,
    )
    builder.s3_model_data_url = candidate_model
    register = ModelStep(
        name="RegisterModel",
        step_args=builder.register(
            model_package_group_name=MODEL_PACKAGE_GROUP,
            approval_status=approval_status,
            content_types=["application/json", "application/octet-stream"],
            response_types=["application/json"],
            inference_instances=["ml.g5.xlarge", "ml.g4dn.xlarge"],
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    content_type="application/json",
                    s3_uri=Join(on="/", values=[evaluation_s3, "evaluation.json"]),
                )
            ),
            customer_metadata_properties={"model_version": report_value("candidate.version")},
        ),
    )

    # 4. Register only if the candidate beats production by enough and stays sensitive.
    improvement = report_value("improvement.auc")
    sensitivity = report_value("candidate.sensitivity")
    not_better = FailStep(
        name="NotBetter",
        error_message=Join(
            on="",
            values=[
                "Candidate not registered: AUC improvement ",
                improvement,
                " (required >= ",
                min_improvement,
                "), sensitivity ",
                sensitivity,
                " (required >= ",
                min_sensitivity,
                ")",
            ],
        ),
    )
    check = ConditionStep(
        name="CheckImprovement",
        conditions=[
            ConditionGreaterThanOrEqualTo(left=improvement, right=min_improvement),
            ConditionGreaterThanOrEqualTo(left=sensitivity, right=min_sensitivity),
        ],
        if_steps=[register],
        else_steps=[not_better],
    )

    return Pipeline(
        name=PIPELINE_NAME,
        parameters=parameters,
        steps=[preprocess, train, evaluate, check],
        sagemaker_session=session,
    )


def definition() -> str:
    """The pipeline definition as canonical JSON (sorted keys, indent 1, trailing newline)."""
    with _no_network():
        text = build_pipeline().definition()
    return json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the definition JSON to this file")
    parser.add_argument("--print", action="store_true", help="print the definition JSON to stdout")
    args = parser.parse_args(argv)
    if not args.out and not args.print:
        parser.error("give --out FILE and/or --print")
    text = definition()
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    if args.print:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
