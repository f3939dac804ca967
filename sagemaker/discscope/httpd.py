"""What the HTTP servers here (the endpoint, the local API gateway) need beyond the standard library's:
a socket timeout, a listen backlog for bursts, JSON for every error (unknown methods and malformed
requests included), a strict Content-Length, and a 413 that reaches a client still sending its body."""

from __future__ import annotations

import json
import socket
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DRAIN_BYTES = 64 * 1024**2  # read and drop at most this much of a refused body, so the client sees the answer
DRAIN_SECONDS = 10.0


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 resets connections under a burst of clients


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that stops sending (or declares more than it sends) frees its thread
    max_body = 1024 * 1024
    extra_headers: dict[str, str] = {}

    def log_message(self, fmt, *args):  # access logs are not wanted on stderr
        pass

    def send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), {"Content-Type": "application/json"} | (headers or {}))

    def send_bytes(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in (self.extra_headers | headers).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """The standard library's own refusals (unknown method, bad request line) as JSON, not HTML."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparsable request line: still answer with a status line
            self.request_version = "HTTP/1.1"
        if code == HTTPStatus.NOT_IMPLEMENTED:  # a method no route has
            code, name = HTTPStatus.METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"
        else:
            name = HTTPStatus(code).name
        try:
            self.send_json(int(code), {"error_code": name, "message": message or HTTPStatus(code).phrase})
        except OSError:
            pass

    def read_body(self, limit: int | None = None) -> bytes | None:
        """The request body, or None after answering 400/411/413 (then the connection closes)."""
        limit = self.max_body if limit is None else limit
        raw = self.headers.get("Content-Length")
        if raw is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                self.send_json(411, {"error_code": "LENGTH_REQUIRED", "message": "send a Content-Length"})
                return None
            return b""
        if not raw.strip().isdigit():
            self.close_connection = True
            self.send_json(400, {"error_code": "BAD_REQUEST", "message": f"Content-Length {raw[:20]!r} is not a size"})
            return None
        length = int(raw)
        if length > limit:
            self.refuse_body(length, 413, {"error_code": "FILE_TOO_LARGE",
                                           "message": f"the request is {length} bytes; the limit is {limit}"})
            return None
        try:
            body = self.rfile.read(length)
        except (socket.timeout, OSError):
            self.close_connection = True
            return None
        if len(body) < length:  # the client went away mid-body
            self.close_connection = True
            return None
        return body

    def refuse_body(self, length: int, status: int, payload: dict) -> None:
        """Answer without reading the body, then read and drop some of it, so that a client still
        sending (most do not read before they have sent) gets the answer instead of a broken pipe."""
        self.close_connection = True
        self.send_json(status, payload)
        self.wfile.flush()
        deadline = time.monotonic() + DRAIN_SECONDS
        remaining = min(length, DRAIN_BYTES)
        try:
            self.connection.settimeout(1.0)
            while remaining > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(65536, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass
