"""Who is calling: the principal API Gateway authenticated, read from the proxy event's requestContext.

Page users come through the Cognito user-pool authorizer (`requestContext.authorizer.claims`, every
value a string); clinical systems through an API key (`requestContext.identity.apiKeyId`), a
machine token (Cognito client credentials: claims with `client_id` and no user name) or IAM
(`requestContext.identity.userArn`). The local gateway presents its named local user in the Cognito
shape, so the same code reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    id: str                  # stable principal: Cognito username / M2M client id / IAM ARN / local user name
    kind: str                # "user" | "client"
    groups: tuple[str, ...]  # Cognito groups (page users); scopes/none for clients


def caller_from_event(event: dict) -> Caller:
    context = (event or {}).get("requestContext") or {}
    claims = (context.get("authorizer") or {}).get("claims") or {}
    username = claims.get("cognito:username") or claims.get("username")
    if username and claims.get("token_use", "id") in ("id", "access"):
        return Caller(str(username), "user", _list_claim(claims.get("cognito:groups")))
    if claims.get("client_id"):  # client-credentials access token: a machine, its scopes
        return Caller(str(claims["client_id"]), "client", _list_claim(claims.get("scope"), sep=" "))
    identity = context.get("identity") or {}
    if identity.get("userArn"):
        return Caller(str(identity["userArn"]), "client", ())
    if identity.get("apiKeyId"):
        return Caller(f"api-key:{identity['apiKeyId']}", "client", ())
    return Caller(ANONYMOUS, "client", ())


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
