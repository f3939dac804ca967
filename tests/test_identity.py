"""Who calls the API and what they may see: the request context API Gateway builds (IAM for
clinical systems, Cognito for people), the same shapes from the local gateway, and ownership."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devstack.local_auth import Denied, LocalClient, verify_sigv4
from discscope.client import ApiError, Client
from discscope.dataset import find_cases
from lambdas import api
from lambdas.shared import access
from lambdas.shared.identity import CLIENT, USER, Caller, Unauthenticated, caller_from_event, principal_arn


@pytest.mark.parametrize("groups, expected", [
    ("radiology,spine-clinic", ("radiology", "spine-clinic")), ("[spine-clinic radiology]", ("spine-clinic", "radiology")),
    (["b", "a"], ("b", "a")), (None, ()), ("", ()),
])
def test_cognito_users_by_username_and_groups(groups, expected):
    claims = {"sub": "1f0c", "cognito:username": "dr.who", "token_use": "id"} | ({"cognito:groups": groups} if groups is not None else {})
    caller = caller_from_event({"requestContext": {"authorizer": {"claims": claims}, "identity": {"sourceIp": "1.2.3.4"}}})
    assert caller == Caller("dr.who", USER, expected)


def test_clinical_systems_by_iam_principal_stable_across_sessions():
    user = caller_from_event({"requestContext": {"identity": {"userArn": "arn:aws:iam::111122223333:user/pacs"}}})
    assert user == Caller("arn:aws:iam::111122223333:user/pacs", CLIENT, ())
    session = "arn:aws:sts::111122223333:assumed-role/DiscScopeClient/i-0abc"
    assert caller_from_event({"requestContext": {"identity": {"userArn": session}}}).id == \
        "arn:aws:iam::111122223333:role/DiscScopeClient"
    assert principal_arn("arn:aws-us-gov:sts::111122223333:assumed-role/R/s") == "arn:aws-us-gov:iam::111122223333:role/R"
    with pytest.raises(Unauthenticated):
        caller_from_event({"requestContext": {"identity": {"sourceIp": "1.2.3.4", "userArn": None}}})


def test_owners_and_scope():
    client, person = Caller("arn:aws:iam::1:user/pacs", CLIENT, ()), Caller("dr", USER, ("spine", "radiology"))
    assert access.owner_of(client) == "client:arn:aws:iam::1:user/pacs"
    assert access.owner_of(person) == "group:radiology"
    assert access.may_access(person, {"owner": "group:spine"}) and not access.may_access(person, {"owner": "group:ortho"})
    assert not access.may_access(client, {"owner": "group:radiology"}) and not access.may_access(client, {})
    with pytest.raises(api.ApiError) as ei:
        api.create_study({"filename": "a.mha", "size": 1}, None, Caller("new.user", USER, ()))
    assert (ei.value.status, ei.value.code) == (403, "NO_GROUP")


# --- SigV4 as API Gateway checks it ------------------------------------------------------------

LOCAL = LocalClient("pacs", "AKIALOCALTEST0001", "s3cr3t-for-tests")


def _signed(secret: str = LOCAL.secret_access_key, when: datetime | None = None, body: bytes = b'{"a": 1}') -> dict:
    request = AWSRequest(method="POST", url="http://127.0.0.1:8000/api/studies?x=1", data=body,
                         headers={"Content-Type": "application/json"})
    signer = SigV4Auth(Credentials(LOCAL.access_key_id, secret), "execute-api", "us-east-1")
    if when is None:
        signer.add_auth(request)
    else:  # sign at a chosen time
        request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        request.headers["X-Amz-Date"] = request.context["timestamp"]
        request.headers["host"] = "127.0.0.1:8000"
        signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        scope = f"{when:%Y%m%d}/us-east-1/execute-api/aws4_request"
        request.headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={LOCAL.access_key_id}/{scope}, "
                                            f"SignedHeaders={';'.join(signer.headers_to_sign(request).keys())}, Signature={signature}")
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers.setdefault("host", "127.0.0.1:8000")
    return headers


def test_sigv4_signatures_are_checked():
    clients = {LOCAL.access_key_id: LOCAL}
    url, body = "http://127.0.0.1:8000/api/studies?x=1", b'{"a": 1}'
    assert verify_sigv4("POST", url, _signed(), body, clients) == LOCAL
    for headers, sent, why in [(_signed("wrong-secret"), body, "does not match"), (_signed(), b'{"a": 2}', "does not match"),
                               (_signed(when=datetime.now(timezone.utc) - timedelta(minutes=10)), body, "expired"),
                               ({"host": "127.0.0.1:8000"}, body, "Missing Authentication Token")]:
        with pytest.raises(Denied) as ei:
            verify_sigv4("POST", url, headers, sent, clients)
        assert ei.value.status == 403 and why in ei.value.message
    with pytest.raises(Denied, match="invalid"):
        verify_sigv4("POST", url, _signed(), body, {})


# --- the local stack: the same Lambda code path decides ------------------------------------------


@pytest.fixture(scope="module")
def stack(baseline_model, tmp_path_factory):
    from devstack.stack import LocalStack

    with LocalStack(baseline_model, state_dir=tmp_path_factory.mktemp("state")) as s:
        yield s


def test_clinical_system_and_page_users_see_only_their_own_studies(stack, phantom_dir):
    keys = stack.clinical_client
    system = Client(stack.gateway.api_url, credentials=Credentials(keys.access_key_id, keys.secret_access_key))
    person = Client(stack.gateway.api_url, stack.api_key)
    study = system.analyze(find_cases([phantom_dir])[0].image_path, timeout=180)
    assert study["status"] == "SUCCEEDED"
    item = boto3.resource("dynamodb").Table(stack.aws.names.table).get_item(
        Key={"pk": f"STUDY#{study['study_id']}", "sk": "META"})["Item"]
    assert item["owner"] == "client:arn:aws:iam::123456789012:user/local-clinical-system"
    mine = person.create_study("mine.mha", 10, "application/octet-stream")["study_id"]

    assert [s["study_id"] for s in system.studies()["studies"]] == [study["study_id"]]
    assert mine in [s["study_id"] for s in person.studies()["studies"]]
    assert study["study_id"] not in [s["study_id"] for s in person.studies()["studies"]]
    for call in (lambda: person.study(study["study_id"]), lambda: person.accept(study["study_id"]),
                 lambda: system.study(mine)):
        with pytest.raises(ApiError) as ei:
            call()
        assert (ei.value.status, ei.value.code) == (404, "NOT_FOUND")
    assert system.accept(study["study_id"])["status"] == "REVIEWED"  # its own study


def test_requests_without_valid_credentials_are_refused_before_the_lambda(stack):
    forged = Client(stack.gateway.api_url, credentials=Credentials(stack.clinical_client.access_key_id, "forged"))
    with pytest.raises(ApiError) as ei:
        forged.studies()
    assert ei.value.status == 403
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(urllib.request.Request(stack.gateway.api_url + "/studies"))
    assert ei.value.code == 403


def test_discscope_analyze_signs_with_the_local_client_keys(stack, phantom_dir, capsys):
    from discscope.cli import main

    path = find_cases([phantom_dir])[1].image_path
    assert main(["analyze", str(path), "--api", stack.gateway.api_url, "--state", str(stack.state_dir), "--json"]) == 0
    study = json.loads(capsys.readouterr().out)
    assert study["status"] == "SUCCEEDED" and study["discs"]
    assert main(["analyze", str(path), "--api", stack.gateway.api_url, "--state", str(stack.state_dir / "nowhere")]) == 2
