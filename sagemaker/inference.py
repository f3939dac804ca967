"""SageMaker PyTorch serving entry points (model_fn / input_fn / predict_fn / output_fn).

The artifact's code/ folder holds this file, the discscope package and its dependencies in lib/
(vendored.py puts them on sys.path); there is no requirements.txt, so the container installs nothing.
Requests: JSON {"s3_uri": ..., "output_uri": ...} (artifacts written to S3, keys returned) or raw
study bytes with their content type (artifacts inline).
"""

from __future__ import annotations

import vendored  # noqa: F401  (first: code/lib on sys.path)

import json

from discscope.errors import DiscScopeError
from discscope.predictor import Predictor
from discscope.serving import JSON, decode_request, deliver, output_location

try:  # the SageMaker inference toolkit turns this into an HTTP status instead of a bare 500
    from sagemaker_inference.errors import GenericInferenceToolkitError as _ToolkitError
except ImportError:  # outside the container (tests, the local server)
    _ToolkitError = None


def _raise(exc: DiscScopeError):
    if _ToolkitError is not None:
        raise _ToolkitError(exc.http_status, json.dumps(exc.to_dict())) from exc
    raise exc


def model_fn(model_dir: str) -> Predictor:
    return Predictor(model_dir)


def input_fn(request_body: bytes, request_content_type: str):
    try:
        return decode_request(request_body, request_content_type), output_location(request_body, request_content_type)
    except DiscScopeError as exc:
        _raise(exc)


def predict_fn(request, predictor: Predictor) -> dict:
    volume, output = request
    try:
        return deliver(predictor.result(volume), output)
    except DiscScopeError as exc:
        _raise(exc)


def output_fn(prediction: dict, accept: str = JSON):
    return json.dumps(prediction), JSON
