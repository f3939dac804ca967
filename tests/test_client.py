"""The clinical client (`discscope analyze`) against a flaky or absent API: retries, no traceback."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from discscope import cli
from discscope.client import ApiError, Client, Unreachable


class Flaky(BaseHTTPRequestHandler):
    """Fails the first `failures` requests (503, or a dropped connection), then answers."""

    failures = 0
    mode = "503"
    seen: list[str] = []

    def do_GET(self):
        Flaky.seen.append(self.path)
        if len(Flaky.seen) <= Flaky.failures:
            if Flaky.mode == "drop":
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"model_version": "v1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Flaky.seen = []
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_transient_failures_are_retried(flaky, mode):
    Flaky.failures, Flaky.mode = 2, mode
    client = Client(f"http://127.0.0.1:{flaky.server_address[1]}", "k", retries=3, backoff=0.01)
    assert client.current_model() == {"model_version": "v1"}
    assert len(Flaky.seen) == 3


def test_a_post_is_not_repeated_once_the_server_may_have_acted(flaky):
    Flaky.failures, Flaky.mode = 1, "503"
    client = Client(f"http://127.0.0.1:{flaky.server_address[1]}", "k", retries=3, backoff=0.01)
    with pytest.raises(ApiError) as ei:
        client.create_study("a.mha", 10, "application/octet-stream")
    assert ei.value.status == 503 and len(Flaky.seen) == 1


def test_nobody_listening(tmp_path, capsys):
    with socket.socket() as s:  # a port with nothing behind it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}/api", "k", retries=2, backoff=0.01)
    with pytest.raises(Unreachable):
        client.current_model()
    study = tmp_path / "scan.mha"
    study.write_bytes(b"x" * 100)
    (tmp_path / "client_credentials.json").write_text(json.dumps(
        {"name": "local-clinical-system", "access_key_id": "AKIALOCALTEST", "secret_access_key": "s"}))
    api = ["--api", f"http://127.0.0.1:{port}/api", "--state", str(tmp_path)]
    code = cli.main(["analyze", str(study), *api, "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "did not answer" in err and "Traceback" not in err
    code = cli.main(["analyze", str(tmp_path / "missing.mha"), *api])
    err = capsys.readouterr().err
    assert code == 2 and "missing.mha" in err and "Traceback" not in err
