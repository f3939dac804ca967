"""The retraining pipeline, run locally by interpreting the committed definition.

moto records pipeline executions but runs no steps. This runner executes
`sagemaker/pipeline_definition.json` as SageMaker would: placeholders filled as the CDK fills them,
parameters typed from the definition (overridden by the execution's), and every step from its own
arguments: a Processing step's inputs downloaded from (moto) S3 to its LocalPaths, its
ContainerEntrypoint and ContainerArguments run with `/opt/ml/processing` mapped to a folder, its
outputs uploaded and its property files read; a Training step's channels downloaded, its source
dir extracted from the code channel, its program run with the hyperparameters as arguments and
SM_* variables, its model folder tarred to OutputDataConfig; the Condition decides from the property
file; RegisterModel creates the package from its evaluated arguments; Fail ends with its message.

Each container runs on `devstack.container_env`: a fresh "image" interpreter (torch and boto3 only)
with the code's `lib/` installed from the code's own requirements file, both cached. The run
emits the events SageMaker would: the execution's status change and, for an approved package,
its state change (which the deploy Lambda acts on).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import boto3

from devstack import container_env
from devstack.aws import ACCOUNT, REGION, REPO
from lambdas.shared.events import PACKAGE_STATE, PIPELINE_STATUS

DEFINITION = REPO / "sagemaker" / "pipeline_definition.json"
CONDITION_STEP = "CheckImprovement"
REPORT = "EvaluationReport"
PROCESSING_ROOT = "/opt/ml/processing"
TRAINING_ROOT = "/opt/ml"
# What the package registry keeps of a RegisterModel step (the rest is SageMaker-side metadata).
PACKAGE_FIELDS = ("ModelPackageGroupName", "ModelApprovalStatus", "InferenceSpecification", "ModelMetrics",
                  "CustomerMetadataProperties", "ModelPackageDescription")


def load_definition() -> dict:
    return json.loads(DEFINITION.read_text())


def fill_placeholders(definition_text: str, values: dict[str, str]) -> dict:
    """What the CDK's Fn::Sub does to the committed definition."""
    text = definition_text
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    left = re.search(r"\$\{[^}]+\}", text)
    if left:
        raise ValueError(f"unfilled placeholder {left.group(0)} in the pipeline definition")
    return json.loads(text)


_TYPES = {"Integer": int, "Float": float, "String": str, "Boolean": lambda v: str(v).lower() == "true"}


def parameter_defaults(definition: dict) -> dict[str, Any]:
    return {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}


def typed_parameters(definition: dict, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults overridden by the execution's values, each cast to its declared type (the API sends strings)."""
    kinds = {p["Name"]: p["Type"] for p in definition["Parameters"]}
    values = parameter_defaults(definition) | {k: v for k, v in (overrides or {}).items() if k in kinds}
    return {name: None if value is None else _TYPES[kinds[name]](value) for name, value in values.items()}


def _step(definition: dict, name: str) -> dict:
    for step in definition["Steps"]:
        if step["Name"] == name:
            return step
    raise KeyError(f"the pipeline has no step {name}")


class Expressions:
    """Resolves the definition's expressions: Get Parameters.* / Execution.* / Steps.*, Std:JsonGet, Std:Join."""

    def __init__(self, parameters: dict[str, Any], property_files: dict[str, dict],
                 execution: dict[str, str] | None = None, properties: dict[str, Any] | None = None):
        self.parameters, self.property_files = parameters, property_files
        self.execution, self.properties = execution or {}, properties if properties is not None else {}

    def value(self, expr: Any) -> Any:
        if isinstance(expr, list):
            return [self.value(v) for v in expr]
        if not isinstance(expr, dict):
            return expr
        if "Get" in expr:
            ref = expr["Get"]
            if ref.startswith("Parameters."):
                return self.parameters[ref.removeprefix("Parameters.")]
            if ref.startswith("Execution."):
                return self.execution[ref.removeprefix("Execution.")]
            if ref.startswith("Steps.") and ref in self.properties:
                return self.properties[ref]
            raise ValueError(f"unresolved reference {ref} (has its step run?)")
        if "Std:JsonGet" in expr:
            ref = expr["Std:JsonGet"]["PropertyFile"]["Get"]  # Steps.<step>.PropertyFiles.<name>
            doc: Any = self.property_files[ref.rsplit(".", 1)[-1]]
            for part in expr["Std:JsonGet"]["Path"].split("."):
                doc = doc[part]
            return doc
        if "Std:Join" in expr:
            return expr["Std:Join"]["On"].join(str(self.value(v)) for v in expr["Std:Join"]["Values"])
        if len(expr) == 1 and next(iter(expr)).startswith("Std:"):
            raise ValueError(f"unsupported pipeline expression {json.dumps(expr)[:200]}")
        return {k: self.value(v) for k, v in expr.items()}

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


class NotBetter(Exception):
    """The definition's Fail step was reached."""


class LocalPipelineRunner:
    def __init__(self, work_dir: Path, placeholders: dict[str, str], log: Callable[[str], None] = print,
                 definition_text: str | None = None):
        self.work_dir, self.log = Path(work_dir), log
        self.definition = fill_placeholders(definition_text or DEFINITION.read_text(), placeholders)

    # -- the run ---------------------------------------------------------------------------------
    def run(self, execution_arn: str, overrides: dict[str, Any] | None = None) -> RunResult:
        run_id = execution_arn.rsplit("/", 1)[-1]
        work = self.work_dir / run_id
        result = RunResult(execution_arn, "Executing", "")
        execution = {"PipelineExecutionId": run_id, "PipelineExecutionArn": execution_arn,
                     "PipelineName": self.definition.get("PipelineName", "discscope-retrain")}
        self.expr = Expressions(typed_parameters(self.definition, overrides), {}, execution, {})
        try:
            for step in self.definition["Steps"]:
                self._run_step(step, work, result)
            result.status, result.decision = "Succeeded", "REGISTERED" if result.model_package_arn else "SUCCEEDED"
        except NotBetter as exc:
            result.status, result.decision, result.message = "Failed", "NOT_BETTER", str(exc)
        except StepFailed as exc:
            result.status, result.decision, result.message = "Failed", "FAILED", str(exc)
        result.evaluation = self.expr.property_files.get(REPORT, {})
        if result.evaluation:
            result.candidate_version = result.evaluation["candidate"]["version"]
        self._emit_status(result)
        if result.approval == "Approved":
            emit_package_state(self._package_group(), result.model_package_arn, "Approved")
        return result

    def _run_step(self, step: dict, work: Path, result: RunResult) -> None:
        kind, name = step["Type"], step["Name"]
        if kind == "Condition":
            args = step["Arguments"]
            passed = all(self.expr.condition(c) for c in args["Conditions"])
            result.steps.append((name, 0.0, "passed" if passed else "failed"))
            for inner in args["IfSteps" if passed else "ElseSteps"]:
                self._run_step(inner, work, result)
            return
        if kind == "Fail":
            result.steps.append((name, 0.0, "Fail"))
            raise NotBetter(self.expr.value(step["Arguments"]["ErrorMessage"]))
        runners = {"Processing": self._processing, "Training": self._training, "RegisterModel": self._register}
        if kind not in runners:
            raise StepFailed(name, f"the local runner has no {kind} steps")
        self.log(f"[{name}] started")
        t0 = time.time()
        try:
            runners[kind](step, work / name, result)
        except StepFailed:
            result.steps.append((name, time.time() - t0, "Failed"))
            raise
        except Exception as exc:  # a bug or an AWS error in the step: the run fails with its message
            result.steps.append((name, time.time() - t0, "Failed"))
            raise StepFailed(name, f"{type(exc).__name__}: {exc}") from exc
        result.steps.append((name, time.time() - t0, "Succeeded"))
        self.log(f"[{name}] done in {time.time() - t0:.1f} s")

    def check(self, params: dict, evaluation: dict) -> tuple[bool, str]:
        """The definition's CheckImprovement alone: all conditions must hold, else its Fail step's message."""
        step = _step(self.definition, CONDITION_STEP)["Arguments"]
        expressions = Expressions(params, {REPORT: evaluation})
        passed = all(expressions.condition(c) for c in step["Conditions"])
        fail = next((s for s in step["ElseSteps"] if s["Type"] == "Fail"), None)
        message = expressions.value(fail["Arguments"]["ErrorMessage"]) if fail and not passed else ""
        return passed, message

    # -- Processing ------------------------------------------------------------------------------
    def _processing(self, step: dict, job: Path, result: RunResult) -> None:
        name, args = step["Name"], self.expr.value(step["Arguments"])
        root = job / "processing"

        def local(path: str) -> str:
            return path.replace(PROCESSING_ROOT, str(root), 1) if path.startswith(PROCESSING_ROOT) else path

        for item in args.get("ProcessingInputs", []):
            source = item["S3Input"]
            download(source["S3Uri"], Path(local(source["LocalPath"])))
        code = next((Path(local(i["S3Input"]["LocalPath"])) for i in args.get("ProcessingInputs", [])
                     if i["InputName"] == "code"), None)
        if code is not None:
            container_env.provide_lib(code)
        outputs = args.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for out in outputs:
            Path(local(out["S3Output"]["LocalPath"])).mkdir(parents=True, exist_ok=True)
        app = args["AppSpecification"]
        command = [local(str(a)) for a in app["ContainerEntrypoint"] + app.get("ContainerArguments", [])]
        self._container(name, command, cwd=root, env={})
        for out in outputs:
            uri = out["S3Output"]["S3Uri"]
            upload(Path(local(out["S3Output"]["LocalPath"])), uri)
            self.expr.properties[f"Steps.{name}.ProcessingOutputConfig.Outputs['{out['OutputName']}'].S3Output.S3Uri"] = uri
        for prop in step.get("PropertyFiles", []):
            out = next(o for o in outputs if o["OutputName"] == prop["OutputName"])
            path = Path(local(out["S3Output"]["LocalPath"])) / prop["FilePath"]
            self.expr.property_files[prop["PropertyFileName"]] = json.loads(path.read_text())

    # -- Training (the SageMaker training toolkit's script mode) ----------------------------------
    def _training(self, step: dict, job: Path, result: RunResult) -> None:
        name, args = step["Name"], self.expr.value(step["Arguments"])
        root = job / "ml"
        env = {"SM_MODEL_DIR": str(root / "model"), "SM_OUTPUT_DATA_DIR": str(root / "output" / "data")}
        channels = []
        for channel in args["InputDataConfig"]:
            folder = root / "input" / "data" / channel["ChannelName"]
            download(channel["DataSource"]["S3DataSource"]["S3Uri"], folder)
            env[f"SM_CHANNEL_{channel['ChannelName'].upper()}"] = str(folder)
            channels.append(channel["ChannelName"])
        hps = {k: str(v) for k, v in args.get("HyperParameters", {}).items()}
        submit = hps.pop("sagemaker_submit_directory")
        program = hps.pop("sagemaker_program")
        code = root / "code"
        source = submit.replace(TRAINING_ROOT, str(root), 1) if submit.startswith(TRAINING_ROOT) else submit
        with tarfile.open(source) as tar:
            tar.extractall(code, filter="data")
        container_env.provide_lib(code)
        env |= {"SM_HPS": json.dumps(hps), "SM_CHANNELS": json.dumps(channels)}
        command = ["python3", program] + [a for k, v in sorted(hps.items()) for a in (f"--{k}", v)]
        (root / "model").mkdir(parents=True, exist_ok=True)
        self._container(name, command, cwd=code, env=env)
        job_name = f"pipelines-{result.execution_arn.rsplit('/', 1)[-1]}-{name}"
        tar_path = root / "output" / "model.tar.gz"
        with tarfile.open(tar_path, "w:gz") as tar:  # what SageMaker does with SM_MODEL_DIR
            for item in sorted((root / "model").iterdir()):
                tar.add(item, arcname=item.name)
        uri = f"{args['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job_name}/output/model.tar.gz"
        upload(tar_path, uri)
        self.expr.properties[f"Steps.{name}.ModelArtifacts.S3ModelArtifacts"] = uri

    # -- RegisterModel -----------------------------------------------------------------------------
    def _register(self, step: dict, job: Path, result: RunResult) -> None:
        args = self.expr.value(step["Arguments"])
        request = {k: v for k, v in args.items() if k in PACKAGE_FIELDS}
        request["ModelMetrics"] = {k: v for k, v in request.get("ModelMetrics", {}).items() if v}
        arn = boto3.client("sagemaker").create_model_package(**request)["ModelPackageArn"]
        result.model_package_arn, result.approval = arn, request["ModelApprovalStatus"]
        self.log(f"[{step['Name']}] {arn} ({result.approval})")

    def _package_group(self) -> str:
        for step in self.definition["Steps"]:
            for inner in step.get("Arguments", {}).get("IfSteps", []):
                if inner["Type"] == "RegisterModel":
                    return inner["Arguments"]["ModelPackageGroupName"]
        raise KeyError("no RegisterModel step")

    # -- containers --------------------------------------------------------------------------------
    def _container(self, step: str, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        """Run a container command on the local image interpreter; its output is streamed to the log."""
        python = container_env.image_python()
        if command and command[0] in ("python", "python3"):
            command = [str(python), "-u", *command[1:]]
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        proc = subprocess.Popen(command, cwd=cwd, env=base | env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-5:]
            if line:
                self.log(f"  {step} | {line[-160:]}")
        if proc.wait() != 0:
            raise StepFailed(step, " / ".join(tail) or f"exit code {proc.returncode}")

    def _emit_status(self, result: RunResult) -> None:
        name = self.definition.get("PipelineName", "discscope-retrain")
        boto3.client("events").put_events(Entries=[{
            "Source": "aws.sagemaker", "DetailType": PIPELINE_STATUS,
            "Detail": json.dumps({"pipelineExecutionArn": result.execution_arn, "currentPipelineExecutionStatus": result.status,
                                  "pipelineArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{name}"})}])


# -- S3 as SageMaker moves it (S3Prefix, File mode) ------------------------------------------------


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        raise ValueError(f"{uri} is not an s3:// URI")
    return parsed.netloc, parsed.path.lstrip("/")


def download(uri: str, into: Path) -> None:
    """Every object under the prefix, named relative to the prefix's last '/' (as SageMaker does)."""
    bucket, prefix = _split(uri)
    base = prefix[: prefix.rfind("/") + 1]
    into.mkdir(parents=True, exist_ok=True)
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/"):
                continue
            target = into / obj["Key"][len(base):]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))


def upload(source: Path, uri: str) -> None:
    bucket, key = _split(uri)
    s3 = boto3.client("s3")
    if source.is_file():
        s3.upload_file(str(source), bucket, key)
        return
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"{key.rstrip('/')}/{path.relative_to(source).as_posix()}")


def upload_tree(members: list[tuple[str, bytes]], bucket: str, prefix: str) -> None:
    s3 = boto3.client("s3")
    for name, data in members:
        s3.put_object(Bucket=bucket, Key=f"{prefix}{name}", Body=data)


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
