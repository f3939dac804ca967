"""Turning an endpoint request into a volume, and a result into a response (container-agnostic)."""

from __future__ import annotations

import json
from urllib.parse import urlparse

from . import errors as E
from .errors import InputError
from .io import DEFAULT_LIMITS, Limits, Volume, read_study_bytes

JSON = "application/json"
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
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError("the JSON request body is malformed", "BAD_REQUEST")
        uri = request.get("s3_uri") if isinstance(request, dict) else None
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise InputError('a JSON request needs {"s3_uri": "s3://bucket/key"}', "BAD_REQUEST")
        data, name = fetch_s3(uri, s3_client, limits)
        return read_study_bytes(data, name, limits)
    name = filename_from_attributes(custom_attributes) or _NAME_HINTS.get(ctype, "study")
    return read_study_bytes(body, name, limits)


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
