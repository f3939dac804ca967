"""The retraining pipeline, run locally: the same scripts SageMaker runs, as subprocesses.

moto records pipeline executions but runs no steps. This runner runs them in order with SageMaker's
container conventions (SM_MODEL_DIR, SM_CHANNEL_*, SM_HPS, /opt/ml/processing/... mapped to
folders), takes the pipeline parameters' defaults from the committed definition
(`sagemaker/pipeline_definition.json`), and decides CheckImprovement by evaluating that
definition's own condition and Fail message. It registers the candidate in moto's Model Registry
and emits the events SageMaker would: the execution's status change and, for an approved package,
its state change (which the deploy Lambda acts on).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import boto3

from devstack.aws import ACCOUNT, REGION, REPO
from lambdas.shared.events import PACKAGE_STATE, PIPELINE_STATUS

DEFINITION = REPO / "sagemaker" / "pipeline_definition.json"
SCRIPTS = REPO / "sagemaker"
CONDITION_STEP = "CheckImprovement"


def load_definition() -> dict:
    return json.loads(DEFINITION.read_text())


def parameter_defaults(definition: dict) -> dict[str, Any]:
    return {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}


def _step(definition: dict, name: str) -> dict:
    for step in definition["Steps"]:
        if step["Name"] == name:
            return step
    raise KeyError(f"the pipeline has no step {name}")


class Expressions:
    """Resolves the pipeline definition's expressions: Get Parameters.*, Std:JsonGet, Std:Join."""

    def __init__(self, parameters: dict[str, Any], property_files: dict[str, dict]):
        self.parameters, self.property_files = parameters, property_files

    def value(self, expr: Any) -> Any:
        if not isinstance(expr, dict):
            return expr
        if "Get" in expr and expr["Get"].startswith("Parameters."):
            return self.parameters[expr["Get"].removeprefix("Parameters.")]
        if "Std:JsonGet" in expr:
            ref = expr["Std:JsonGet"]["PropertyFile"]["Get"]  # Steps.<step>.PropertyFiles.<name>
            doc: Any = self.property_files[ref.rsplit(".", 1)[-1]]
            for part in expr["Std:JsonGet"]["Path"].split("."):
                doc = doc[part]
            return doc
        if "Std:Join" in expr:
            return expr["Std:Join"]["On"].join(str(self.value(v)) for v in expr["Std:Join"]["Values"])
        raise ValueError(f"unsupported pipeline expression {json.dumps(expr)[:200]}")

    def condition(self, cond: dict) -> bool:
        left, right = self.value(cond.get("LeftValue")), self.value(cond.get("RightValue"))
        ops = {"GreaterThanOrEqualTo": lambda a, b: a >= b, "GreaterThan": lambda a, b: a > b,
               "LessThanOrEqualTo": lambda a, b: a <= b, "LessThan": lambda a, b: a < b, "Equals": lambda a, b: a == b}
        if cond["Type"] not in ops:
            raise ValueError(f"unsupported condition {cond['Type']}")
        return left is not None and ops[cond["Type"]](float(left) if isinstance(right, float) else left, right)


@dataclass
class RunResult:
    execution_arn: str
    status: str  # Succeeded | Failed
    decision: str  # REGISTERED | NOT_BETTER | FAILED
    message: str = ""
    evaluation: dict = field(default_factory=dict)
    model_package_arn: str | None = None
    approval: str | None = None
    candidate_version: str | None = None
    steps: list[tuple[str, float, str]] = field(default_factory=list)  # (step, seconds, status)


class StepFailed(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step, self.message = step, message


class LocalPipelineRunner:
    def __init__(self, work_dir: Path, study_bucket: str, model_bucket: str, package_group: str,
                 train_data: list[Path], eval_data: Path, log: Callable[[str], None] = print):
        self.work_dir, self.study_bucket, self.model_bucket = Path(work_dir), study_bucket, model_bucket
        self.package_group, self.train_data, self.eval_data, self.log = package_group, train_data, eval_data, log
        self.definition = load_definition()

    # -- the steps -----------------------------------------------------------------------------
    def run(self, execution_arn: str, overrides: dict[str, Any] | None = None) -> RunResult:
        params = parameter_defaults(self.definition) | (overrides or {})
        run_id = execution_arn.rsplit("/", 1)[-1]
        work = self.work_dir / run_id
        result = RunResult(execution_arn, "Executing", "")
        try:
            feedback = self._timed(result, "PreprocessFeedback", lambda: self.preprocess(work))
            production = work / "input" / "data" / "production" / "model.tar.gz"
            candidate = self._timed(result, "TrainClassifier", lambda: self.train(
                work, feedback, self._download_model(params["ProductionModelUri"], production.parent), params))
            evaluation = self._timed(result, "Evaluate", lambda: self.evaluate(work, candidate, production))
            result.evaluation = evaluation
            result.candidate_version = evaluation["candidate"]["version"]
            passed, message = self.check(params, evaluation)
            result.steps.append((CONDITION_STEP, 0.0, "passed" if passed else "failed"))
            if passed:
                arn, approval = self._timed(result, "RegisterModel", lambda: self.register(work, run_id, candidate, evaluation, params))
                result.model_package_arn, result.approval = arn, approval
                result.status, result.decision = "Succeeded", "REGISTERED"
            else:
                result.steps.append(("NotBetter", 0.0, "Fail"))
                result.status, result.decision, result.message = "Failed", "NOT_BETTER", message
        except StepFailed as exc:
            result.status, result.decision, result.message = "Failed", "FAILED", str(exc)
        self._emit_status(result)
        if result.approval == "Approved":
            emit_package_state(self.package_group, result.model_package_arn, "Approved")
        return result

    def _timed(self, result: RunResult, step: str, fn: Callable[[], Any]) -> Any:
        self.log(f"[{step}] started")
        t0 = time.time()
        try:
            value = fn()
        except StepFailed:
            result.steps.append((step, time.time() - t0, "Failed"))
            raise
        except Exception as exc:  # a bug or an AWS error in the step: the run fails with its message
            result.steps.append((step, time.time() - t0, "Failed"))
            raise StepFailed(step, f"{type(exc).__name__}: {exc}") from exc
        result.steps.append((step, time.time() - t0, "Succeeded"))
        self.log(f"[{step}] done in {time.time() - t0:.1f} s")
        return value

    def _script(self, step: str, args: list[str], env: dict[str, str] | None = None) -> None:
        """Run a sagemaker/ script as its container would; its output is streamed to the log."""
        proc = subprocess.Popen([sys.executable, "-u", *args], cwd=SCRIPTS, env=os.environ | (env or {}),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-5:]
            if line:
                self.log(f"  {step} | {line[-160:]}")
        if proc.wait() != 0:
            raise StepFailed(step, " / ".join(tail) or f"exit code {proc.returncode}")

    def preprocess(self, work: Path) -> Path:
        feedback_in = work / "processing" / "input" / "feedback"
        out = work / "processing" / "output" / "feedback"
        self._download_prefix(self.study_bucket, "feedback/", feedback_in)
        self._script("PreprocessFeedback", ["preprocess_feedback.py", "--study-bucket", self.study_bucket,
                                            "--input-dir", str(feedback_in), "--output-dir", str(out)])
        return out

    def train(self, work: Path, feedback: Path, production: Path, params: dict) -> Path:
        model_dir, output = work / "model", work / "output" / "data"
        env = {"SM_MODEL_DIR": str(model_dir), "SM_OUTPUT_DATA_DIR": str(output),
               "SM_CHANNEL_FEEDBACK": str(feedback), "SM_CHANNEL_PRODUCTION": str(production.parent),
               "SM_HPS": json.dumps({"mode": "classifier", "init": params["InitWeights"],
                                     "cls-iters": int(params["ClsIters"]), "seed": int(params["Seed"])})}
        env |= {f"SM_CHANNEL_TRAIN{i}": str(p) for i, p in enumerate(self.train_data)}
        self._script("TrainClassifier", ["train.py"], env)
        # SageMaker tars SM_MODEL_DIR into the job's output path
        tar_path = work / "output" / "model.tar.gz"
        with tarfile.open(tar_path, "w:gz") as tar:
            for item in sorted(model_dir.iterdir()):
                tar.add(item, arcname=item.name)
        return tar_path

    def evaluate(self, work: Path, candidate: Path, production: Path) -> dict:
        out = work / "processing" / "evaluation"
        self._script("Evaluate", ["evaluate.py", "--candidate", str(candidate.parent), "--production", str(production.parent),
                                  "--eval", str(self.eval_data), "--output-dir", str(out)])
        return json.loads((out / "evaluation.json").read_text())

    def check(self, params: dict, evaluation: dict) -> tuple[bool, str]:
        """The definition's CheckImprovement: all conditions must hold, else its Fail step's message."""
        step = _step(self.definition, CONDITION_STEP)["Arguments"]
        expressions = Expressions(params, {"EvaluationReport": evaluation})
        passed = all(expressions.condition(c) for c in step["Conditions"])
        fail = next((s for s in step["ElseSteps"] if s["Type"] == "Fail"), None)
        message = expressions.value(fail["Arguments"]["ErrorMessage"]) if fail and not passed else ""
        return passed, message

    def register(self, work: Path, run_id: str, candidate: Path, evaluation: dict, params: dict) -> tuple[str, str]:
        s3 = boto3.client("s3")
        prefix = f"pipeline/{run_id}"
        model_key, eval_key = f"{prefix}/candidate/model.tar.gz", f"{prefix}/evaluation/evaluation.json"
        s3.upload_file(str(candidate), self.model_bucket, model_key)
        s3.put_object(Bucket=self.model_bucket, Key=eval_key, Body=json.dumps(evaluation).encode(), ContentType="application/json")
        approval = params["ModelApprovalStatus"]
        version = evaluation["candidate"]["version"]
        arn = boto3.client("sagemaker").create_model_package(
            ModelPackageGroupName=self.package_group, ModelApprovalStatus=approval,
            ModelPackageDescription=f"discscope {version} from {run_id}",
            InferenceSpecification={"Containers": [{"Image": "local/discscope-inference", "ModelDataUrl": f"s3://{self.model_bucket}/{model_key}"}],
                                    "SupportedContentTypes": ["application/json", "application/octet-stream"],
                                    "SupportedResponseMIMETypes": ["application/json"]},
            ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{self.model_bucket}/{eval_key}"}}},
            CustomerMetadataProperties={"model_version": version})["ModelPackageArn"]
        self.log(f"[RegisterModel] {arn} ({approval})")
        return arn, approval

    # -- S3 and events -------------------------------------------------------------------------
    def _download_prefix(self, bucket: str, prefix: str, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        s3 = boto3.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                target = into / obj["Key"][len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))

    def _download_model(self, uri: str, into: Path) -> Path:
        parsed = urlparse(uri)
        into.mkdir(parents=True, exist_ok=True)
        target = into / "model.tar.gz"
        if not target.is_file():
            if parsed.scheme == "s3":
                boto3.client("s3").download_file(parsed.netloc, parsed.path.lstrip("/"), str(target))
            else:
                raise StepFailed("TrainClassifier", f"production model URI {uri} is not an s3:// URI")
        return target

    def _emit_status(self, result: RunResult) -> None:
        name = self.definition.get("PipelineName", "discscope-retrain")
        boto3.client("events").put_events(Entries=[{
            "Source": "aws.sagemaker", "DetailType": PIPELINE_STATUS,
            "Detail": json.dumps({"pipelineExecutionArn": result.execution_arn, "currentPipelineExecutionStatus": result.status,
                                  "pipelineArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{name}"})}])



def emit_package_state(group: str, package_arn: str, status: str) -> None:
    """What SageMaker emits when a package's approval changes (moto emits nothing)."""
    boto3.client("events").put_events(Entries=[{
        "Source": "aws.sagemaker", "DetailType": PACKAGE_STATE,
        "Detail": json.dumps({"ModelPackageArn": package_arn, "ModelPackageGroupName": group, "ModelApprovalStatus": status})}])


def summary_table(result: RunResult) -> str:
    """Candidate vs production metrics and the decision, as a fixed-width table."""
    ev = result.evaluation
    lines = [f"retraining {result.execution_arn.rsplit('/', 1)[-1]}: {result.decision}"
             + (f" ({result.approval})" if result.approval else "")]
    if ev:
        c, p = ev["candidate"], ev["production"]
        lines.append(f"  evaluation set: {ev['eval_set']['cases']} cases, {ev['eval_set']['discs']} discs, {ev['eval_set']['positives']} herniated")
        lines.append(f"  {'metric':<12}{'production':>22}{'candidate':>22}{'change':>10}")
        lines.append(f"  {'version':<12}{p['version']:>22}{c['version']:>22}")
        for key in ("auc", "sensitivity", "specificity", "ece"):
            pv, cv = p.get(key), c.get(key)
            change = f"{cv - pv:+.3f}" if pv is not None and cv is not None else "-"
            lines.append(f"  {key:<12}{_num(pv):>22}{_num(cv):>22}{change:>10}")
    for step, seconds, status in result.steps:
        lines.append(f"  step {step:<20}{status:<10}{seconds:7.1f} s")
    if result.message:
        lines.append(f"  {result.message}")
    return "\n".join(lines)


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"
