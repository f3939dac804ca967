"""Who is calling: the principal API Gateway authenticated, read from the proxy event's requestContext.

Two kinds of callers reach the API Lambda, each through its own REST API:
- people on the annotation page, through the Cognito user-pool authorizer (Web API): their
  username and groups are in `requestContext.authorizer.claims` (every value a string);
- clinical systems, through IAM authorization (Clinical API, SigV4-signed requests): their IAM
  principal is in `requestContext.identity.userArn`.

The local gateway presents the same shapes (devstack/gateway.py, devstack/local_auth.py), so this
code runs unchanged there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

USER, CLIENT = "user", "client"
_ASSUMED_ROLE = re.compile(r"^arn:(aws[\w-]*):sts::(\d{12}):assumed-role/([^/]+)/[^/]+$")


class Unauthenticated(Exception):
    """The event carries no principal that API Gateway authenticated (a wiring error, never a client's)."""


@dataclass(frozen=True)
class Caller:
    id: str                  # stable principal: Cognito username / IAM ARN (the role, not the session) / local user name
    kind: str                # "user" | "client"
    groups: tuple[str, ...]  # Cognito groups (page users); none for clients


def caller_from_event(event: dict) -> Caller:
    context = (event or {}).get("requestContext") or {}
    claims = (context.get("authorizer") or {}).get("claims") or {}
    username = claims.get("cognito:username") or claims.get("username")
    if username and claims.get("token_use", "id") in ("id", "access"):
        return Caller(str(username), USER, _list_claim(claims.get("cognito:groups")))
    identity = context.get("identity") or {}
    if identity.get("userArn"):
        return Caller(principal_arn(str(identity["userArn"])), CLIENT, ())
    raise Unauthenticated("no authenticated principal in the request context")


def principal_arn(arn: str) -> str:
    """The role behind an assumed-role session ARN (sessions change, the role does not)."""
    match = _ASSUMED_ROLE.match(arn)
    if match:
        partition, account, role = match.groups()
        return f"arn:{partition}:iam::{account}:role/{role}"
    return arn


def display_name(event: dict) -> str:
    """What a person recognises the caller by (a user's email when the token carries it)."""
    claims = (((event or {}).get("requestContext") or {}).get("authorizer") or {}).get("claims") or {}
    return str(claims.get("email") or claims.get("name") or caller_from_event(event).id)


def _list_claim(value, sep: str = ",") -> tuple[str, ...]:
    """API Gateway hands list claims over as strings: "a,b", "[a b]" (or a real list)."""
    if not value:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text, sep = text[1:-1], " "
    return tuple(part.strip() for part in text.replace(",", sep).split(sep) if part.strip())
