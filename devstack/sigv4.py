"""AWS Signature Version 4 and S3 POST policies, checked the way AWS checks them (moto checks neither).

Three ways a request may be authenticated: an `Authorization` header, a presigned URL's query
parameters, or an S3 browser-upload form (policy + signature). Each rebuilds what the client signed
from the request as received and compares signatures; a POST policy's conditions are then checked
against the form fields and the file, and every field must be covered by a condition.
Reference: AWS SigV4 (`sigv4-create-canonical-request`), S3 `sigv4-HTTPPOSTConstructPolicy`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)  # S3's; API Gateway allows 5
MAX_PRESIGN_EXPIRY = 7 * 24 * 3600
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class Denied(Exception):
    """Why a request is refused, in S3's words (status, error code, message)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Request:
    method: str
    raw_path: str  # as sent: percent-encoded
    raw_query: str
    headers: dict[str, list[str]]  # lower-case names, values in the order received
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None

    @property
    def query(self) -> list[tuple[str, str]]:
        pairs = []
        for part in self.raw_query.split("&") if self.raw_query else []:
            key, _, value = part.partition("=")
            pairs.append((unquote(key), unquote(value)))
        return pairs

    def query_value(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str


@dataclass
class Verified:
    kind: str  # "header" | "presigned" | "post-form"
    service: str
    form: dict[str, str] = field(default_factory=dict)  # post-form: the fields, lower-case names


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _signature(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _timestamp(value: str | None) -> datetime:
    try:
        return datetime.strptime(value or "", "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise Denied(403, "AccessDenied", "the request has no valid X-Amz-Date") from None


def _scope(credential: str, creds: Credentials, timestamp: str) -> str:
    """The service a credential scope names, once its key, date and region are checked."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise Denied(400, "AuthorizationHeaderMalformed", "the credential scope is malformed")
    access_key, date, region, service, _ = parts
    if not hmac.compare_digest(access_key, creds.access_key):
        raise Denied(403, "InvalidAccessKeyId", "the access key does not exist in our records")
    if date != timestamp[:8]:
        raise Denied(403, "SignatureDoesNotMatch", "the credential date is not the request's date")
    if region != creds.region:
        raise Denied(400, "AuthorizationHeaderMalformed", f"the region {region!r} is wrong; expecting {creds.region!r}")
    return service


def canonical_uri(raw_path: str, service: str) -> str:
    path = raw_path or "/"
    if service == "s3":  # S3: each segment URI-encoded once, no normalisation
        return quote(unquote(path), safe="/~")
    segments = []  # other services: dot segments removed, then encoded a second time
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    normalised = "/" + "/".join(segments) + ("/" if path.endswith("/") and segments else "")
    return quote(normalised, safe="/~")


def canonical_query(pairs: list[tuple[str, str]], leave_out: str | None = None) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs if k != leave_out)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_headers(req: Request, names: list[str]) -> str:
    lines = []
    for name in names:
        values = req.headers.get(name)
        if values is None:
            raise Denied(403, "SignatureDoesNotMatch", f"the signed header {name!r} is missing")
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "".join(lines)


def _payload_hash(req: Request, service: str, presigned: bool) -> str:
    declared = req.header("x-amz-content-sha256")
    if service == "s3" and presigned:
        return declared or UNSIGNED_PAYLOAD
    if declared is None:
        if service == "s3":
            raise Denied(400, "InvalidRequest", "x-amz-content-sha256 is required")
        return hashlib.sha256(req.body).hexdigest()
    if _HEX64.fullmatch(declared):
        if not hmac.compare_digest(declared, hashlib.sha256(req.body).hexdigest()):
            raise Denied(400, "XAmzContentSHA256Mismatch", "the body does not match x-amz-content-sha256")
        return declared
    if declared == UNSIGNED_PAYLOAD and service == "s3":
        return declared
    raise Denied(400, "InvalidRequest", f"x-amz-content-sha256 {declared[:40]!r} is not supported here")


def _check(req: Request, service: str, creds: Credentials, timestamp: str, signed: list[str], signature: str,
           presigned: bool) -> None:
    if "host" not in signed or signed != sorted(signed):
        raise Denied(403, "SignatureDoesNotMatch", "the host header must be signed, names in order")
    canonical = "\n".join([
        req.method, canonical_uri(req.raw_path, service),
        canonical_query(req.query, "X-Amz-Signature" if presigned else None),
        canonical_headers(req, signed), ";".join(signed), _payload_hash(req, service, presigned)])
    scope = f"{timestamp[:8]}/{creds.region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    expected = _signature(signing_key(creds.secret_key, timestamp[:8], creds.region, service), to_sign)
    if not hmac.compare_digest(expected, signature):
        raise Denied(403, "SignatureDoesNotMatch", "the request signature we calculated does not match the signature "
                                                   "you provided")


def verify_header(req: Request, creds: Credentials, now: datetime, max_skew: timedelta = MAX_SKEW) -> Verified:
    m = _AUTH.fullmatch((req.header("authorization") or "").strip())
    if not m:
        raise Denied(400, "AuthorizationHeaderMalformed", "the Authorization header is not AWS4-HMAC-SHA256")
    credential, signed, signature = m.groups()
    timestamp = req.header("x-amz-date") or ""
    when = _timestamp(timestamp)
    service = _scope(credential, creds, timestamp)
    if abs(now - when) > max_skew:
        raise Denied(403, "RequestTimeTooSkewed", "the difference between the request time and the current time is "
                                                  "too large")
    _check(req, service, creds, timestamp, signed.split(";"), signature, presigned=False)
    return Verified("header", service)


def verify_presigned(req: Request, creds: Credentials, now: datetime) -> Verified:
    q = dict(req.query)
    if q.get("X-Amz-Algorithm") != ALGORITHM:
        raise Denied(400, "AuthorizationQueryParametersError", "X-Amz-Algorithm must be AWS4-HMAC-SHA256")
    timestamp = q.get("X-Amz-Date", "")
    when = _timestamp(timestamp)
    service = _scope(q.get("X-Amz-Credential", ""), creds, timestamp)
    try:
        expires = int(q.get("X-Amz-Expires", ""))
    except ValueError:
        raise Denied(400, "AuthorizationQueryParametersError", "X-Amz-Expires must be a number") from None
    if not 0 < expires <= MAX_PRESIGN_EXPIRY:
        raise Denied(400, "AuthorizationQueryParametersError", "X-Amz-Expires must be 1 to 604800 seconds")
    if now > when + timedelta(seconds=expires):
        raise Denied(403, "AccessDenied", "Request has expired")
    if when - now > MAX_SKEW:
        raise Denied(403, "AccessDenied", "Request is not yet valid")
    _check(req, service, creds, timestamp, q.get("X-Amz-SignedHeaders", "").split(";"), q.get("X-Amz-Signature", ""),
           presigned=True)
    return Verified("presigned", service)


# --- S3 POST (browser upload) ------------------------------------------------------------------


@dataclass
class Form:
    fields: list[tuple[str, str]]  # in order, before the file
    filename: str
    file_size: int


def parse_form(body: bytes, content_type: str) -> Form:
    """multipart/form-data as S3 reads it: fields up to the file; what follows the file is ignored."""
    m = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not content_type.lower().startswith("multipart/form-data") or not m:
        raise Denied(400, "InvalidArgument", "POST requires multipart/form-data")
    delimiter = b"--" + m.group(1).encode()
    fields: list[tuple[str, str]] = []
    pos = body.find(delimiter)
    while pos >= 0:
        start = pos + len(delimiter)
        if body[start : start + 2] == b"--":
            break
        head_end = body.find(b"\r\n\r\n", start)
        nxt = body.find(b"\r\n" + delimiter, head_end + 4) if head_end >= 0 else -1
        if head_end < 0 or nxt < 0:
            raise Denied(400, "MalformedPOSTRequest", "the body of your POST request is not well-formed "
                                                      "multipart/form-data")
        head = body[start:head_end].decode("utf-8", "replace")
        disposition = re.search(r"content-disposition:[^\r\n]*", head, re.IGNORECASE)
        name = re.search(r'\bname="([^"]*)"', disposition.group(0)) if disposition else None
        if not name:
            raise Denied(400, "MalformedPOSTRequest", "a form part has no name")
        if name.group(1).lower() == "file":
            filename = re.search(r'\bfilename="([^"]*)"', disposition.group(0))
            return Form(fields, filename.group(1) if filename else "", nxt - (head_end + 4))
        fields.append((name.group(1), body[head_end + 4 : nxt].decode("utf-8", "replace")))
        pos = nxt + 2
    raise Denied(400, "InvalidArgument", "POST requires exactly one file upload per request")


def verify_post(req: Request, bucket: str, creds: Credentials, now: datetime) -> Verified:
    form = parse_form(req.body, req.header("content-type") or "")
    values: dict[str, str] = {}
    for name, value in form.fields:
        if name.lower() in values:  # which one would the store use? (e.g. two `key` fields)
            raise Denied(400, "InvalidArgument", f"the form field {name!r} appears twice")
        values[name.lower()] = value
    for required in ("policy", "x-amz-signature", "x-amz-credential", "x-amz-algorithm", "x-amz-date", "key"):
        if required not in values:
            raise Denied(400, "InvalidArgument", f"Bucket POST must contain a field named '{required}'")
    if values["x-amz-algorithm"] != ALGORITHM:
        raise Denied(400, "InvalidArgument", "x-amz-algorithm must be AWS4-HMAC-SHA256")
    timestamp = values["x-amz-date"]
    _timestamp(timestamp)
    service = _scope(values["x-amz-credential"], creds, timestamp)
    expected = _signature(signing_key(creds.secret_key, timestamp[:8], creds.region, service), values["policy"])
    if service != "s3" or not hmac.compare_digest(expected, values["x-amz-signature"]):
        raise Denied(403, "SignatureDoesNotMatch", "the request signature we calculated does not match the signature "
                                                   "you provided")
    try:
        policy = json.loads(base64.b64decode(values["policy"], validate=True))
        expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
        conditions = policy["conditions"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Denied(400, "InvalidPolicyDocument", "the policy is not valid JSON with expiration and conditions") \
            from None
    if now >= expiration:
        raise Denied(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    values["key"] = values["key"].replace("${filename}", form.filename)
    values["bucket"] = bucket
    covered = check_conditions(conditions, values, form.file_size)
    extra = sorted(n for n in values if n not in covered | {"policy", "x-amz-signature", "bucket"}
                   and not n.startswith("x-ignore-"))
    if extra:
        raise Denied(403, "AccessDenied", f"Invalid according to Policy: Extra input fields: {', '.join(extra)}")
    return Verified("post-form", "s3", values)


def check_conditions(conditions: list, values: dict[str, str], file_size: int) -> set[str]:
    """The field names the conditions cover; Denied at the first one that fails."""
    covered: set[str] = set()

    def failed(condition) -> Denied:
        return Denied(403, "AccessDenied", f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}")

    for condition in conditions:
        if isinstance(condition, dict) and len(condition) == 1:
            (name, expected), = condition.items()
            name = name.lower()
            covered.add(name)
            if values.get(name) != expected:
                raise failed(condition)
        elif isinstance(condition, list) and len(condition) == 3 and condition[0] == "content-length-range":
            low, high = int(condition[1]), int(condition[2])
            if file_size > high:
                raise Denied(400, "EntityTooLarge", "your proposed upload exceeds the maximum allowed size")
            if file_size < low:
                raise Denied(400, "EntityTooSmall", "your proposed upload is smaller than the minimum allowed size")
        elif isinstance(condition, list) and len(condition) == 3 and condition[0] in ("eq", "starts-with") \
                and isinstance(condition[1], str) and condition[1].startswith("$"):
            name = condition[1][1:].lower()
            covered.add(name)
            value = values.get(name, "")
            ok = value == condition[2] if condition[0] == "eq" else value.startswith(str(condition[2]))
            if not ok:
                raise failed(condition)
        else:
            raise Denied(400, "InvalidPolicyDocument", f"unknown policy condition {json.dumps(condition)[:100]}")
    return covered

