"""The DynamoDB study table: `pk = STUDY#{id}`, `sk = META | FEEDBACK#{iso time}`.

Status moves UPLOADED -> PROCESSING -> SUCCEEDED | FAILED -> REVIEWED; a FAILED study may be run
again (PROCESSING) after the cause is fixed. Transitions are conditional writes, so two workers
cannot move one study along different paths.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

UPLOADED, PROCESSING, SUCCEEDED, FAILED, REVIEWED = "UPLOADED", "PROCESSING", "SUCCEEDED", "FAILED", "REVIEWED"
ALLOWED_FROM = {
    PROCESSING: (UPLOADED, FAILED, PROCESSING),
    SUCCEEDED: (PROCESSING,),
    FAILED: (UPLOADED, PROCESSING, FAILED),
    REVIEWED: (SUCCEEDED, REVIEWED),
}
LIST_INDEX = "by_created"  # GSI: gsi1pk = "STUDY", gsi1sk = created_at#id
# What the study list shows: the index projects only these (small reads, however big the results).
LIST_FIELDS = ("study_id", "status", "filename", "created_at", "updated_at", "error_code", "model_version")


class TransitionError(Exception):
    def __init__(self, study_id: str, target: str, current: str | None):
        super().__init__(f"study {study_id} cannot become {target} from {current}")
        self.study_id, self.target, self.current = study_id, target, current


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pk(study_id: str) -> str:
    return f"STUDY#{study_id}"


def to_dynamo(value: Any) -> Any:
    """Floats become Decimals (DynamoDB has no float type)."""
    return json.loads(json.dumps(value), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class StudyStore:
    def __init__(self, table):
        self.table = table  # a boto3 DynamoDB Table resource

    # -- reads ---------------------------------------------------------------------------------
    def get(self, study_id: str) -> dict | None:
        item = self.table.get_item(Key={"pk": _pk(study_id), "sk": "META"}, ConsistentRead=True).get("Item")
        return from_dynamo(_public(item)) if item else None

    def list_recent(self, limit: int = 20, cursor: dict | None = None) -> tuple[list[dict], dict | None]:
        names = {f"#a{i}": a for i, a in enumerate(LIST_FIELDS)}
        kwargs = {"IndexName": LIST_INDEX, "KeyConditionExpression": Key("gsi1pk").eq("STUDY"),
                  "ScanIndexForward": False, "Limit": limit, "ProjectionExpression": ", ".join(names),
                  "ExpressionAttributeNames": names}
        if cursor:
            kwargs["ExclusiveStartKey"] = cursor
        resp = self.table.query(**kwargs)
        return [from_dynamo(_public(i)) for i in resp.get("Items", [])], resp.get("LastEvaluatedKey")

    def feedback(self, study_id: str) -> list[dict]:
        resp = self.table.query(KeyConditionExpression=Key("pk").eq(_pk(study_id)) & Key("sk").begins_with("FEEDBACK#"))
        return [from_dynamo(i) for i in resp.get("Items", [])]

    # -- writes --------------------------------------------------------------------------------
    def create(self, study_id: str, filename: str, upload_key: str, content_type: str, size: int) -> dict:
        created = now_iso()
        item = {"pk": _pk(study_id), "sk": "META", "study_id": study_id, "status": UPLOADED, "filename": filename,
                "upload_key": upload_key, "content_type": content_type, "size": size, "created_at": created,
                "updated_at": created, "gsi1pk": "STUDY", "gsi1sk": f"{created}#{study_id}"}
        self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        return from_dynamo(_public(item))

    def transition(self, study_id: str, target: str, **fields: Any) -> dict:
        """Move a study to `target` if its current status allows it, setting `fields` too."""
        allowed = ALLOWED_FROM[target]
        names = {"#s": "status", "#u": "updated_at"} | {f"#f{i}": k for i, k in enumerate(fields)}
        values = {":t": target, ":u": now_iso()} | {f":f{i}": to_dynamo(v) for i, v in enumerate(fields.values())}
        values |= {f":a{i}": a for i, a in enumerate(allowed)}
        expr = "SET " + ", ".join(["#s = :t", "#u = :u"] + [f"#f{i} = :f{i}" for i in range(len(fields))])
        if target != FAILED:
            expr += " REMOVE error_code, message"  # a re-run that succeeds forgets the old failure
        condition = f"attribute_exists(pk) AND #s IN ({', '.join(f':a{i}' for i in range(len(allowed)))})"
        try:
            resp = self.table.update_item(Key={"pk": _pk(study_id), "sk": "META"}, UpdateExpression=expr,
                                          ConditionExpression=condition, ExpressionAttributeNames=names,
                                          ExpressionAttributeValues=values, ReturnValues="ALL_NEW")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                current = self.get(study_id)
                raise TransitionError(study_id, target, current and current["status"]) from None
            raise
        return from_dynamo(_public(resp["Attributes"]))

    def mark_failed(self, study_id: str, error_code: str, message: str) -> dict:
        return self.transition(study_id, FAILED, error_code=error_code, message=message[:2000])

    def add_feedback(self, study_id: str, kind: str, s3_key: str, discs: list[dict], model_version: str | None) -> dict:
        at = now_iso()
        item = {"pk": _pk(study_id), "sk": f"FEEDBACK#{at}", "study_id": study_id, "kind": kind, "s3_key": s3_key,
                "discs": to_dynamo(discs), "model_version": model_version, "created_at": at}
        self.table.put_item(Item=item)
        return from_dynamo(item)

    # -- the deployed model ----------------------------------------------------------------------
    def current_model(self) -> dict | None:
        """The model version serving the endpoint, as recorded by whoever deployed it."""
        item = self.table.get_item(Key=MODEL_KEY, ConsistentRead=True).get("Item")
        return from_dynamo(_public(item)) if item else None

    def set_current_model(self, version: str, **details: Any) -> dict:
        self.table.put_item(Item=MODEL_KEY | {"model_version": version, "deployed_at": now_iso()} | to_dynamo(details))
        return self.current_model()


    # -- retraining bookkeeping (one item: feedback since the last run, and the run in flight) ------
    def count_new_feedback(self) -> int:
        resp = self.table.update_item(Key=RETRAIN_KEY, UpdateExpression="ADD pending :one",
                                      ExpressionAttributeValues={":one": 1}, ReturnValues="ALL_NEW")
        return int(resp["Attributes"]["pending"])

    def retrain_state(self) -> dict:
        item = self.table.get_item(Key=RETRAIN_KEY, ConsistentRead=True).get("Item") or {}
        return from_dynamo(_public(item)) | {"pending": int(item.get("pending", 0))}

    def claim_retrain(self, token: str) -> bool:
        """Take the one-run-at-a-time lock; False when a run holds it already."""
        try:
            self.table.update_item(Key=RETRAIN_KEY, UpdateExpression="SET running = :t, claimed_at = :now",
                                   ConditionExpression="attribute_not_exists(running)",
                                   ExpressionAttributeValues={":t": token, ":now": now_iso()})
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def retrain_started(self, token: str, execution_arn: str, counted: int) -> None:
        """Record the started run; the feedback it consumed leaves the pending count."""
        self.table.update_item(Key=RETRAIN_KEY, UpdateExpression="SET running = :arn, started_at = :now ADD pending :minus",
                               ConditionExpression="running = :t",
                               ExpressionAttributeValues={":arn": execution_arn, ":now": now_iso(), ":minus": -counted, ":t": token})

    def release_retrain(self, holder: str, outcome: str) -> bool:
        """Free the lock if `holder` (token or execution ARN) still holds it."""
        try:
            self.table.update_item(Key=RETRAIN_KEY, UpdateExpression="REMOVE running SET last_outcome = :o, finished_at = :now",
                                   ConditionExpression="running = :h",
                                   ExpressionAttributeValues={":h": holder, ":o": f"{holder} {outcome}", ":now": now_iso()})
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    # -- deployments the endpoint has not confirmed yet -----------------------------------------------
    def set_pending_model(self, version: str, **details: Any) -> None:
        self.table.put_item(Item=PENDING_MODEL_KEY | {"model_version": version, "requested_at": now_iso()} | to_dynamo(details))

    def pending_model(self) -> dict | None:
        item = self.table.get_item(Key=PENDING_MODEL_KEY, ConsistentRead=True).get("Item")
        return from_dynamo(_public(item)) if item else None

    def clear_pending_model(self) -> None:
        self.table.delete_item(Key=PENDING_MODEL_KEY)


MODEL_KEY = {"pk": "MODEL", "sk": "CURRENT"}
PENDING_MODEL_KEY = {"pk": "MODEL", "sk": "PENDING"}
RETRAIN_KEY = {"pk": "PIPELINE", "sk": "RETRAIN"}


def _public(item: dict) -> dict:
    return {k: v for k, v in item.items() if k not in ("pk", "sk", "gsi1pk", "gsi1sk")}

