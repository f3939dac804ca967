"""The HTTP base of the endpoint and the local gateway: abuse at the socket level gets a JSON answer,
never a hung thread, an HTML page or a broken pipe."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest

from discscope.httpd import JsonHandler, Server


class Echo(JsonHandler):
    timeout = 1.0
    max_body = 1024 * 1024

    def do_POST(self):
        body = self.read_body()
        if body is not None:
            self.send_json(200, {"received": len(body)})

    def do_GET(self):
        self.send_json(200, {"ok": True})


@pytest.fixture(scope="module")
def url():
    server = Server(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _raw(url: str, request: bytes, read_timeout: float = 5.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as s:
        s.sendall(request)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_negative_or_bogus_content_length_is_400(url):
    for value in ("-1", "abc", "1e3"):
        answer = _raw(url, f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 400") and b'"BAD_REQUEST"' in answer


def test_a_client_that_stops_sending_frees_its_thread(url):
    """Declares 100 bytes, sends 10, waits: the server gives up after its timeout and closes."""
    answer = _raw(url, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", read_timeout=10)
    assert answer == b""  # closed, no answer owed to a half request


def test_unknown_methods_and_bad_request_lines_are_json(url):
    for method in ("PUT", "DELETE", "BREW"):
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
        conn.request(method, "/x")
        resp = conn.getresponse()
        assert resp.status == 405 and resp.getheader("Content-Type") == "application/json"
        assert json.loads(resp.read())["error_code"] == "METHOD_NOT_ALLOWED"
        conn.close()
    answer = _raw(url, b"GARBAGE\r\n\r\n")
    assert b" 400 " in answer.split(b"\r\n")[0] and b"application/json" in answer


def test_oversized_body_gets_its_413(url):
    req = urllib.request.Request(url + "/", data=b"\0" * (5 * 1024 * 1024), method="POST")
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=30)
    assert ei.value.code == 413 and json.loads(ei.value.read())["error_code"] == "FILE_TOO_LARGE"


def test_a_burst_of_connections_is_queued_not_reset(url):
    host, port = url.removeprefix("http://").split(":")
    errors, answers = [], []

    def one():
        try:
            with urllib.request.urlopen(url + "/", timeout=30) as resp:
                answers.append(resp.status)
        except Exception as exc:  # a reset connection shows here
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and answers == [200] * 60
