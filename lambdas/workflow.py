"""StudyWorkflow tasks: Validate, Infer, Persist, MarkFailed.

Each handler is a thin adapter over a plain function that takes its AWS clients in a `Deps`, so the
logic is tested without Lambda. Errors are raised as exception classes whose names the state
machine matches on (Python Lambda runtime: Error = class name, Cause = JSON with `errorMessage`);
the message is itself JSON `{"error_code", "message"}` so MarkFailed can keep both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared import keys
from lambdas.shared.observability import tools
from lambdas.shared.settings import Settings
from lambdas.shared.sniff import SNIFF_BYTES, SniffError, sniff
from lambdas.shared.store import PROCESSING, SUCCEEDED, StudyStore, TransitionError
from lambdas.shared.worklist import disc_summary

logger, tracer, metrics = tools("workflow")

# The endpoint's result as it is kept (result.json, the study record). The review fields are newer
# than some models: an older result lacks them, and a missing field is left out, not stored empty.
RESULT_FIELDS = ("model_version", "slice_index", "image_size", "num_slices", "spacing_mm", "discs", "slices",
                 "timings_ms")
REVIEW_FIELDS = ("spacing_source", "naming_confidence", "needs_review", "review_reasons")


class WorkflowError(Exception):
    """Base: str(exc) is JSON {"error_code", "message"}."""

    def __init__(self, code: str, message: str):
        super().__init__(json.dumps({"error_code": code, "message": message}))
        self.code, self.message = code, message


class InputRejected(WorkflowError):
    """The upload itself is bad: never retried."""


class EndpointUnavailable(WorkflowError):
    """The endpoint is down, throttled or failing: retried by the state machine, then FAILED."""


class TransientError(WorkflowError):
    """An AWS call failed in a way that may pass: retried."""


@dataclass
class Deps:
    s3: Any
    runtime: Any
    store: StudyStore
    settings: Settings


@lru_cache(maxsize=1)
def default_deps() -> Deps:
    settings = Settings.from_env()
    # SageMaker ends an invocation at 60 s; no SDK retries: the state machine retries.
    runtime = boto3.client("sagemaker-runtime", config=Config(read_timeout=settings.endpoint_read_timeout_s,
                                                              retries={"max_attempts": 1}))
    table = boto3.resource("dynamodb").Table(settings.table_name)
    return Deps(boto3.client("s3"), runtime, StudyStore(table), settings)


# --- plain functions ---------------------------------------------------------------------------


def validate(event: dict, deps: Deps) -> dict:
    study_id, bucket, key = event["study_id"], event["bucket"], event["key"]
    filename = key.rsplit("/", 1)[-1]  # upload.<known extension>: a hint for the sniffer, no user name
    try:
        head = deps.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            raise InputRejected("UPLOAD_MISSING", f"{key} is not in {bucket}") from None
        raise TransientError("S3_ERROR", str(exc)) from None
    size = int(head["ContentLength"])
    if size == 0:
        raise InputRejected("EMPTY_FILE", "the upload is empty")
    if size > deps.settings.max_upload_bytes:
        raise InputRejected("FILE_TOO_LARGE", f"the upload is {size} bytes; the limit is {deps.settings.max_upload_bytes}")
    first = deps.s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{SNIFF_BYTES - 1}")["Body"].read()
    try:
        kind = sniff(first, filename)
    except SniffError as exc:
        raise InputRejected(exc.code, exc.message) from None
    if kind == "mhd":
        raise InputRejected("UNSUPPORTED_FORMAT", "an .mhd header needs its .raw data file: upload both in a ZIP")
    try:
        deps.store.transition(study_id, PROCESSING, format=kind, size=size)
    except TransitionError as exc:
        raise InputRejected("INVALID_STATE", str(exc)) from None
    metrics.add_metric(name="UploadBytes", unit=MetricUnit.Bytes, value=size)
    return {"format": kind, "size": size}


def _endpoint_error(exc: ClientError) -> WorkflowError:
    resp = exc.response
    status = resp.get("OriginalStatusCode")
    original = resp.get("OriginalMessage") or resp.get("Error", {}).get("Message", "")
    try:
        detail = json.loads(original)
        code, message = detail["error_code"], detail["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "MODEL_ERROR", str(original)[:1000]
    if status and 400 <= int(status) < 500:
        return InputRejected(code, message)
    return EndpointUnavailable(code if code != "MODEL_ERROR" else "ENDPOINT_ERROR", message)


def infer(event: dict, deps: Deps) -> dict:
    """The endpoint writes the pictures and the mask under results/{id}/ itself and answers with
    their keys (a small response whatever the study's size); this step adds result.json."""
    study_id, bucket, key = event["study_id"], event["bucket"], event["key"]
    request = json.dumps({"s3_uri": f"s3://{bucket}/{key}", "output_uri": f"s3://{bucket}/{keys.results_prefix(study_id)}"})
    try:
        resp = deps.runtime.invoke_endpoint(EndpointName=deps.settings.endpoint_name, ContentType="application/json",
                                            Accept="application/json", Body=request,
                                            CustomAttributes=f"filename={key.rsplit('/', 1)[-1]}")
        body = json.loads(resp["Body"].read())
    except ClientError as exc:
        raise _endpoint_error(exc) from None
    except BotoCoreError as exc:  # connection refused, timeouts
        raise EndpointUnavailable("ENDPOINT_UNAVAILABLE", f"{type(exc).__name__}: {exc}") from None
    artifacts = {name: k for name, k in (body.get("artifacts") or {}).items()
                 if name in keys.RESULT_FILES and k == keys.result_key(study_id, name)}  # only where we asked
    summary = {k: body.get(k) for k in RESULT_FIELDS} | {k: body[k] for k in REVIEW_FIELDS if k in body}
    artifacts["result.json"] = keys.result_key(study_id, "result.json")
    deps.s3.put_object(Bucket=bucket, Key=artifacts["result.json"], Body=json.dumps(summary).encode(),
                       ContentType="application/json")
    metrics.add_metric(name="EndpointMs", unit=MetricUnit.Milliseconds, value=float((body.get("timings_ms") or {}).get("total", 0)))
    return summary | {"artifacts": artifacts}


def persist(event: dict, deps: Deps) -> dict:
    inference = event["inference"]
    fields = {k: inference.get(k) for k in ("model_version", "slice_index", "image_size", "num_slices", "discs",
                                            "slices", "artifacts", "timings_ms")}
    fields |= {k: inference[k] for k in REVIEW_FIELDS if inference.get(k) is not None}
    fields |= disc_summary(fields["discs"]) | {"needs_review": bool(inference.get("needs_review"))}
    try:
        study = deps.store.transition(event["study_id"], SUCCEEDED, **fields)
    except TransitionError as exc:
        raise InputRejected("INVALID_STATE", str(exc)) from None
    metrics.add_metric(name="StudiesSucceeded", unit=MetricUnit.Count, value=1)
    return {"status": study["status"], "discs": len(fields["discs"] or [])}


def failure_reason(error: dict | None) -> tuple[str, str]:
    """(error_code, message) from a Catch block's {"Error", "Cause"}."""
    error = error or {}
    name, cause = error.get("Error", "UNKNOWN"), error.get("Cause", "")
    try:
        message = json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        message = cause
    try:
        detail = json.loads(message)
        return detail["error_code"], detail["message"]
    except (ValueError, KeyError, TypeError):
        pass
    if name == "States.Timeout":
        return "TIMEOUT", "the step took too long"
    return name.replace(".", "_").upper(), str(message)[:2000] or name


def mark_failed(event: dict, deps: Deps) -> dict:
    code, message = failure_reason(event.get("error"))
    try:
        deps.store.mark_failed(event["study_id"], code, message)
    except TransitionError as exc:  # e.g. already SUCCEEDED by a concurrent run: keep that result
        logger.warning("not marking failed", extra={"reason": str(exc)})
    metrics.add_metric(name="StudiesFailed", unit=MetricUnit.Count, value=1)
    logger.info("study failed", extra={"study_id": event["study_id"], "error_code": code})
    return {"error_code": code, "message": message}


# --- Lambda handlers ---------------------------------------------------------------------------


def _handler(func):
    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event, context):
        logger.append_keys(study_id=event.get("study_id"))
        return func(event, default_deps())

    handler.__name__ = f"{func.__name__}_handler"
    return handler


validate_handler = _handler(validate)
infer_handler = _handler(infer)
persist_handler = _handler(persist)
mark_failed_handler = _handler(mark_failed)
