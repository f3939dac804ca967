"""Shared fixtures: small phantom cases and the shipped baseline model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real-ivd"
BASELINE = Path(os.environ.get("DISCSCOPE_MODEL", REPO / "models" / "baseline"))

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """Six phantom cases (fixed seed) in the dataset layout."""
    from discscope.phantom import generate_dataset

    out = tmp_path_factory.mktemp("phantoms")
    generate_dataset(out, 6, seed=11)
    return out


@pytest.fixture(scope="session")
def baseline_model() -> Path:
    if not (BASELINE / "model.pt").is_file():
        pytest.fail(f"the shipped baseline model is missing: {BASELINE}")
    return BASELINE


@pytest.fixture(scope="session")
def predictor(baseline_model):
    from discscope.predictor import Predictor

    return Predictor(baseline_model)


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not (REAL_DATA / "ivd20.mha").is_file():
        pytest.skip("shared/data/real-ivd is not beside this checkout")
    return REAL_DATA


@pytest.fixture(scope="module")
def stack(baseline_model, tmp_path_factory):
    """The whole local stack, as `make up` runs it, one per test module that asks for it."""
    from devstack.stack import LocalStack

    with LocalStack(baseline_model, state_dir=tmp_path_factory.mktemp("state")) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack):
    """The clinical client of that stack's REST API."""
    from discscope.client import Client

    return Client(stack.gateway.api_url, stack.api_key)


@pytest.fixture
def study_store():
    """The study table (with its list index) in moto, wrapped in the Lambdas' StudyStore."""
    import boto3
    from moto import mock_aws

    from lambdas.shared import store

    with mock_aws():
        ddb = boto3.resource("dynamodb", region_name="us-east-1")
        table = ddb.create_table(
            TableName="studies", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk")],
            GlobalSecondaryIndexes=[{"IndexName": store.LIST_INDEX, "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                                                   {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]}])
        yield store.StudyStore(table)
