"""EventBridge events as a handler receives them: directly from a rule, or in SQS records.

In AWS the rules invoke the functions directly; the local stack (moto cannot target Lambdas from
EventBridge) routes each rule to an SQS queue whose event-source mapping invokes the function.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

FEEDBACK_SAVED = "FeedbackSaved"
SCHEDULED = "Scheduled Event"
PIPELINE_STATUS = "SageMaker Model Building Pipeline Execution Status Change"
PACKAGE_STATE = "SageMaker Model Package State Change"
ENDPOINT_STATE = "SageMaker Endpoint State Change"


def eventbridge_events(event: dict) -> Iterator[dict]:
    if "detail-type" in event:
        yield event
        return
    for record in event.get("Records", []):
        body = json.loads(record.get("body") or "{}")
        if "detail-type" in body:
            yield body
