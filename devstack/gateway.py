"""An API Gateway-shaped HTTP front: `/api/*` becomes REST proxy events for the `api` Lambda (invoked
through the local Lambda service), authenticated as API Gateway would (devstack.local_auth: a
SigV4 signature of a local clinical system, or the page's local key standing in for a Cognito
login) and carrying the request context API Gateway would build; everything else is the static
web page from `web/` plus a generated `config.js` telling the page where the API is.

The page acts as the stack's named local user (`discscope up --user NAME`), so reviews record who
saved them, exactly as they record a Cognito user in AWS.

The page gets its local key from `config.js`, so the key must reach the page's own origin and no
other: `config.js` (like everything here) carries `Cross-Origin-Resource-Policy: same-origin`, and
a request that Fetch Metadata or its Origin says another page made is refused, as is one whose Host
is not this server (a DNS-rebinding page). CORS is answered for the page's own origins only.
"""

from __future__ import annotations

import json
import mimetypes
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
from botocore.config import Config
from discscope.httpd import JsonHandler, Server

from devstack.local_auth import (ACCOUNT, Denied, LocalClient, LocalUser, cognito_authorizer, iam_identity,
                                 verify_sigv4)

API_PREFIX = "/api"
LOCAL_GROUP = "local-clinicians"  # the local users' Cognito group (which owns what the page creates)


def page_user(name: str) -> LocalUser:
    """A person signed in to the local page: everyone is in the one local group, so all see the same studies."""
    return LocalUser(name, (LOCAL_GROUP,))


LOCAL_USER = page_user("local-user")  # who the page's local key signs in as, by default
MAX_BODY = 1024 * 1024  # API bodies are small JSON; uploads go to S3 by presigned POST
SAME_ORIGIN_ONLY = {"Cross-Origin-Resource-Policy": "same-origin", "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
CORS_HEADERS = {"Access-Control-Allow-Headers": "Content-Type,X-Api-Key,Authorization,X-Amz-Date,X-Amz-Security-Token",
                "Access-Control-Allow-Methods": "GET,POST,OPTIONS", "Vary": "Origin"}


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
        self.httpd = Server((host, port), self._handler())
        self._lambda = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def origins(self) -> list[str]:
        """The page's own origins: the only ones that get CORS answers and config.js."""
        return sorted({f"http://{name}:{self.port}" for name in ("127.0.0.1", "localhost", self.httpd.server_address[0])})

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
        # the API on the page's own origin, whichever name the page was opened with
        config = {"apiUrl": API_PREFIX, "apiKey": self.api_key, "auth": "api-key"}
        return f"window.DISCSCOPE_CONFIG = {json.dumps(config)};\n".encode()

    def _handler(self):
        gateway = self

        class Handler(JsonHandler):
            max_body = MAX_BODY
            extra_headers = SAME_ORIGIN_ONLY

            def _from_another_page(self) -> bool:
                """Fetch Metadata (every current browser sends it) or the Origin names another page.
                `same-site` is refused too: another port of this host is the same site."""
                if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
                    return True
                origin = self.headers.get("Origin")
                return origin is not None and origin not in gateway.origins

            def _cors(self) -> dict[str, str]:
                origin = self.headers.get("Origin")
                return CORS_HEADERS | {"Access-Control-Allow-Origin": origin} if origin in gateway.origins else {}

            def _forbidden(self, why: str) -> None:
                self.send_json(403, {"error_code": "FORBIDDEN", "message": why})

            def _api(self, method: str) -> None:
                if method == "OPTIONS":
                    return self.send_bytes(204, b"", self._cors()) if self._cors() else self._forbidden("origin not allowed")
                if self._from_another_page():
                    return self._forbidden("requests from other web pages are refused")
                raw = self.read_body()
                if raw is None:
                    return
                url = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    identity, authorizer = gateway.authenticate(
                        method, f"http://{headers.get('host', '')}{self.path}", headers, raw or None, self.client_address[0])
                except Denied as exc:
                    return self.send_json(exc.status, {"message": exc.message}, self._cors())
                path = unquote(url.path[len(API_PREFIX):]) or "/"
                body = raw.decode("utf-8", "replace") if raw else None
                result = gateway.invoke_api(proxy_event(method, path, url.query, headers, body, self.client_address[0],
                                                        identity, authorizer))
                out_headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
                out_headers.setdefault("Content-Type", "application/json")
                out = (result.get("body") or "").encode()
                self.send_bytes(int(result.get("statusCode", 502)), out, out_headers | self._cors())

            def _static(self) -> None:
                path = unquote(urlsplit(self.path).path)
                if path == "/config.js":
                    if self._from_another_page():
                        return self._forbidden("config.js is for this page only")
                    return self.send_bytes(200, gateway.config_js(), {"Content-Type": "application/javascript",
                                                                      "Cache-Control": "no-store"})
                target = (gateway.web_root / path.lstrip("/")).resolve()
                if path.endswith("/"):
                    target = target / "index.html"
                inside = target == gateway.web_root or gateway.web_root in target.parents  # no ../ escapes
                if not inside or not target.is_file():
                    return self.send_bytes(404, b"not found", {"Content-Type": "text/plain"})
                ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                self.send_bytes(200, target.read_bytes(), {"Content-Type": ctype, "Cache-Control": "no-cache"})

            def _route(self, method: str) -> None:
                host = self.headers.get("Host", "")
                if f"http://{host}" not in gateway.origins:  # DNS rebinding: another name for this server
                    self.close_connection = True
                    return self._forbidden(f"unknown host {host[:100]!r}")
                if self.path == API_PREFIX or self.path.startswith((API_PREFIX + "/", API_PREFIX + "?")):
                    self._api(method)
                elif method in ("GET", "HEAD"):
                    self._static()
                else:
                    self.send_json(405, {"error_code": "METHOD_NOT_ALLOWED", "message": f"{method} is not allowed here"})

            def do_GET(self):
                self._route("GET")

            def do_HEAD(self):
                self._route("HEAD")

            def do_POST(self):
                self._route("POST")

            def do_OPTIONS(self):
                self._route("OPTIONS")

            def do_PUT(self):
                self._route("PUT")

            def do_DELETE(self):
                self._route("DELETE")

            def do_PATCH(self):
                self._route("PATCH")

        return Handler
