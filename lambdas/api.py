"""The REST API (API Gateway proxy integration), on powertools' resolver.

Routes: POST /studies, GET /studies, GET /studies/{id}, POST /studies/{id}/corrections,
POST /studies/{id}/accept, POST /studies/{id}/retry, GET /models/current. Bodies are validated with
powertools parser models; every error is JSON `{"error_code", "message"}`. Authentication happens in
front of this function (API Gateway: IAM for clinical systems, Cognito for people; the local gateway
builds the same request context). The caller (shared.identity) decides which studies it may create,
list, read and review (shared.access), and is recorded as the reviewer of each saved review.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, ValidationError, parse
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator

from lambdas.shared import access, keys, yolo
from lambdas.shared.identity import Caller, Unauthenticated, caller_from_event, display_name
from lambdas.shared.observability import tools
from lambdas.shared.settings import Settings
from lambdas.shared.store import (FAILED, REVIEWED, SUCCEEDED, UPLOADED, StaleVersion, StudyStore, TransitionError,
                                  now_iso)
from lambdas.shared.worklist import WorklistQuery, disc_summary

logger, tracer, metrics = tools("api")
app = APIGatewayRestResolver()

ALLOWED_CONTENT_TYPES = {
    "application/octet-stream", "application/zip", "application/x-zip-compressed", "application/gzip",
    "application/x-gzip", "application/x-nifti", "image/png", "image/jpeg", "application/dicom",
}
ARTIFACTS = keys.RESULT_FILES


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


# --- request models ----------------------------------------------------------------------------


# Strict: "10" is not a number and "yes" is not a boolean; NaN and infinity are not coordinates.
Coordinate = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class CreateStudy(BaseModel):
    filename: StrictStr = Field(min_length=1, max_length=255)
    content_type: StrictStr = "application/octet-stream"
    size: StrictInt = Field(gt=0)

    @field_validator("content_type")
    @classmethod
    def known_type(cls, value: str) -> str:
        value = value.split(";")[0].strip().lower()
        if value not in ALLOWED_CONTENT_TYPES:
            raise ValueError(f"content type {value!r} is not accepted; use one of {sorted(ALLOWED_CONTENT_TYPES)}")
        return value


class DiscIn(BaseModel):
    box: list[Coordinate] = Field(min_length=4, max_length=4)
    level: Literal["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    herniated: StrictBool = False
    # the model's disc (index into the study's discs) this box came from; none for a drawn box
    model_disc: StrictInt | None = Field(default=None, ge=0, lt=64)

    @field_validator("box")
    @classmethod
    def ordered(cls, box: list[float]) -> list[float]:
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError("box must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
        return box


class OtherDiscIn(DiscIn):
    """A disc outside the YOLO classes (T12-L1): kept with the review, not in the training file."""
    level: Literal["T12-L1"]


class Corrections(BaseModel):
    discs: list[DiscIn] = Field(max_length=12)
    other_discs: list[OtherDiscIn] = Field(default_factory=list, max_length=4)
    # the review version the reviewer saw (0: none); a save on any other version is refused
    base_version: StrictInt = Field(default=0, ge=0)


class Acceptance(BaseModel):
    base_version: StrictInt = Field(default=0, ge=0)


# --- dependencies ------------------------------------------------------------------------------


@dataclass
class Deps:
    s3: Any
    events: Any
    store: StudyStore
    settings: Settings


@lru_cache(maxsize=1)
def default_deps() -> Deps:
    settings = Settings.from_env()
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    return Deps(s3, boto3.client("events"), StudyStore(boto3.resource("dynamodb").Table(settings.table_name)), settings)


# --- plain functions (tested without API Gateway) ----------------------------------------------


def create_study(body: dict, deps: Deps, caller: Caller) -> dict:
    owner = _owner(caller)
    req = _parse(body, CreateStudy)
    limit = deps.settings.max_upload_bytes
    if req.size > limit:
        raise ApiError(413, "FILE_TOO_LARGE", f"{req.size} bytes; the limit is {limit}")
    study_id = keys.new_study_id()
    key = keys.upload_key(study_id, req.filename)
    deps.store.create(study_id, req.filename, key, req.content_type, req.size, owner=owner)
    post = deps.s3.generate_presigned_post(
        Bucket=deps.settings.study_bucket, Key=key, Fields={"Content-Type": req.content_type},
        Conditions=[{"Content-Type": req.content_type}, ["content-length-range", 1, req.size]],
        ExpiresIn=deps.settings.presign_expiry_s)
    metrics.add_metric(name="StudiesCreated", unit=MetricUnit.Count, value=1)
    return {"study_id": study_id, "status": "UPLOADED", "upload": post, "expires_in": deps.settings.presign_expiry_s}


def get_study(study_id: str, deps: Deps, caller: Caller) -> dict:
    study = _study(study_id, deps, caller)
    artifacts = study.pop("artifacts", None) or {}
    study["artifacts"] = {
        name: deps.s3.generate_presigned_url("get_object", Params={"Bucket": deps.settings.study_bucket, "Key": key},
                                             ExpiresIn=deps.settings.presign_expiry_s)
        for name, key in artifacts.items() if name in ARTIFACTS}
    history = deps.store.feedback(study_id)
    study["feedback"] = [_history_entry(f) for f in history]
    study["feedback_version"] = study.get("feedback_version", len(history))
    return study


def _history_entry(item: dict) -> dict:
    """One review as the study's history shows it: who, when, what."""
    entry = {k: item[k] for k in ("version", "kind", "created_at", "s3_key", "discs") if k in item}
    entry["reviewer"] = item.get("reviewer") or {"id": "unknown", "kind": "client", "name": "unknown"}
    if "replaces" in item:
        entry["replaces"] = item["replaces"]
    return entry


def list_studies(params: dict[str, str | None], caller: Caller, deps: Deps) -> dict:
    """The worklist: the caller's studies in the date window, filtered and ordered (unreviewed
    first), a page at a time; the cursor is the position in that order."""
    owner = _owner(caller)
    raw = params.get("limit") or "20"
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ApiError(400, "BAD_REQUEST", "limit must be an integer from 1 to 100")
    try:
        query = WorklistQuery.from_params(params)
    except ValueError as exc:
        raise ApiError(400, "BAD_REQUEST", str(exc)) from None
    start = _decode_cursor(params["cursor"]) if params.get("cursor") else 0
    window, truncated = deps.store.list_window(owner, query.since, query.until)
    ordered = query.arrange(window)
    end = start + int(raw)
    return {"studies": ordered[start:end], "total": len(ordered), "truncated": truncated,
            "next_cursor": _encode_cursor({"offset": end}) if end < len(ordered) else None,
            "reviewers": sorted({s["reviewed_by"] for s in window if s.get("reviewed_by")}),
            "caller": {"id": caller.id, "kind": caller.kind}}


def save_feedback(study_id: str, kind: Literal["correction", "accept"], body: dict | None, caller: Caller,
                  deps: Deps, reviewer_name: str | None = None) -> dict:
    """Record a review as the study's next version (never overwriting one) and write its YOLO file.

    `caller` saves it (a study outside their scope does not exist for them); the review records
    them as {id, kind, name}. The body says which version the reviewer saw (`base_version`); when
    someone saved since, the save is refused (409 STALE_VERSION).
    """
    study = _study(study_id, deps, caller)
    reviewer = {"id": caller.id, "kind": caller.kind, "name": reviewer_name or caller.id}
    if study["status"] not in (SUCCEEDED, REVIEWED):
        raise ApiError(409, "NOT_READY", f"study is {study['status']}; feedback needs a finished study")
    height, width = study["image_size"]
    if kind == "correction":
        request = _parse(body, Corrections)
        discs = [d.model_dump(exclude_none=True) for d in request.discs + request.other_discs]
        key = keys.corrected_key(study_id)
    else:  # accept the model's discs as they are
        request = _parse(body if body is not None else {}, Acceptance)
        discs = [{"box": d["box"], "level": d["level"], "herniated": d["herniated"], "model_disc": i}
                 for i, d in enumerate(study.get("discs") or [])]
        key = keys.initial_key(study_id)
    for d in discs:
        x1, y1, x2, y2 = d["box"]
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise ApiError(400, "BOX_OUTSIDE_IMAGE", f"box {d['box']} is outside the {width}x{height} key slice")
    # the training file holds the YOLO classes only; other levels (T12-L1) stay in the review
    training = [d for d in discs if d["level"] in yolo.LEVELS]
    text = yolo.to_lines([yolo.Box(d["level"], d["herniated"], *d["box"]) for d in training], width, height)
    at, version = now_iso(), request.base_version + 1
    try:
        saved = deps.store.save_review(
            study_id, request.base_version, at,
            {"kind": kind, "s3_key": key, "discs": discs, "model_version": study.get("model_version"), "reviewer": reviewer},
            {"reviewed_discs": discs, "reviewed_by": reviewer["id"], "reviewed_at": at,
             "herniated": disc_summary(discs)["herniated"],
             "review": {"kind": kind, "at": at, "by": reviewer, "version": version, "s3_key": key}})
    except StaleVersion as exc:
        raise _stale(exc) from None
    except TransitionError as exc:
        raise ApiError(409, "NOT_READY", str(exc)) from None
    # only a save that won its version touches the training file
    deps.s3.put_object(Bucket=deps.settings.study_bucket, Key=key, Body=text.encode(), ContentType="text/plain")
    deps.events.put_events(Entries=[{
        "Source": "discscope.api", "DetailType": "FeedbackSaved", "EventBusName": deps.settings.event_bus,
        "Detail": json.dumps({"study_id": study_id, "kind": kind, "s3_key": key, "discs": len(training),
                              "version": saved["version"], "reviewer": reviewer["id"],
                              "model_version": study.get("model_version")})}])
    metrics.add_metric(name="FeedbackSaved", unit=MetricUnit.Count, value=1)
    return {"study_id": study_id, "kind": kind, "version": saved["version"], "reviewer": reviewer,
            "saved_at": saved["created_at"], "s3_key": key, "yolo": text, "discs": discs, "status": REVIEWED}


def _stale(exc: StaleVersion) -> ApiError:
    latest = exc.latest or {}
    who = (latest.get("reviewer") or {}).get("name") or "someone"
    what = "an acceptance of the model's result" if latest.get("kind") == "accept" else "a correction"
    return ApiError(409, "STALE_VERSION",
                    f"Not saved: {who} saved {what} (version {exc.current}) at {latest.get('created_at', 'an earlier time')}, "
                    f"after you opened version {exc.base}. Reload the study to see it; your change was not stored.",
                    {"current_version": exc.current, "base_version": exc.base,
                     "latest": {k: latest[k] for k in ("version", "kind", "created_at", "reviewer") if k in latest}})


def retry_study(study_id: str, deps: Deps, caller: Caller) -> dict:
    """Run a FAILED study again on its stored upload. The upload is copied onto itself, which is a new
    write of the object: S3 sends a new event (new sequencer), so ingest starts a new execution."""
    study = _study(study_id, deps, caller)
    if study["status"] != FAILED:
        raise ApiError(409, "NOT_FAILED", f"study is {study['status']}; only a FAILED study is run again")
    bucket, key = deps.settings.study_bucket, study["upload_key"]
    try:
        head = deps.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            raise ApiError(409, "UPLOAD_MISSING", "the study's upload is not stored: create a new study") from None
        raise
    try:  # one re-run at a time: a second click finds the study UPLOADED already
        deps.store.transition(study_id, UPLOADED, rerun_at=now_iso(), previous_error=study.get("error_code"))
    except TransitionError as exc:
        raise ApiError(409, "NOT_FAILED", str(exc)) from None
    try:
        deps.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                            MetadataDirective="REPLACE", ContentType=head.get("ContentType", "application/octet-stream"),
                            Metadata={"rerun-at": now_iso()})
    except ClientError:  # no new event will come: the study is FAILED as it was
        deps.store.mark_failed(study_id, study.get("error_code") or "RERUN_FAILED", study.get("message") or "")
        raise
    metrics.add_metric(name="StudiesRerun", unit=MetricUnit.Count, value=1)
    return {"study_id": study_id, "status": UPLOADED}


def current_model(deps: Deps) -> dict:
    model = deps.store.current_model()
    if not model:
        raise ApiError(404, "NO_MODEL", "no model has been deployed yet")
    return model


def _study(study_id: str, deps: Deps, caller: Caller) -> dict:
    if not keys.is_study_id(study_id):
        raise ApiError(404, "NOT_FOUND", f"no study {study_id!r}")
    study = deps.store.get(study_id)
    if study is None or not access.may_access(caller, study):  # another owner's study does not exist for this caller
        raise ApiError(404, "NOT_FOUND", f"no study {study_id}")
    return study


def _owner(caller: Caller) -> str:
    try:
        return access.owner_of(caller)
    except access.NoGroup as exc:
        raise ApiError(403, "NO_GROUP", str(exc)) from None


def _parse(body: Any, model):
    if not isinstance(body, dict):
        raise ApiError(400, "BAD_REQUEST", "the request body must be a JSON object")
    try:
        return parse(event=body, model=model)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise ApiError(400, "BAD_REQUEST", details) from None


def _encode_cursor(key: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode_cursor(cursor: str) -> int:
    """The position a cursor this API returned holds; BAD_CURSOR for anything else."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error, RecursionError):
        value = None
    if isinstance(value, dict) and set(value) == {"offset"} and type(value["offset"]) is int and value["offset"] >= 0:
        return value["offset"]
    raise ApiError(400, "BAD_CURSOR", "the cursor is not one this API returned")


# --- routes ------------------------------------------------------------------------------------


def _json_body() -> Any:
    try:
        return app.current_event.json_body
    except (ValueError, TypeError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise ApiError(400, "BAD_REQUEST", "the request body is not valid JSON") from None


def _caller() -> Caller:
    try:
        caller = caller_from_event(app.current_event.raw_event)
    except Unauthenticated as exc:
        raise ApiError(401, "UNAUTHENTICATED", str(exc)) from None
    logger.append_keys(caller=caller.id)  # every log line of this request names who asked
    return caller


@app.post("/studies")
def _create() -> Response:
    return Response(201, "application/json", json.dumps(create_study(_json_body(), default_deps(), _caller())))


@app.get("/studies")
def _list() -> dict:
    params = app.current_event.query_string_parameters or {}
    return list_studies(params, _caller(), default_deps())


@app.get("/studies/<study_id>")
def _get(study_id: str) -> dict:
    logger.append_keys(study_id=study_id)
    return get_study(study_id, default_deps(), _caller())


@app.post("/studies/<study_id>/corrections")
def _corrections(study_id: str) -> dict:
    logger.append_keys(study_id=study_id)
    return save_feedback(study_id, "correction", _json_body(), _caller(), default_deps(),
                         display_name(app.current_event.raw_event))


@app.post("/studies/<study_id>/accept")
def _accept(study_id: str) -> dict:
    logger.append_keys(study_id=study_id)
    body = _json_body() if app.current_event.body else None
    return save_feedback(study_id, "accept", body, _caller(), default_deps(), display_name(app.current_event.raw_event))


@app.post("/studies/<study_id>/retry")
def _retry(study_id: str) -> Response:
    logger.append_keys(study_id=study_id)
    return Response(202, "application/json", json.dumps(retry_study(study_id, default_deps(), _caller())))


@app.get("/models/current")
def _model() -> dict:
    _caller()
    return current_model(default_deps())


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return Response(exc.status, "application/json",
                    json.dumps({"error_code": exc.code, "message": exc.message} | exc.details))


@app.not_found
def _not_found(exc: NotFoundError) -> Response:
    return Response(404, "application/json", json.dumps({"error_code": "NOT_FOUND", "message": "no such route"}))


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error")
    return Response(500, "application/json", json.dumps({"error_code": "INTERNAL_ERROR", "message": "internal error"}))


@logger.inject_lambda_context(clear_state=True)  # the caller and study keys of one request end with it
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: Any) -> dict:
    return app.resolve(event, context)
