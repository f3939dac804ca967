"""The endpoint's answer: artifacts written to S3 under the requested prefix (keys returned), or
inline base64 refused past SageMaker's real-time response limit."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from moto import mock_aws

from discscope.errors import InputError
from discscope.serving import ARTIFACTS, RESPONSE_LIMIT_BYTES, Output, deliver, output_location

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def _result(size: int = 64) -> dict:
    blob = base64.b64encode(b"\1" * size).decode()
    return {"model_version": "v", "discs": [{"level": "L5-S1"}], **{field: blob for field in ARTIFACTS}}


@pytest.mark.parametrize("body, expected", [
    (b'{"s3_uri": "s3://b/uploads/x/a.mha", "output_uri": "s3://b/results/x/"}', Output("b", "results/x/")),
    (b'{"s3_uri": "s3://b/uploads/x/a.mha"}', None),
])
def test_output_location(body, expected):
    assert output_location(body, "application/json") == expected
    assert output_location(body, "application/octet-stream") is None  # raw bytes never name an output


@pytest.mark.parametrize("uri", ["s3://b/results/x", "https://b/results/x/", "s3:///results/", "s3://b/results/../x/", 5])
def test_bad_output_uri_is_refused(uri):
    with pytest.raises(InputError) as ei:
        output_location(json.dumps({"s3_uri": "s3://b/k", "output_uri": uri}).encode(), "application/json")
    assert ei.value.code == "BAD_REQUEST"


def test_artifacts_go_to_s3_and_the_answer_holds_their_keys():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="studies")
        answer = deliver(_result(), Output("studies", "results/x/"), s3)
        assert set(answer["artifacts"]) == {name for name, _ in ARTIFACTS.values()}
        assert not set(ARTIFACTS) & set(answer)  # no base64 left in the answer
        for name, key in answer["artifacts"].items():
            assert key == f"results/x/{name}"
            obj = s3.get_object(Bucket="studies", Key=key)
            assert obj["Body"].read() == b"\1" * 64
        assert obj["ContentType"] == "image/png"
        assert len(json.dumps(answer)) < 1000


def test_inline_answers_stay_inside_the_response_limit():
    small = _result()
    assert deliver(small, None) is small
    with pytest.raises(InputError) as ei:
        deliver(_result(RESPONSE_LIMIT_BYTES // 4), None)  # six fields of 1/4 the limit each
    assert ei.value.code == "RESPONSE_TOO_LARGE" and "output_uri" in ei.value.message
