"""An API Gateway-shaped HTTP front: `/api/*` becomes REST proxy events for the `api` Lambda (invoked
through the local Lambda service), authenticated as API Gateway would (devstack.local_auth: a
SigV4 signature of a local clinical system, or the page's local key standing in for a Cognito
login) and carrying the request context API Gateway would build; everything else is the static
web page from `web/` plus a generated `config.js` telling the page where the API is.

The page acts as the stack's named local user (`discscope up --user NAME`), so reviews record who
saved them, exactly as they record a Cognito user in AWS.
"""

from __future__ import annotations

import json
import mimetypes
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
from botocore.config import Config

from devstack.local_auth import (ACCOUNT, Denied, LocalClient, LocalUser, cognito_authorizer, iam_identity,
                                 verify_sigv4)

API_PREFIX = "/api"
LOCAL_GROUP = "local-clinicians"  # the local users' Cognito group (which owns what the page creates)


def page_user(name: str) -> LocalUser:
    """A person signed in to the local page: everyone is in the one local group, so all see the same studies."""
    return LocalUser(name, (LOCAL_GROUP,))


LOCAL_USER = page_user("local-user")  # who the page's local key signs in as, by default
MAX_BODY = 1024 * 1024  # API bodies are small JSON; uploads go to S3 by presigned POST
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Content-Type,X-Api-Key,Authorization,X-Amz-Date,X-Amz-Security-Token",
        "Access-Control-Allow-Methods": "GET,POST,OPTIONS"}


def proxy_event(method: str, path: str, query: str, headers: dict[str, str], body: str | None, source_ip: str,
                identity: dict | None = None, authorizer: dict | None = None) -> dict:
    """The REST API (v1) Lambda proxy event API Gateway would send for this request."""
    multi = parse_qs(query, keep_blank_values=True)
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi.items()} or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method, "path": f"/local{path}", "stage": "local",
                           "requestId": str(uuid.uuid4()), "requestTimeEpoch": int(time.time() * 1000),
                           "identity": identity or {"sourceIp": source_ip, "userAgent": headers.get("user-agent")},
                           **({"authorizer": authorizer} if authorizer else {}),
                           "accountId": ACCOUNT, "apiId": "local"},
        "body": body, "isBase64Encoded": False,
    }


class Gateway:
    def __init__(self, api_function: str, api_key: str, web_root: Path, port: int = 0, host: str = "127.0.0.1",
                 clients: tuple[LocalClient, ...] = (), user: LocalUser = LOCAL_USER):
        self.api_function, self.api_key, self.web_root = api_function, api_key, web_root.resolve()
        self.clients = {c.access_key_id: c for c in clients}
        self.user = user
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._lambda = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    def start(self) -> "Gateway":
        self._lambda = boto3.client("lambda", config=Config(max_pool_connections=64))
        threading.Thread(target=self.httpd.serve_forever, name="gateway", daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def invoke_api(self, event: dict) -> dict:
        resp = self._lambda.invoke(FunctionName=self.api_function, Payload=json.dumps(event).encode())
        payload = json.loads(resp["Payload"].read() or b"null")
        if resp.get("FunctionError") or not isinstance(payload, dict):
            return {"statusCode": 502, "body": json.dumps({"message": "Internal server error"})}
        return payload

    def authenticate(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                     source_ip: str) -> tuple[dict | None, dict | None]:
        """(identity, authorizer) of the request context, or Denied as API Gateway would answer."""
        if headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
            client = verify_sigv4(method, url, headers, body, self.clients)
            return iam_identity(client, source_ip, headers.get("user-agent")), None
        if headers.get("x-api-key") == self.api_key:
            return None, cognito_authorizer(self.user)
        raise Denied(401 if "authorization" in headers else 403, "Unauthorized" if "authorization" in headers else "Forbidden")

    def config_js(self) -> bytes:
        config = {"apiUrl": self.api_url, "apiKey": self.api_key, "auth": "api-key"}
        return f"window.DISCSCOPE_CONFIG = {json.dumps(config)};\n".encode()

    def _handler(self):
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _api(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.close_connection = True
                    return self._send(413, b'{"message": "Request Too Long"}', {"Content-Type": "application/json"} | CORS)
                raw = self.rfile.read(length) if length else None
                body = raw.decode("utf-8", "replace") if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                if method == "OPTIONS":
                    return self._send(204, b"", CORS)
                try:
                    identity, authorizer = gateway.authenticate(
                        method, f"http://{headers.get('host', '')}{self.path}", headers, raw, self.client_address[0])
                except Denied as exc:
                    return self._send(exc.status, json.dumps({"message": exc.message}).encode(),
                                      {"Content-Type": "application/json"} | CORS)
                path = unquote(url.path[len(API_PREFIX):]) or "/"
                result = gateway.invoke_api(proxy_event(method, path, url.query, headers, body, self.client_address[0],
                                                        identity, authorizer))
                out_headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
                out_headers.setdefault("Content-Type", "application/json")
                out = (result.get("body") or "").encode()
                self._send(int(result.get("statusCode", 502)), out, out_headers | CORS)

            def _static(self) -> None:
                path = unquote(urlsplit(self.path).path)
                if path == "/config.js":
                    return self._send(200, gateway.config_js(), {"Content-Type": "application/javascript", "Cache-Control": "no-store"})
                target = (gateway.web_root / path.lstrip("/")).resolve()
                if path.endswith("/"):
                    target = target / "index.html"
                inside = target == gateway.web_root or gateway.web_root in target.parents  # no ../ escapes
                if not inside or not target.is_file():
                    return self._send(404, b"not found", {"Content-Type": "text/plain"})
                ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                self._send(200, target.read_bytes(), {"Content-Type": ctype, "Cache-Control": "no-cache"})

            def _route(self, method: str) -> None:
                if self.path == API_PREFIX or self.path.startswith(API_PREFIX + "/") or self.path.startswith(API_PREFIX + "?"):
                    self._api(method)
                elif method in ("GET", "HEAD"):
                    self._static()
                else:
                    self._send(405, b"method not allowed", {"Content-Type": "text/plain"})

            def do_GET(self):
                self._route("GET")

            def do_HEAD(self):
                self._route("HEAD")

            def do_POST(self):
                self._route("POST")

            def do_OPTIONS(self):
                self._route("OPTIONS")

        return Handler
