"""Starts the retraining pipeline: once RETRAIN_MIN_FEEDBACK new feedback items exist, or on the schedule.

Events (EventBridge, see shared.events):
- FeedbackSaved (the API): one more pending item, counted once per event id (EventBridge may deliver
  an event twice); start when the count reaches the threshold;
- Scheduled Event: start if any feedback is pending;
- SageMaker Model Building Pipeline Execution Status Change: a run ended, free the lock;
- Retrain Requested (an operator, `discscope retrain`): start now, whatever the count.
One run at a time: a conditional write in DynamoDB is the lock. A lock whose execution SageMaker
reports as finished is freed on the next event, so a lost status event cannot block retraining.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable

import boto3

from lambdas.shared.events import FEEDBACK_SAVED, PIPELINE_STATUS, SCHEDULED, eventbridge_events
from lambdas.shared.observability import tools
from lambdas.shared.settings import Settings
from lambdas.shared.store import StudyStore

logger, tracer, metrics = tools("retrain-trigger")
ACTIVE = ("Executing", "Stopping")
RETRAIN_REQUESTED = "Retrain Requested"
STALE_CLAIM = timedelta(minutes=15)  # far longer than a start takes (the function times out at 1 min)
APPROVAL_STATUS = {"auto": "Approved", "manual": "PendingManualApproval"}


@dataclass
class Deps:
    store: StudyStore
    sagemaker: Any
    settings: Settings
    # starts the pipeline and returns the execution ARN (the local stack also runs its steps)
    start: Callable[[str, list[dict], str], str] | None = None

    def start_pipeline(self, name: str, parameters: list[dict], token: str) -> str:
        if self.start:
            return self.start(name, parameters, token)
        return self.sagemaker.start_pipeline_execution(
            PipelineName=name, PipelineParameters=parameters, ClientRequestToken=token,
            PipelineExecutionDescription="started by discscope retrain_trigger")["PipelineExecutionArn"]


def pipeline_parameters(deps: Deps) -> list[dict]:
    """The live model to compare against and the approval mode; everything else keeps its default."""
    params = [{"Name": "ModelApprovalStatus", "Value": APPROVAL_STATUS.get(deps.settings.retrain_approval, "PendingManualApproval")}]
    model = deps.store.current_model() or {}
    if model.get("model_data_url"):
        params.append({"Name": "ProductionModelUri", "Value": model["model_data_url"]})
    return params


def _free_if_finished(state: dict, deps: Deps) -> bool:
    """True when no run holds the lock (any more)."""
    holder = state.get("running")
    if not holder:
        return True
    if not str(holder).startswith("arn:"):  # claimed, not started: by a run starting now, or by one that died
        claimed = datetime.fromisoformat(state.get("claimed_at", "").replace("Z", "+00:00") or "1970-01-01T00:00:00+00:00")
        if datetime.now(timezone.utc) - claimed < STALE_CLAIM:
            return False
        return deps.store.release_retrain(holder, "STALE_CLAIM")
    status = deps.sagemaker.describe_pipeline_execution(PipelineExecutionArn=holder)["PipelineExecutionStatus"]
    if status in ACTIVE:
        return False
    deps.store.release_retrain(holder, status)
    return True


def maybe_start(deps: Deps, reason: str, min_pending: int | None = None, force: bool = False) -> dict:
    threshold = deps.settings.retrain_min_feedback if min_pending is None else min_pending
    state = deps.store.retrain_state()
    pending = state["pending"]
    if not force and pending < threshold:
        return {"started": False, "reason": "BELOW_THRESHOLD", "pending": pending, "threshold": threshold}
    if not _free_if_finished(state, deps):
        return {"started": False, "reason": "ALREADY_RUNNING", "pending": pending, "running": state.get("running")}
    token = uuid.uuid4().hex
    if not deps.store.claim_retrain(token):
        return {"started": False, "reason": "ALREADY_RUNNING", "pending": pending}
    try:
        arn = deps.start_pipeline(deps.settings.pipeline_name, pipeline_parameters(deps), token)
    except Exception:
        deps.store.release_retrain(token, "FAILED_TO_START")
        raise
    deps.store.retrain_started(token, arn, pending)
    logger.info("started retraining", extra={"execution": arn, "reason": reason, "feedback": pending})
    return {"started": True, "execution_arn": arn, "reason": reason, "feedback": pending}


def on_event(event: dict, deps: Deps) -> dict:
    kind = event.get("detail-type")
    if kind == FEEDBACK_SAVED:
        if not deps.store.count_new_feedback(event.get("id") or _event_key(event)):
            return {"started": False, "reason": "DUPLICATE_EVENT", "event_id": event.get("id")}
        return maybe_start(deps, "feedback")
    if kind == SCHEDULED:
        return maybe_start(deps, "schedule", min_pending=1)
    if kind == RETRAIN_REQUESTED:
        return maybe_start(deps, "requested", force=True)
    if kind == PIPELINE_STATUS:
        detail = event.get("detail", {})
        status = detail.get("currentPipelineExecutionStatus", "")
        if status not in ACTIVE and detail.get("pipelineExecutionArn"):
            freed = deps.store.release_retrain(detail["pipelineExecutionArn"], status)
            return {"released": freed, "status": status}
        return {"released": False, "status": status}
    return {"ignored": kind}


def _event_key(event: dict) -> str:
    """An event without an id (a hand-made one) is keyed by its content."""
    return hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=1)
def default_deps() -> Deps:
    settings = Settings.from_env()
    return Deps(StudyStore(boto3.resource("dynamodb").Table(settings.table_name)), boto3.client("sagemaker"), settings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: Any) -> list[dict]:
    return [on_event(e, default_deps()) for e in eventbridge_events(event)]
