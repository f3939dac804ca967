"""Local credentials, checked the way API Gateway checks them, turned into the request context it builds.

- A clinical system signs its requests with SigV4 (service `execute-api`), as it does against the
  Clinical API's IAM authorization; here the secret comes from the stack's local credentials and
  the caller appears in `requestContext.identity` (userArn, accessKey, caller) as IAM puts it there.
- The page (and the tests standing in for a person) sends the stack's local page key in
  `x-api-key`; the caller appears in `requestContext.authorizer.claims` as the Web API's Cognito
  authorizer puts a signed-in user there (username, groups).

The Lambda reads only the request context (lambdas/shared/identity.py), so the same code decides
ownership locally and in AWS.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from devstack import sigv4

ACCOUNT = "123456789012"
MAX_SKEW = timedelta(minutes=5)  # API Gateway refuses signatures older or newer than this
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/execute-api/aws4_request,"
                   r"\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$")


API_GATEWAY_WORDS = {
    "SignatureDoesNotMatch": "The request signature we calculated does not match the signature you provided.",
    "RequestTimeTooSkewed": "Signature expired", "AccessDenied": "Signature expired",
}


class Denied(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class LocalClient:
    """A local stand-in for a clinical system's IAM user."""

    name: str
    access_key_id: str
    secret_access_key: str

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:user/{self.name}"

    @property
    def user_id(self) -> str:
        return "AIDA" + self.access_key_id[-16:].upper()


@dataclass(frozen=True)
class LocalUser:
    """A local stand-in for a person signed in with Cognito."""

    username: str
    groups: tuple[str, ...]


def verify_sigv4(method: str, url: str, headers: dict[str, str], body: bytes | None,
                 clients: dict[str, LocalClient], now: datetime | None = None) -> LocalClient:
    """The client whose secret produced this request's signature (API Gateway's IAM check), checked
    by the same SigV4 code as the local AWS front (devstack.sigv4), answered in API Gateway's words."""
    match = _AUTH.match(headers.get("authorization", ""))
    if not match:
        raise Denied(403, "Missing Authentication Token")
    client = clients.get(match["key"])
    if client is None:
        raise Denied(403, "The security token included in the request is invalid.")
    parts = urlsplit(url)
    request = sigv4.Request(method, parts.path, parts.query, {k: [v] for k, v in headers.items()}, body or b"")
    try:
        sigv4.verify_header(request, sigv4.Credentials(client.access_key_id, client.secret_access_key, match["region"]),
                            now or datetime.now(timezone.utc), max_skew=MAX_SKEW)
    except sigv4.Denied as exc:
        raise Denied(403, API_GATEWAY_WORDS.get(exc.code, exc.message)) from None
    return client


def iam_identity(client: LocalClient, source_ip: str, user_agent: str | None) -> dict:
    """requestContext.identity of an IAM-authorized REST API request."""
    return {"accountId": ACCOUNT, "accessKey": client.access_key_id, "caller": client.user_id, "user": client.user_id,
            "userArn": client.arn, "sourceIp": source_ip, "userAgent": user_agent, "cognitoIdentityId": None,
            "cognitoIdentityPoolId": None, "cognitoAuthenticationType": None, "principalOrgId": None}


def cognito_authorizer(user: LocalUser) -> dict:
    """requestContext.authorizer of a Cognito user-pool authorizer (ID token claims, as strings)."""
    return {"claims": {"sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-user/{user.username}")),
                       "cognito:username": user.username, "cognito:groups": ",".join(user.groups),
                       "token_use": "id", "iss": "https://cognito-idp.local/local-pool", "aud": "local-page"}}
