"""An HTTP server speaking SageMaker's inference container contract, with a hot-swappable model.

Routes: ``GET /ping``, ``POST /invocations`` (the container contract),
``POST /endpoints/{name}/invocations`` (what boto3's sagemaker-runtime client calls, with errors
wrapped the way the SageMaker runtime wraps them: HTTP 424 ``ModelError``), and, for the local
stack only, ``GET/POST /admin/model`` to read or swap the model without a restart.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from pathlib import Path

from .errors import DiscScopeError, InputError
from .httpd import JsonHandler, Server
from .io import DEFAULT_LIMITS, Limits
from .predictor import Predictor
from .serving import decode_request, deliver, output_location

log = logging.getLogger("discscope.server")
_ENDPOINT_ROUTE = re.compile(r"^/endpoints/([A-Za-z0-9-]{1,63})/invocations$")


class ModelHost:
    """Holds the current predictor; swapping loads the new one first, so requests never see a gap."""

    def __init__(self, model_path: str | Path, device: str | None = None, limits: Limits = DEFAULT_LIMITS):
        self.device, self.limits = device, limits
        self._predictor = Predictor(model_path, device)
        self._swap_lock = threading.Lock()
        # One study at a time: inference already uses every core (or the whole GPU); queueing
        # bounds memory instead of running N volumes side by side.
        self._infer_lock = threading.Lock()
        # Requests in flight, so that a shutdown can let them finish: a process that exits while a
        # thread is inside torch or OpenCV aborts (SIGABRT) instead of exiting.
        self._active = 0
        self._closing = False
        self._idle = threading.Condition()

    @property
    def predictor(self) -> Predictor:
        return self._predictor

    def swap(self, model_path: str | Path) -> str:
        new = Predictor(model_path, self.device)
        with self._swap_lock:
            self._predictor = new
        log.info("model swapped to %s", new.version)
        return new.version

    def invoke(self, body: bytes, content_type: str | None, custom_attributes: str | None = None) -> dict:
        with self._idle:
            if self._closing:
                raise ShuttingDown()
            self._active += 1
        try:
            output = output_location(body, content_type)
            volume = decode_request(body, content_type, custom_attributes, limits=self.limits)
            predictor = self._predictor  # one model version for the whole request, even mid-swap
            with self._infer_lock:
                result = predictor.result(volume)
            return deliver(result, output)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def drain(self, timeout: float = 300.0) -> bool:
        """Refuse new requests (503: the caller retries elsewhere or later) and wait for those in
        flight. False if they did not finish in time."""
        with self._idle:
            self._closing = True
            return self._idle.wait_for(lambda: self._active == 0, timeout)


class ShuttingDown(DiscScopeError):
    code = "ENDPOINT_UNAVAILABLE"
    http_status = 503

    def __init__(self):
        super().__init__("the endpoint is shutting down; try again")


def make_handler(host: ModelHost):
    class Handler(JsonHandler):
        server_version = "discscope-endpoint"
        max_body = host.limits.max_bytes

        def log_message(self, fmt, *args):  # route access logs through logging, not stderr
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            self.send_json(status, payload, headers)

        def _read_body(self) -> bytes | None:
            if self.headers.get("Content-Length") is None:
                self.close_connection = True
                self._send(411, {"error_code": "LENGTH_REQUIRED", "message": "Content-Length is required"})
                return None
            return self.read_body()

        def do_GET(self):
            if self.path == "/ping":
                self._send(200, {"status": "Healthy", "model_version": host.predictor.version})
            elif self.path == "/admin/model":
                self._send(200, {"model_version": host.predictor.version, "metadata": host.predictor.metadata})
            else:
                self._send(404, {"error_code": "NOT_FOUND", "message": f"no route {self.path}"})

        def do_POST(self):
            endpoint = _ENDPOINT_ROUTE.match(self.path)
            if self.path == "/admin/model":
                return self._swap()
            if self.path != "/invocations" and not endpoint:
                return self._send(404, {"error_code": "NOT_FOUND", "message": f"no route {self.path}"})
            body = self._read_body()
            if body is None:
                return
            try:
                result = host.invoke(body, self.headers.get("Content-Type"),
                                     self.headers.get("X-Amzn-SageMaker-Custom-Attributes"))
            except DiscScopeError as exc:
                return self._error(exc.http_status, exc.to_dict(), wrapped=bool(endpoint))
            except Exception as exc:  # the server must stay up whatever one request does
                log.error("inference failed: %s\n%s", exc, traceback.format_exc())
                return self._error(500, {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"},
                                   wrapped=bool(endpoint))
            headers = {"x-Amzn-Invoked-Production-Variant": "AllTraffic"} if endpoint else None
            self._send(200, result, headers)

        def _error(self, status: int, payload: dict, wrapped: bool) -> None:
            if not wrapped:
                return self._send(status, payload)
            # SageMaker runtime: a container error reaches the caller as 424 ModelError with the original.
            original = json.dumps(payload)
            kind = "CLIENT" if status < 500 else "SERVER"
            self._send(424, {"ErrorCode": f"{kind}_ERROR_FROM_MODEL", "OriginalStatusCode": status,
                             "OriginalMessage": original,
                             "Message": f"Received {kind.lower()} error ({status}) from primary with message \"{original}\"."},
                       {"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker/"})

        def _swap(self):
            body = self._read_body()
            if body is None:
                return
            try:
                path = json.loads(body or b"{}").get("model_path")
                if not path:
                    raise InputError('send {"model_path": "..."}', "BAD_REQUEST")
                version = host.swap(path)
            except DiscScopeError as exc:
                return self._send(exc.http_status, exc.to_dict())
            except (ValueError, AttributeError, RecursionError) as exc:
                return self._send(400, {"error_code": "BAD_REQUEST", "message": str(exc)[:200]})
            self._send(200, {"model_version": version})

    return Handler


class EndpointServer:
    """The server on a background thread; `port=0` picks a free port."""

    def __init__(self, model_path: str | Path, host: str = "127.0.0.1", port: int = 8080, device: str | None = None,
                 limits: Limits = DEFAULT_LIMITS):
        self.model_host = ModelHost(model_path, device, limits)
        self.httpd = Server((host, port), make_handler(self.model_host))
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "EndpointServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="endpoint", daemon=True)
        self.thread.start()
        return self

    def stop(self, drain_timeout: float = 300.0) -> None:
        if not self.model_host.drain(drain_timeout):
            log.warning("stopping with a request still in flight")
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
