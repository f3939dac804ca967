"""Runs Lambda handlers in-process for moto, which would otherwise need Docker.

The one place that touches moto internals, twice:
- `LambdaFunction._invoke_lambda(self, event=None)` must return `(payload_json_text, errored, logs)`.
  It serves direct invokes, Step Functions tasks, S3 notifications and SQS event-source mappings
  alike (moto calls it from its server thread, in this process).
- moto's Step Functions interpreter calls Lambda through `boto_client_for(region, service,
  state_credentials)`, which signs with a fixed key pair of its own ("ak"/"sk"). The local AWS
  front accepts the stack's key pair only, so the interpreter's Lambda client is made the way any
  client here is: from the environment (the front's URL, the stack's credentials).
moto is pinned; tests/test_workflow.py fails if either changes shape.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import boto3
from botocore.config import Config
from moto.awslambda.models import LambdaFunction
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

log = logging.getLogger("devstack.lambda")
Handler = Callable[[Any, Any], Any]
_HANDLERS: dict[str, Handler] = {}
# One event at a time per function, as in a Lambda execution environment: module-level state
# (powertools' resolver, logger keys) is not shared between concurrent events.
_LOCKS: dict[str, threading.Lock] = {}
EXPECTED_PARAMETERS = ["self", "event"]
INTERPRETER_CLIENT_PARAMETERS = ["region", "service", "state_credentials"]


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that powertools and our handlers read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def register(function_name: str, handler: Handler) -> None:
    _HANDLERS[function_name] = handler
    _LOCKS.setdefault(function_name, threading.Lock())


def registered() -> dict[str, Handler]:
    return dict(_HANDLERS)


def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    handler = _HANDLERS.get(self.function_name)
    if handler is None:
        error = {"errorMessage": f"no in-process handler registered for {self.function_name}", "errorType": "HandlerNotFound"}
        return json.dumps(error), True, ""
    if isinstance(event, (str, bytes)):
        event = json.loads(event or "{}")
    context = LambdaContext(self.function_name, self.function_arn, int(self.memory_size or 1024))
    try:
        with _LOCKS[self.function_name]:  # handler logs go to this process's stdout
            result = handler(event if event is not None else {}, context)
        return json.dumps(result if result is not None else None, default=str), False, ""
    except Exception as exc:  # what the Python runtime returns for an unhandled exception
        log.info("%s raised %s: %s", self.function_name, type(exc).__name__, exc)
        payload = {"errorMessage": str(exc), "errorType": type(exc).__name__,
                   "stackTrace": traceback.format_tb(exc.__traceback__)[-5:]}
        return json.dumps(payload), True, ""


def _interpreter_client(region: str, service: str, state_credentials: Any = None):
    """The Step Functions interpreter's client, from the environment like every other client here."""
    return boto3.client(service, region_name=region, config=Config(
        retries={"max_attempts": 0, "total_max_attempts": 1}, connect_timeout=60, read_timeout=3600))


def moto_matches() -> bool:
    """True while the two moto functions this module replaces still have the shapes it expects."""
    original = getattr(LambdaFunction, "_devstack_original", LambdaFunction._invoke_lambda)
    params = inspect.signature(original).parameters
    client = getattr(lambda_eval_utils, "_devstack_original", lambda_eval_utils.boto_client_for)
    return (list(params) == EXPECTED_PARAMETERS and params["event"].default is None
            and list(inspect.signature(client).parameters) == INTERPRETER_CLIENT_PARAMETERS)


def install() -> None:
    """Patch moto (idempotent). Refuses to patch a moto whose functions no longer match."""
    if LambdaFunction._invoke_lambda is _invoke_lambda:
        return
    if not moto_matches():
        raise RuntimeError("moto changed LambdaFunction._invoke_lambda or the Step Functions interpreter's client; "
                           "update devstack.lambda_runtime")
    LambdaFunction._devstack_original = LambdaFunction._invoke_lambda
    LambdaFunction._invoke_lambda = _invoke_lambda
    lambda_eval_utils._devstack_original = lambda_eval_utils.boto_client_for
    lambda_eval_utils.boto_client_for = _interpreter_client
