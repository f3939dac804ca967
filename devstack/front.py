"""The only door to the local AWS: moto's application behind SigV4 checks and write-through state.

moto runs in this process without a port of its own. Every request to the front must carry a valid
signature from the stack's credentials (a header, a presigned URL, or an S3 POST form whose policy
holds); CORS preflights are answered without one, as S3 does, and moto's own control routes are
not served at all. A write to the study bucket or a persisted table is stored on disk
(devstack.state) before its answer leaves.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from io import BytesIO
from urllib.parse import unquote

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from devstack.sigv4 import Credentials, Denied, Request, Verified, verify_header, verify_post, verify_presigned
from devstack.state import DurableState

log = logging.getLogger("devstack.front")
MAX_BODY_SLACK = 1024 * 1024  # form fields around the largest upload
DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


class FrontRequestHandler(MotoRequestHandler):
    timeout = 60  # a client that stops sending frees its thread


class AwsFront:
    def __init__(self, credentials: Credentials, max_upload_bytes: int, host: str = "127.0.0.1", port: int = 0):
        self.credentials, self.max_body = credentials, max_upload_bytes + MAX_BODY_SLACK
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.state: DurableState | None = None
        self.persisting = True
        self.server = make_server(host, port, self.app, threaded=True, request_handler=FrontRequestHandler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "AwsFront":
        self._thread = threading.Thread(target=self.server.serve_forever, name="aws-front", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- WSGI -------------------------------------------------------------------------------------
    def app(self, environ, start_response):
        try:
            req = self._request(environ)
            verified = self.authenticate(req)
        except Denied as exc:
            return self._error(environ, start_response, exc)
        environ["wsgi.input"] = BytesIO(req.body)
        environ["CONTENT_LENGTH"] = str(len(req.body))
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.moto(environ, capture))
        if verified and self.persisting and self.state and captured["status"][:1] == "2":
            self._persist(req, verified)
        start_response(captured["status"], captured["headers"])
        return [body]

    def _request(self, environ) -> Request:
        headers: dict[str, list[str]] = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                headers.setdefault(key[5:].replace("_", "-").lower(), []).append(value)
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = [environ[key]]
        length = environ.get("CONTENT_LENGTH") or "0"
        if not length.isdigit():
            raise Denied(400, "MissingContentLength", "you must provide the Content-Length HTTP header")
        if int(length) > self.max_body:
            raise Denied(400, "EntityTooLarge", "your proposed upload exceeds the maximum allowed size")
        body = environ["wsgi.input"].read(int(length)) if int(length) else b""
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        path, _, query = raw.partition("?")
        return Request(environ["REQUEST_METHOD"], path, query or environ.get("QUERY_STRING", ""), headers, body)

    def authenticate(self, req: Request) -> Verified | None:
        """None for a CORS preflight (answered by moto from the bucket's CORS rules)."""
        if unquote(req.raw_path).startswith("/moto-api"):
            raise Denied(403, "AccessDenied", "Access Denied")
        now = datetime.now(timezone.utc)
        if req.header("authorization"):
            return verify_header(req, self.credentials, now)
        if req.query_value("X-Amz-Signature") is not None:
            return verify_presigned(req, self.credentials, now)
        bucket = _bucket_only(req.raw_path)
        if req.method == "POST" and bucket and (req.header("content-type") or "").lower().startswith("multipart/"):
            return verify_post(req, bucket, self.credentials, now)
        if req.method == "OPTIONS" and req.header("origin") and req.header("access-control-request-method"):
            return None
        raise Denied(403, "AccessDenied", "Access Denied")

    def _error(self, environ, start_response, exc: Denied):
        if environ.get("HTTP_X_AMZ_TARGET") or "json" in environ.get("CONTENT_TYPE", ""):
            body = json.dumps({"__type": exc.code, "message": exc.message}).encode()
            ctype = "application/x-amz-json-1.0"
        else:
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{exc.code}</Code><Message>'
                    f"{_xml(exc.message)}</Message><RequestId>{uuid.uuid4().hex}</RequestId></Error>").encode()
            ctype = "application/xml"
        start_response(f"{exc.status} {exc.code}", [("Content-Type", ctype), ("Content-Length", str(len(body))),
                                                     ("x-amzn-ErrorType", exc.code)])
        return [body]

    # -- write-through --------------------------------------------------------------------------
    def _persist(self, req: Request, verified: Verified) -> None:
        if verified.service == "s3" and req.method in ("PUT", "POST", "DELETE"):
            for key in self._written_keys(req, verified):
                with self.state.lock("s3", key):
                    self.state.object_written(key)
        elif verified.service == "dynamodb":
            target = (req.header("x-amz-target") or "").rpartition(".")[2]
            if target in DYNAMODB_WRITES:
                for table, key in self._written_items(target, json.loads(req.body or b"{}")):
                    with self.state.lock("ddb", table, json.dumps(key, sort_keys=True)):
                        self.state.item_written(table, key)

    def _written_keys(self, req: Request, verified: Verified) -> list[str]:
        bucket, _, key = unquote(req.raw_path).lstrip("/").partition("/")
        if bucket != self.state.bucket:
            return []
        if verified.kind == "post-form":
            return [verified.form["key"]]
        if key:
            return [key]
        if req.method == "POST" and re.search(r"(^|&)delete(=|&|$)", req.raw_query):
            try:
                return [el.text or "" for el in ET.fromstring(req.body).iter() if el.tag.endswith("Key")]
            except ET.ParseError:
                return []
        return []

    def _written_items(self, target: str, body: dict) -> list[tuple[str, dict]]:
        tables = self.state.tables
        out: list[tuple[str, dict]] = []
        if target in ("PutItem", "UpdateItem", "DeleteItem") and body.get("TableName") in tables:
            table = body["TableName"]
            out.append((table, self.state.key_of(table, body["Item"]) if target == "PutItem" else body["Key"]))
        elif target == "BatchWriteItem":
            for table, requests in (body.get("RequestItems") or {}).items():
                for r in requests if table in tables else []:
                    if "PutRequest" in r:
                        out.append((table, self.state.key_of(table, r["PutRequest"]["Item"])))
                    elif "DeleteRequest" in r:
                        out.append((table, r["DeleteRequest"]["Key"]))
        elif target == "TransactWriteItems":
            for item in body.get("TransactItems") or []:
                for kind, op in item.items():
                    if kind in ("Put", "Update", "Delete") and op.get("TableName") in tables:
                        key = self.state.key_of(op["TableName"], op["Item"]) if kind == "Put" else op["Key"]
                        out.append((op["TableName"], key))
        return out


def _bucket_only(raw_path: str) -> str | None:
    """The bucket of a path-style request to the bucket itself (an S3 POST form goes there)."""
    parts = [p for p in unquote(raw_path).split("/") if p]
    return parts[0] if len(parts) == 1 else None


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
