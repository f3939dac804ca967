"""Turning an endpoint request into a volume, and a result into a response (container-agnostic).

A request `{"s3_uri", "output_uri"}` gets its pictures and mask written under `output_uri` and
answered with their keys: the response stays a few KB whatever the study's size. Without
`output_uri` (raw bytes, local tools) they are returned inline as base64, refused when that would
pass SageMaker's real-time response limit.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from urllib.parse import urlparse

from . import errors as E
from .errors import InputError
from .io import DEFAULT_LIMITS, Limits, Volume, read_study_bytes

JSON = "application/json"
# SageMaker real-time endpoints: the response to InvokeEndpoint may be at most 6 MB, and the
# container must answer within 60 s (bench/endpoint_limits.py measures the largest study against both).
RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024
INVOCATION_TIMEOUT_S = 60
# response field (base64) -> (file name under the output prefix, content type)
ARTIFACTS = {
    "preview_png": ("preview.png", "image/png"), "mask_png": ("mask.png", "image/png"),
    "overlay_png": ("overlay.png", "image/png"), "mask_mha": ("mask.mha", "application/octet-stream"),
    "slices_jpg": ("slices.jpg", "image/jpeg"), "slices_mask_png": ("slices_mask.png", "image/png"),
}
# Content types that name a format the bytes alone cannot tell apart (gzip is gzip).
_NAME_HINTS = {
    "application/x-nifti": "study.nii", "application/x-nifti-gz": "study.nii.gz",
    "application/gzip": "study.nii.gz", "application/zip": "study.zip",
    "image/png": "study.png", "image/jpeg": "study.jpg",
}


def filename_from_attributes(custom_attributes: str | None) -> str | None:
    """`filename=NAME` in SageMaker's X-Amzn-SageMaker-Custom-Attributes header."""
    for part in (custom_attributes or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "filename" and value:
            return value
    return None


def decode_request(body: bytes, content_type: str | None, custom_attributes: str | None = None,
                   s3_client=None, limits: Limits = DEFAULT_LIMITS) -> Volume:
    ctype = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if ctype == JSON:
        try:
            request = json.loads(body or b"{}")
        except (ValueError, RecursionError):  # malformed, not UTF-8, or nested past the parser's depth
            raise InputError("the JSON request body is malformed", "BAD_REQUEST")
        uri = request.get("s3_uri") if isinstance(request, dict) else None
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise InputError('a JSON request needs {"s3_uri": "s3://bucket/key"}', "BAD_REQUEST")
        data, name = fetch_s3(uri, s3_client, limits)
        return read_study_bytes(data, name, limits)
    name = filename_from_attributes(custom_attributes) or _NAME_HINTS.get(ctype, "study")
    return read_study_bytes(body, name, limits)


@dataclass(frozen=True)
class Output:
    bucket: str
    prefix: str  # ends with "/"


def output_location(body: bytes, content_type: str | None) -> Output | None:
    """Where a JSON request asks for its artifacts (`output_uri`), or None for inline base64."""
    if (content_type or "").split(";")[0].strip().lower() != JSON:
        return None
    try:
        uri = json.loads(body or b"{}").get("output_uri")
    except (ValueError, AttributeError, RecursionError):
        return None  # decode_request reports the malformed body
    if uri is None:
        return None
    parsed = urlparse(uri) if isinstance(uri, str) else None
    if not parsed or parsed.scheme != "s3" or not parsed.netloc or not uri.endswith("/") or ".." in parsed.path:
        raise InputError('"output_uri" must be an s3://bucket/prefix/ URI ending with "/"', "BAD_REQUEST")
    return Output(parsed.netloc, parsed.path.lstrip("/"))


def deliver(result: dict, output: Output | None, s3_client=None) -> dict:
    """The response: artifacts written under `output` and replaced by `artifacts: {name: key}`, or
    kept inline when no output was asked for (refused past RESPONSE_LIMIT_BYTES)."""
    if output is None:
        size = len(json.dumps(result))
        if size > RESPONSE_LIMIT_BYTES:
            raise InputError(f"the inline response would be {size} bytes, over the endpoint's "
                             f"{RESPONSE_LIMIT_BYTES}-byte limit: send {{\"s3_uri\", \"output_uri\"}} instead",
                             "RESPONSE_TOO_LARGE")
        return result
    import boto3

    client = s3_client or boto3.client("s3")
    body, written = dict(result), {}
    for field, (name, content_type) in ARTIFACTS.items():
        data = body.pop(field, None)
        if data:
            key = f"{output.prefix}{name}"
            client.put_object(Bucket=output.bucket, Key=key, Body=base64.b64decode(data), ContentType=content_type)
            written[name] = key
    return body | {"artifacts": written}


def fetch_s3(uri: str, s3_client=None, limits: Limits = DEFAULT_LIMITS) -> tuple[bytes, str]:
    import boto3
    from botocore.exceptions import ClientError

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    client = s3_client or boto3.client("s3")
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] > limits.max_bytes:
            raise InputError(f"{key} is {head['ContentLength']} bytes; the limit is {limits.max_bytes}", E.FILE_TOO_LARGE)
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
            raise InputError(f"{uri} does not exist", "NOT_FOUND")
        raise
    return data, key.rsplit("/", 1)[-1]
