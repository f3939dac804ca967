"""The REST API (API Gateway proxy integration), on powertools' resolver.

Routes: POST /studies, GET /studies, GET /studies/{id}, POST /studies/{id}/corrections,
POST /studies/{id}/accept, GET /models/current. Bodies are validated with powertools parser
models; every error is JSON `{"error_code", "message"}`. Authentication happens in front of this
function (API Gateway API keys / Cognito in AWS, the local proxy's API key check locally).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Literal

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, ValidationError, parse
from botocore.config import Config
from pydantic import Field, field_validator

from lambdas.shared import keys, yolo
from lambdas.shared.observability import tools
from lambdas.shared.settings import Settings
from lambdas.shared.store import REVIEWED, SUCCEEDED, StudyStore, TransitionError

logger, tracer, metrics = tools("api")
app = APIGatewayRestResolver()

ALLOWED_CONTENT_TYPES = {
    "application/octet-stream", "application/zip", "application/x-zip-compressed", "application/gzip",
    "application/x-gzip", "application/x-nifti", "image/png", "image/jpeg", "application/dicom",
}
ARTIFACTS = keys.RESULT_FILES


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --- request models ----------------------------------------------------------------------------


class CreateStudy(BaseModel):
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = "application/octet-stream"
    size: int = Field(gt=0)

    @field_validator("content_type")
    @classmethod
    def known_type(cls, value: str) -> str:
        value = value.split(";")[0].strip().lower()
        if value not in ALLOWED_CONTENT_TYPES:
            raise ValueError(f"content type {value!r} is not accepted; use one of {sorted(ALLOWED_CONTENT_TYPES)}")
        return value


class DiscIn(BaseModel):
    box: list[float] = Field(min_length=4, max_length=4)
    level: Literal["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    herniated: bool = False

    @field_validator("box")
    @classmethod
    def ordered(cls, box: list[float]) -> list[float]:
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError("box must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
        return box


class Corrections(BaseModel):
    discs: list[DiscIn] = Field(max_length=12)


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


def create_study(body: dict, deps: Deps) -> dict:
    req = _parse(body, CreateStudy)
    limit = deps.settings.max_upload_bytes
    if req.size > limit:
        raise ApiError(413, "FILE_TOO_LARGE", f"{req.size} bytes; the limit is {limit}")
    study_id = keys.new_study_id()
    key = keys.upload_key(study_id, req.filename)
    deps.store.create(study_id, req.filename, key, req.content_type, req.size)
    post = deps.s3.generate_presigned_post(
        Bucket=deps.settings.study_bucket, Key=key, Fields={"Content-Type": req.content_type},
        Conditions=[{"Content-Type": req.content_type}, ["content-length-range", 1, req.size]],
        ExpiresIn=deps.settings.presign_expiry_s)
    metrics.add_metric(name="StudiesCreated", unit=MetricUnit.Count, value=1)
    return {"study_id": study_id, "status": "UPLOADED", "upload": post, "expires_in": deps.settings.presign_expiry_s}


def get_study(study_id: str, deps: Deps) -> dict:
    study = _study(study_id, deps)
    artifacts = study.pop("artifacts", None) or {}
    study["artifacts"] = {
        name: deps.s3.generate_presigned_url("get_object", Params={"Bucket": deps.settings.study_bucket, "Key": key},
                                             ExpiresIn=deps.settings.presign_expiry_s)
        for name, key in artifacts.items() if name in ARTIFACTS}
    study["feedback"] = [{k: f[k] for k in ("kind", "created_at", "s3_key")} for f in deps.store.feedback(study_id)]
    return study


def list_studies(limit: int, cursor: str | None, deps: Deps) -> dict:
    start = _decode_cursor(cursor) if cursor else None
    items, last = deps.store.list_recent(limit=limit, cursor=start)
    return {"studies": items,
            "next_cursor": _encode_cursor(last) if last else None}


def save_feedback(study_id: str, kind: Literal["correction", "accept"], body: dict | None, deps: Deps) -> dict:
    study = _study(study_id, deps)
    if study["status"] not in (SUCCEEDED, REVIEWED):
        raise ApiError(409, "NOT_READY", f"study is {study['status']}; feedback needs a finished study")
    height, width = study["image_size"]
    if kind == "correction":
        discs = [d.model_dump() for d in _parse(body, Corrections).discs]
        key = keys.corrected_key(study_id)
    else:  # accept the model's discs as they are (levels outside the YOLO classes are left out)
        discs = [{"box": d["box"], "level": d["level"], "herniated": d["herniated"]}
                 for d in study.get("discs") or [] if d["level"] in yolo.LEVELS]
        key = keys.initial_key(study_id)
    for d in discs:
        x1, y1, x2, y2 = d["box"]
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise ApiError(400, "BOX_OUTSIDE_IMAGE", f"box {d['box']} is outside the {width}x{height} key slice")
    text = yolo.to_lines([yolo.Box(d["level"], d["herniated"], *d["box"]) for d in discs], width, height)
    deps.s3.put_object(Bucket=deps.settings.study_bucket, Key=key, Body=text.encode(), ContentType="text/plain")
    saved_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    deps.store.add_feedback(study_id, kind, key, discs, study.get("model_version"))
    try:
        deps.store.transition(study_id, REVIEWED, reviewed_discs=discs, review={"kind": kind, "at": saved_at, "s3_key": key})
    except TransitionError as exc:
        raise ApiError(409, "NOT_READY", str(exc)) from None
    deps.events.put_events(Entries=[{
        "Source": "discscope.api", "DetailType": "FeedbackSaved", "EventBusName": deps.settings.event_bus,
        "Detail": json.dumps({"study_id": study_id, "kind": kind, "s3_key": key, "discs": len(discs),
                              "model_version": study.get("model_version")})}])
    metrics.add_metric(name="FeedbackSaved", unit=MetricUnit.Count, value=1)
    return {"study_id": study_id, "kind": kind, "s3_key": key, "yolo": text, "discs": discs, "status": REVIEWED}


def current_model(deps: Deps) -> dict:
    model = deps.store.current_model()
    if not model:
        raise ApiError(404, "NO_MODEL", "no model has been deployed yet")
    return model


def _study(study_id: str, deps: Deps) -> dict:
    if not keys.is_study_id(study_id):
        raise ApiError(404, "NOT_FOUND", f"no study {study_id!r}")
    study = deps.store.get(study_id)
    if study is None:
        raise ApiError(404, "NOT_FOUND", f"no study {study_id}")
    return study


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


def _decode_cursor(cursor: str) -> dict:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if isinstance(value, dict):
            return value
    except (ValueError, binascii.Error):
        pass
    raise ApiError(400, "BAD_CURSOR", "the cursor is not one this API returned")


# --- routes ------------------------------------------------------------------------------------


def _json_body() -> Any:
    try:
        return app.current_event.json_body
    except (ValueError, TypeError):
        raise ApiError(400, "BAD_REQUEST", "the request body is not valid JSON") from None


@app.post("/studies")
def _create() -> Response:
    return Response(201, "application/json", json.dumps(create_study(_json_body(), default_deps())))


@app.get("/studies")
def _list() -> dict:
    raw = app.current_event.get_query_string_value("limit", "20") or "20"
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ApiError(400, "BAD_REQUEST", "limit must be an integer from 1 to 100")
    return list_studies(int(raw), app.current_event.get_query_string_value("cursor"), default_deps())


@app.get("/studies/<study_id>")
def _get(study_id: str) -> dict:
    return get_study(study_id, default_deps())


@app.post("/studies/<study_id>/corrections")
def _corrections(study_id: str) -> dict:
    return save_feedback(study_id, "correction", _json_body(), default_deps())


@app.post("/studies/<study_id>/accept")
def _accept(study_id: str) -> dict:
    return save_feedback(study_id, "accept", None, default_deps())


@app.get("/models/current")
def _model() -> dict:
    return current_model(default_deps())


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return Response(exc.status, "application/json", json.dumps({"error_code": exc.code, "message": exc.message}))


@app.not_found
def _not_found(exc: NotFoundError) -> Response:
    return Response(404, "application/json", json.dumps({"error_code": "NOT_FOUND", "message": "no such route"}))


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error")
    return Response(500, "application/json", json.dumps({"error_code": "INTERNAL_ERROR", "message": "internal error"}))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: Any) -> dict:
    return app.resolve(event, context)
