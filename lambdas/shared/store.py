"""The DynamoDB study table: `pk = STUDY#{id}`, `sk = META | FEEDBACK#{iso time}`.

Status moves UPLOADED -> PROCESSING -> SUCCEEDED | FAILED -> REVIEWED; a FAILED study may be run
again (UPLOADED by a retry, or PROCESSING when a fixed file arrives). Transitions are conditional writes, so two workers
cannot move one study along different paths.

Reviews are versioned: each saved correction or acceptance is a new FEEDBACK item with the next
`version`, written in one transaction with the study's `feedback_version`, and only when the saver
saw the current version; nothing is overwritten, a stale save is refused (StaleVersion).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

UPLOADED, PROCESSING, SUCCEEDED, FAILED, REVIEWED = "UPLOADED", "PROCESSING", "SUCCEEDED", "FAILED", "REVIEWED"
ALLOWED_FROM = {
    UPLOADED: (FAILED,),  # queued again by POST /studies/{id}/retry
    PROCESSING: (UPLOADED, FAILED, PROCESSING),
    SUCCEEDED: (PROCESSING,),
    FAILED: (UPLOADED, PROCESSING, FAILED),
    REVIEWED: (SUCCEEDED, REVIEWED),
}
LIST_INDEX = "by_created"  # GSI: gsi1pk = "OWNER#{owner}", gsi1sk = created_at#id: each owner's studies, newest first
# What the worklist shows, sorts and filters on: the index projects only these (small reads, however
# big the results). The summary fields (needs_review ... feedback_version) are kept on the study
# record by Persist and by each saved review.
LIST_FIELDS = ("study_id", "status", "filename", "created_at", "updated_at", "error_code", "model_version",
               "needs_review", "max_probability", "herniated", "reviewed_by", "reviewed_at", "feedback_version")


class StaleVersion(Exception):
    """A review was saved on a version that is no longer the study's latest."""

    def __init__(self, study_id: str, base: int, current: int, latest: dict | None):
        super().__init__(f"study {study_id} is at review version {current}, not {base}")
        self.study_id, self.base, self.current, self.latest = study_id, base, current, latest


class TransitionError(Exception):
    def __init__(self, study_id: str, target: str, current: str | None):
        super().__init__(f"study {study_id} cannot become {target} from {current}")
        self.study_id, self.target, self.current = study_id, target, current


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pk(study_id: str) -> str:
    return f"STUDY#{study_id}"


def _owner_key(owner: str) -> str:
    return f"OWNER#{owner}"


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

    def list_recent(self, owner: str, limit: int = 20, cursor: dict | None = None) -> tuple[list[dict], dict | None]:
        """One owner's studies, newest first; `cursor` must come from a list of the same owner."""
        if cursor is not None and cursor.get("gsi1pk") != _owner_key(owner):
            raise ValueError("the cursor belongs to another list")
        kwargs = {"IndexName": LIST_INDEX, "KeyConditionExpression": Key("gsi1pk").eq(_owner_key(owner)),
                  "ScanIndexForward": False, "Limit": limit}
        if cursor:
            kwargs["ExclusiveStartKey"] = cursor
        resp = self.table.query(**kwargs)
        return [_listed(i) for i in resp.get("Items", [])], resp.get("LastEvaluatedKey")

    def list_window(self, owner: str, since: str | None = None, until: str | None = None,
                    cap: int = 5000) -> tuple[list[dict], bool]:
        """Every study of `owner` created in [since, until] (ISO prefixes), newest first, at most
        `cap`; and whether more were left out. The worklist sorts and filters this set."""
        condition = Key("gsi1pk").eq(_owner_key(owner))
        if since or until:
            condition &= Key("gsi1sk").between(since or "0", (until or "9") + "\uffff")
        kwargs = {"IndexName": LIST_INDEX, "KeyConditionExpression": condition, "ScanIndexForward": False}
        items: list[dict] = []
        while len(items) < cap:
            resp = self.table.query(**kwargs, Limit=cap - len(items))
            items += [_listed(i) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return items, False
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return items, True

    def unfinished(self) -> list[dict]:
        """Every study still UPLOADED or PROCESSING, whoever owns it (a scan: for restarts of the local stack)."""
        found, kwargs = [], {"FilterExpression": Attr("sk").eq("META") & Attr("status").is_in([UPLOADED, PROCESSING])}
        while True:
            resp = self.table.scan(**kwargs)
            found += [from_dynamo(_public(i)) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return found
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def feedback(self, study_id: str) -> list[dict]:
        """The study's reviews, oldest first (each one a version)."""
        kwargs = {"KeyConditionExpression": Key("pk").eq(_pk(study_id)) & Key("sk").begins_with("FEEDBACK#")}
        items = []
        while True:
            resp = self.table.query(**kwargs)
            items += [from_dynamo(_public(i)) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        for number, item in enumerate(items, start=1):
            item.setdefault("version", number)  # reviews saved before versioning count in order
        return items

    # -- writes --------------------------------------------------------------------------------
    def create(self, study_id: str, filename: str, upload_key: str, content_type: str, size: int, *, owner: str) -> dict:
        created = now_iso()
        item = {"pk": _pk(study_id), "sk": "META", "study_id": study_id, "status": UPLOADED, "filename": filename,
                "upload_key": upload_key, "content_type": content_type, "size": size, "created_at": created,
                "updated_at": created, "owner": owner, "gsi1pk": _owner_key(owner), "gsi1sk": f"{created}#{study_id}"}
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

    def save_review(self, study_id: str, base_version: int, at: str, feedback: dict, study_fields: dict[str, Any]) -> dict:
        """Record a review as version base_version + 1: the FEEDBACK item (`feedback` plus its
        version and time) and, on the study, status REVIEWED with `study_fields`, atomically.

        Refused with StaleVersion when the study's version is not `base_version` (someone saved in
        between), with TransitionError when the study is not finished. Returns the FEEDBACK item.
        """
        version = base_version + 1
        item = {"pk": _pk(study_id), "sk": f"FEEDBACK#{at}", "study_id": study_id, "version": version,
                "replaces": base_version, "created_at": at} | feedback
        fields = study_fields | {"status": REVIEWED, "updated_at": at, "feedback_version": version}
        names = {f"#f{i}": k for i, k in enumerate(fields)} | {"#s": "status", "#v": "feedback_version"}
        values = {f":f{i}": v for i, v in enumerate(fields.values())} | {":done": SUCCEEDED, ":reviewed": REVIEWED,
                                                                         ":base": base_version}
        # a study without feedback_version (never reviewed, or reviewed before versioning) is at
        # the version its review count says
        unversioned_ok = base_version == len(self.feedback(study_id))
        same_version = "#v = :base" + (" OR attribute_not_exists(#v)" if unversioned_ok else "")
        try:  # the resource's client takes plain values (boto3 serialises them for DynamoDB)
            self.table.meta.client.transact_write_items(TransactItems=[
                {"Update": {"TableName": self.table.name, "Key": {"pk": _pk(study_id), "sk": "META"},
                            "UpdateExpression": "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
                            "ConditionExpression": f"attribute_exists(pk) AND #s IN (:done, :reviewed) AND ({same_version})",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": to_dynamo(values)}},
                {"Put": {"TableName": self.table.name, "Item": to_dynamo(item),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            current = self.get(study_id)
            if current is None or current["status"] not in (SUCCEEDED, REVIEWED):
                raise TransitionError(study_id, REVIEWED, current and current["status"]) from None
            history = self.feedback(study_id)
            raise StaleVersion(study_id, base_version, current.get("feedback_version", len(history)),
                               history[-1] if history else None) from None
        return from_dynamo(_public(item))

    # -- the deployed model ----------------------------------------------------------------------
    def current_model(self) -> dict | None:
        """The model version serving the endpoint, as recorded by whoever deployed it."""
        item = self.table.get_item(Key=MODEL_KEY, ConsistentRead=True).get("Item")
        return from_dynamo(_public(item)) if item else None

    def set_current_model(self, version: str, **details: Any) -> dict:
        self.table.put_item(Item=MODEL_KEY | {"model_version": version, "deployed_at": now_iso()} | to_dynamo(details))
        return self.current_model()


    # -- retraining bookkeeping (one item: feedback since the last run, and the run in flight) ------
    def count_new_feedback(self, event_id: str) -> bool:
        """Count one more pending feedback item, once per event: EventBridge delivers at least once,
        so a redelivered event (same id) is recognised by its marker and not counted again.
        Returns False for a redelivery."""
        marker = {"pk": RETRAIN_KEY["pk"], "sk": f"EVENT#{event_id}",
                  "expires_at": int(datetime.now(timezone.utc).timestamp()) + EVENT_MARKER_TTL_S}
        client = self.table.meta.client
        try:
            client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table.name, "Item": to_dynamo(marker),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Update": {"TableName": self.table.name, "Key": RETRAIN_KEY, "UpdateExpression": "ADD pending :one",
                            "ExpressionAttributeValues": {":one": 1}}}])
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if exc.response["Error"]["Code"] == "TransactionCanceledException" and "ConditionalCheckFailed" in reasons:
                return False
            raise
        return True

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
# EventBridge retries for at most 24 h; markers of counted events outlive that, then expire (table TTL).
EVENT_MARKER_TTL_S = 7 * 24 * 3600
TTL_ATTRIBUTE = "expires_at"


def _public(item: dict) -> dict:
    return {k: v for k, v in item.items() if k not in ("pk", "sk", "gsi1pk", "gsi1sk")}


def _listed(item: dict) -> dict:
    """A list entry: the projected fields only (an index that projects more gives no more)."""
    return from_dynamo({k: v for k, v in item.items() if k in LIST_FIELDS})

