"""S3 ObjectCreated on uploads/ -> one StudyWorkflow execution per object, idempotently.

Two guards against duplicate S3 deliveries: powertools idempotency on DynamoDB keyed by the
object's bucket, key and event sequencer, and a deterministic execution name derived from the same
(Step Functions refuses a second execution of that name).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from botocore.exceptions import ClientError

from lambdas.shared import keys
from lambdas.shared.access import UNASSIGNED
from lambdas.shared.observability import tools
from lambdas.shared.settings import Settings
from lambdas.shared.store import StudyStore

logger, tracer, metrics = tools("ingest")
IDEMPOTENCY = IdempotencyConfig(expires_after_seconds=24 * 3600)


def upload_records(event: dict) -> list[dict]:
    """The study uploads named in an S3 event (keys URL-decoded); other objects are ignored."""
    out = []
    for record in event.get("Records", []):
        s3 = record.get("s3", {})
        raw_key = s3.get("object", {}).get("key", "")
        parsed = keys.parse_upload_key(raw_key)
        if parsed is None:
            logger.info("ignoring object outside uploads/", extra={"key": raw_key})
            continue
        study_id, filename = parsed
        obj = s3.get("object", {})
        out.append({"bucket": s3["bucket"]["name"], "key": f"{keys.UPLOADS}{study_id}/{filename}", "study_id": study_id,
                    "filename": filename, "size": int(obj.get("size", 0)), "sequencer": object_version(record)})
    return out


def object_version(record: dict) -> str:
    """What tells this write of the object from an earlier one, while a redelivery of the same event
    repeats it: S3's sequencer. The local stand-in sends none; its event time (ms) and ETag do the job."""
    obj = record.get("s3", {}).get("object", {})
    return obj.get("sequencer") or f"{record.get('eventTime', '')}/{obj.get('eTag', '')}/{obj.get('versionId', '')}"


def execution_name(record: dict) -> str:
    digest = hashlib.sha256(f"{record['bucket']}/{record['key']}/{record['sequencer']}".encode()).hexdigest()[:16]
    return f"{record['study_id']}-{digest}"  # 49 characters, within the 80 allowed


def start_workflow(record: dict, sfn, store: StudyStore, state_machine_arn: str) -> dict:
    if store.get(record["study_id"]) is None:
        # Uploaded without POST /studies (e.g. straight to S3 by an operator): keep it, register it.
        store.create(record["study_id"], record["filename"], record["key"], "application/octet-stream", record["size"],
                     owner=UNASSIGNED)
    name = execution_name(record)
    payload = {"study_id": record["study_id"], "bucket": record["bucket"], "key": record["key"]}
    try:
        arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))["executionArn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise
        arn = f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
        logger.info("execution already exists", extra={"execution": name})
    metrics.add_metric(name="WorkflowsStarted", unit=MetricUnit.Count, value=1)
    return {"study_id": record["study_id"], "execution_arn": arn}


@lru_cache(maxsize=1)
def _clients():
    settings = Settings.from_env()
    store = StudyStore(boto3.resource("dynamodb").Table(settings.table_name))
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table)

    @idempotent_function(data_keyword_argument="record", persistence_store=persistence, config=IDEMPOTENCY)
    def start_once(record: dict) -> dict:
        # the key is the whole record: bucket, key, size and the S3 sequencer of this object version
        return start_workflow(record, boto3.client("stepfunctions"), store, settings.state_machine_arn)

    return start_once


def ingest(event: dict, context: Any = None) -> list[dict]:
    start_once = _clients()
    if context is not None:
        IDEMPOTENCY.register_lambda_context(context)
    return [start_once(record=record) for record in upload_records(event)]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: Any) -> dict:
    return {"started": ingest(event, context)}
