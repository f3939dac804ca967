"""The clinical-system client of the REST API: the same code for the local stack and AWS.

Requests are signed with SigV4 (service `execute-api`) when the client has AWS credentials: that is
how a clinical system authenticates to the Clinical API (IAM authorization), with its role's or
user's credentials, and to the local stack with the stack's local client credentials. Without
credentials it sends the local page key (`x-api-key`), which the local stack accepts as a
signed-in person.
"""

from __future__ import annotations

import json
import mimetypes
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

TERMINAL = ("SUCCEEDED", "FAILED", "REVIEWED")
RETRY_STATUSES = (502, 503, 504)  # the gateway or the service is restarting or overloaded


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def content_type_for(name: str) -> str:
    lower = name.lower()
    if lower.endswith((".nii.gz", ".gz")):
        return "application/gzip"
    if lower.endswith(".zip"):
        return "application/zip"
    guessed = mimetypes.guess_type(lower)[0]
    return guessed if guessed in ("image/png", "image/jpeg") else "application/octet-stream"


def multipart(fields: dict[str, str], filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    """multipart/form-data for S3 presigned POST: the policy fields first, the file last."""
    boundary = uuid.uuid4().hex
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    safe = filename.replace('"', "_").encode("ascii", "replace").decode()
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Unreachable(ConnectionError):
    """The API (or the upload URL) did not answer, after retries."""


def _refused(exc: BaseException) -> bool:
    """Nothing was sent: safe to retry any request."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, ConnectionRefusedError)


def region_of(api_url: str) -> str | None:
    """The region in an execute-api URL (https://ID.execute-api.REGION.amazonaws.com/STAGE)."""
    match = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", api_url)
    return match.group(1) if match else None


@dataclass
class Client:
    api_url: str
    api_key: str | None = None
    timeout: float = 60.0
    credentials: Any = None  # botocore Credentials: requests are SigV4-signed
    region: str = "us-east-1"
    retries: int = 4  # transient failures (refused or reset connections, timeouts, 502/503/504)
    backoff: float = 0.5  # seconds before the first retry, doubling

    @classmethod
    def for_aws(cls, api_url: str, timeout: float = 60.0) -> "Client":
        """Signed with this environment's AWS credentials (profile, role, variables)."""
        import boto3

        session = boto3.Session()
        credentials = session.get_credentials()
        if credentials is None:
            raise ApiError(401, "NO_CREDENTIALS", "no AWS credentials found (set a profile, role or AWS_* variables)")
        return cls(api_url, timeout=timeout, credentials=credentials.get_frozen_credentials(),
                   region=region_of(api_url) or session.region_name or "us-east-1")

    def _headers(self, method: str, url: str, data: bytes | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.credentials is None:
            if self.api_key:
                headers["x-api-key"] = self.api_key
            return headers
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=data or b"", headers=headers)
        SigV4Auth(self.credentials, "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())

    def _send(self, build: Callable[[], urllib.request.Request], timeout: float, idempotent: bool) -> bytes:
        """The response body; retries what may pass (each try built anew: a fresh signature),
        raises HTTPError for an answer, Unreachable when nothing answers."""
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            req = build()
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    return resp.read()
            except urllib.error.HTTPError as err:
                if last or err.code not in RETRY_STATUSES or not idempotent:
                    raise
                err.read()
            except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as exc:
                if last or not (idempotent or _refused(exc)):
                    raise Unreachable(f"{req.full_url.split('?')[0]}: {getattr(exc, 'reason', exc)}") from None
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        url = self.api_url.rstrip("/") + path

        def build() -> urllib.request.Request:
            return urllib.request.Request(url, data=data, headers=self._headers(method, url, data), method=method)

        try:
            return json.loads(self._send(build, self.timeout, idempotent=method == "GET") or b"{}")
        except urllib.error.HTTPError as err:
            try:
                detail = json.loads(err.read() or b"{}")
            except ValueError:
                detail = {}
            raise ApiError(err.code, detail.get("error_code", "HTTP_ERROR"), detail.get("message", err.reason)) from None

    def create_study(self, filename: str, size: int, content_type: str) -> dict:
        return self._request("POST", "/studies", {"filename": filename, "content_type": content_type, "size": size})

    def upload(self, upload: dict, filename: str, data: bytes, content_type: str) -> None:
        body, ctype = multipart(upload["fields"], filename, data, content_type)

        def build() -> urllib.request.Request:
            return urllib.request.Request(upload["url"], data=body, headers={"Content-Type": ctype}, method="POST")

        try:  # the same form again writes the same object: safe to retry
            self._send(build, self.timeout * 5, idempotent=True)
        except urllib.error.HTTPError as err:
            raise ApiError(err.code, "UPLOAD_FAILED", err.read()[:500].decode(errors="replace")) from None

    def study(self, study_id: str) -> dict:
        return self._request("GET", f"/studies/{study_id}")

    def studies(self, limit: int = 20, cursor: str | None = None, **filters: str) -> dict:
        """The worklist (unreviewed first); filters: status, reviewer, herniated, needs_review,
        since, until, sort (date | needs_review | probability)."""
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {}) | filters
        return self._request("GET", f"/studies?{urllib.parse.urlencode(params)}")

    def correct(self, study_id: str, discs: list[dict], base_version: int = 0) -> dict:
        """Save a correction on top of review version `base_version` (0: the unreviewed study)."""
        return self._request("POST", f"/studies/{study_id}/corrections", {"discs": discs, "base_version": base_version})

    def accept(self, study_id: str, base_version: int = 0) -> dict:
        return self._request("POST", f"/studies/{study_id}/accept", {"base_version": base_version})

    def current_model(self) -> dict:
        return self._request("GET", "/models/current")

    def wait(self, study_id: str, timeout: float = 600, poll: float = 0.5, on_status=None) -> dict:
        deadline = time.time() + timeout
        while True:
            study = self.study(study_id)
            if on_status:
                on_status(study)
            if study["status"] in TERMINAL:
                return study
            if time.time() > deadline:
                raise TimeoutError(f"study {study_id} still {study['status']} after {timeout:.0f} s")
            time.sleep(poll)

    def analyze(self, path: str | Path, timeout: float = 600, on_status=None) -> dict:
        """Create a study, upload the file by presigned POST, wait for the result."""
        path = Path(path)
        data = path.read_bytes()
        ctype = content_type_for(path.name)
        created = self.create_study(path.name, len(data), ctype)
        self.upload(created["upload"], path.name, data, ctype)
        return self.wait(created["study_id"], timeout, on_status=on_status)
