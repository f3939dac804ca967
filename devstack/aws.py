"""The local AWS: moto behind the signature-checking front on 127.0.0.1 (devstack.front) and the
resources the CDK would create, wired the same way.

Same handler code, same state-machine definition as in AWS; only the Lambda runtime (in-process,
see lambda_runtime) and the SageMaker runtime (our endpoint server) are stand-ins.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import boto3
from moto.moto_api._internal.models import moto_api_backend

from devstack import lambda_runtime
from devstack.front import AwsFront
from devstack.sigv4 import Credentials
from lambdas import api, deploy_model, ingest, retrain_trigger, workflow
from lambdas.shared.events import ENDPOINT_STATE, FEEDBACK_SAVED, PACKAGE_STATE, PIPELINE_STATUS, SCHEDULED, eventbridge_events
from lambdas.shared.settings import Settings
from lambdas.shared.store import LIST_FIELDS, LIST_INDEX

REPO = Path(__file__).resolve().parents[1]
ASL_PATH = REPO / "step_functions" / "study_workflow.asl.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
API_FUNCTION = "discscope-api"

# function name -> (handler, the ASL substitution it fills)
WORKFLOW_FUNCTIONS = {
    "discscope-validate": (workflow.validate_handler, "ValidateFunctionArn"),
    "discscope-infer": (workflow.infer_handler, "InferFunctionArn"),
    "discscope-persist": (workflow.persist_handler, "PersistFunctionArn"),
    "discscope-mark-failed": (workflow.mark_failed_handler, "MarkFailedFunctionArn"),
}


# EventBridge rule -> (pattern, the function it invokes). moto cannot target Lambdas from rules:
# each rule delivers to its function's SQS queue, whose event-source mapping invokes the function.
RETRAIN_FUNCTION, DEPLOY_FUNCTION = "discscope-retrain-trigger", "discscope-deploy-model"
EVENT_RULES = {
    "discscope-feedback-saved": ({"source": ["discscope.api"], "detail-type": [FEEDBACK_SAVED]}, RETRAIN_FUNCTION),
    "discscope-retrain-schedule": ({"source": ["aws.events"], "detail-type": [SCHEDULED]}, RETRAIN_FUNCTION),
    "discscope-pipeline-status": ({"source": ["aws.sagemaker"], "detail-type": [PIPELINE_STATUS]}, RETRAIN_FUNCTION),
    "discscope-model-approved": ({"source": ["aws.sagemaker"], "detail-type": [PACKAGE_STATE],
                                  "detail": {"ModelApprovalStatus": ["Approved"]}}, DEPLOY_FUNCTION),
    "discscope-endpoint-state": ({"source": ["aws.sagemaker"], "detail-type": [ENDPOINT_STATE]}, DEPLOY_FUNCTION),
}


def reset_clients() -> None:
    """Forget cached boto3 clients of the Lambda modules (they are built against one endpoint) and
    boto3's default session (it keeps the credentials it first read)."""
    boto3.DEFAULT_SESSION = None
    workflow.default_deps.cache_clear()
    ingest._clients.cache_clear()
    api.default_deps.cache_clear()
    retrain_trigger.default_deps.cache_clear()
    deploy_model.default_deps.cache_clear()


def new_credentials() -> Credentials:
    return Credentials("DEVSTACK" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30), REGION)



@dataclass
class Names:
    study_bucket: str = "discscope-studies"
    table: str = "discscope-studies"
    idempotency_table: str = "discscope-idempotency"
    state_machine: str = "StudyWorkflow"
    endpoint: str = "discscope"
    model_bucket: str = "discscope-models"
    package_group: str = "discscope"


def render_definition(arns: dict[str, str]) -> str:
    """The ASL with `${Name}` substitutions filled, as the CDK's DefinitionSubstitutions do."""
    text = ASL_PATH.read_text()
    for name, arn in arns.items():
        text = text.replace("${" + name + "}", arn)
    leftover = re.search(r"\$\{\w+\}", json.dumps(json.loads(text)["States"]))
    if leftover:
        raise ValueError(f"unfilled substitution {leftover.group(0)} in the state machine")
    return text


class LocalAws:
    """Start/stop the moto server and provision the stack's resources on it."""

    def __init__(self, port: int | None = None, names: Names | None = None, credentials: Credentials | None = None):
        self.names = names or Names()
        # The stack's own key pair: the front accepts nothing signed with another.
        self.credentials = credentials or new_credentials()
        self.front = AwsFront(self.credentials, Settings.from_env().max_upload_bytes, port=port or 0)
        self.web_origins: list[str] = []  # origins whose pages may POST uploads and GET artifacts
        self.state_machine_arn = ""
        self.ingest_arn = ""
        self.api_function = ""
        self.event_queues: dict[str, str] = {}
        # set by the stack: how the local pipeline starts and how the endpoint switches models
        self.start_pipeline = None
        self.switch_endpoint = None

    @property
    def url(self) -> str:
        return self.front.url

    @property
    def port(self) -> int:
        return self.front.server.server_address[1]

    def environment(self, endpoint_url: str | None = None) -> dict[str, str]:
        env = {
            "AWS_ENDPOINT_URL": self.url, "AWS_ENDPOINT_URL_SFN": self.url, "MOTO_PORT": str(self.port),
            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key, "AWS_SECRET_ACCESS_KEY": self.credentials.secret_key,
            "STUDY_BUCKET": self.names.study_bucket, "STUDY_TABLE": self.names.table,
            "IDEMPOTENCY_TABLE": self.names.idempotency_table, "ENDPOINT_NAME": self.names.endpoint,
            "STATE_MACHINE_ARN": self.state_machine_arn,
            "MODEL_BUCKET": self.names.model_bucket, "MODEL_PACKAGE_GROUP": self.names.package_group,
            "SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/discscope-local",
            "ENDPOINT_INSTANCE_TYPE": "ml.g4dn.xlarge",  # moto's instance-type list predates ml.g5
            "ENDPOINT_READ_TIMEOUT_S": "600",  # the local endpoint is a CPU that takes one study at a time
            # locally a candidate that passed the check is deployed at once unless asked otherwise
            "RETRAIN_APPROVAL": os.environ.get("RETRAIN_APPROVAL", "auto"),
            "RETRAIN_MIN_FEEDBACK": os.environ.get("RETRAIN_MIN_FEEDBACK", "20"),
            # no X-Ray or CloudWatch here: tracing off, metrics (EMF lines on stdout) off
            "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "DiscScope",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
        }
        if endpoint_url:
            env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = endpoint_url
        return env

    def start(self, endpoint_url: str | None = None) -> "LocalAws":
        lambda_runtime.install()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
        # metrics are off locally (no CloudWatch); powertools still warns on every empty flush
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        # Executing mode keeps its own backend: switch it on before creating state machines.
        moto_api_backend.set_config({"stepfunctions": {"execute_state_machine": True}})
        self.front.start()
        os.environ.update(self.environment(endpoint_url))
        reset_clients()
        return self

    def stop(self) -> None:
        self.front.stop()
        # moto's backends are process-wide: forget everything so a later stack starts clean
        moto_api_backend.reset()

    # -- provisioning ----------------------------------------------------------------------------
    def provision(self, before_triggers=None) -> None:
        """Create everything; `before_triggers` runs once storage exists but nothing reacts to it yet."""
        self._storage()
        if before_triggers:
            before_triggers()
        arns = self._functions()
        self._state_machine(arns)
        os.environ["STATE_MACHINE_ARN"] = self.state_machine_arn
        reset_clients()
        # created after the state machine, so the function's environment knows its ARN
        self.ingest_arn = self._create_function("discscope-ingest", ingest.handler)
        self.connect_uploads()
        self.api_function = API_FUNCTION
        self._create_function(self.api_function, api.handler)
        self._create_function(RETRAIN_FUNCTION, self._retrain_handler)
        self._create_function(DEPLOY_FUNCTION, self._deploy_handler)
        self._events()

    # The two MLOps functions run their plain on_event with the local stand-ins for the pipeline
    # start (runs the steps here) and the endpoint update (moto has no UpdateEndpoint).
    def _retrain_handler(self, event: dict, context) -> list[dict]:
        base = retrain_trigger.default_deps()
        deps = retrain_trigger.Deps(base.store, base.sagemaker, Settings.from_env(), start=self.start_pipeline)
        return [retrain_trigger.on_event(e, deps) for e in eventbridge_events(event)]

    def _deploy_handler(self, event: dict, context) -> list[dict]:
        base = deploy_model.default_deps()
        deps = deploy_model.Deps(base.store, base.sagemaker, Settings.from_env(), switch=self.switch_endpoint)
        return [deploy_model.on_event(e, deps) for e in eventbridge_events(event)]

    def _events(self) -> None:
        sqs, events, lam = boto3.client("sqs"), boto3.client("events"), boto3.client("lambda")
        for function in sorted({target for _, target in EVENT_RULES.values()}):
            url = sqs.create_queue(QueueName=f"{function}-events")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, BatchSize=1, Enabled=True)
            self.event_queues[function] = arn
        for rule, (pattern, function) in EVENT_RULES.items():
            events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
            events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": self.event_queues[function]}])

    def connect_uploads(self) -> None:
        """The S3 ObjectCreated (uploads/) -> ingest trigger."""
        boto3.client("s3").put_bucket_notification_configuration(
            Bucket=self.names.study_bucket,
            NotificationConfiguration={"LambdaFunctionConfigurations": [{
                "LambdaFunctionArn": self.ingest_arn, "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}}}]})

    def _storage(self) -> None:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=self.names.study_bucket)
        s3.create_bucket(Bucket=self.names.model_bucket)
        boto3.client("sagemaker").create_model_package_group(
            ModelPackageGroupName=self.names.package_group, ModelPackageGroupDescription="DiscScope models")
        if self.web_origins:
            s3.put_bucket_cors(Bucket=self.names.study_bucket, CORSConfiguration={"CORSRules": [
                {"AllowedMethods": ["GET", "POST"], "AllowedOrigins": self.web_origins, "AllowedHeaders": ["*"],
                 "MaxAgeSeconds": 3000}]})
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName=self.names.table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk")],
            GlobalSecondaryIndexes=[{"IndexName": LIST_INDEX,
                                     "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(LIST_FIELDS)},
                                     "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                                                   {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]}])
        ddb.create_table(TableName=self.names.idempotency_table, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])

    def _role(self) -> str:
        iam = boto3.client("iam")
        try:
            return iam.get_role(RoleName="discscope-local")["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            trust = {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole"}]}
            return iam.create_role(RoleName="discscope-local", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]

    def _create_function(self, name: str, handler) -> str:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:  # moto wants code; the handler runs in-process instead
            zf.writestr("handler.py", "def handler(event, context):\n    raise RuntimeError('runs in-process')\n")
        lambda_runtime.register(name, handler)
        env = {k: v for k, v in self.environment().items() if not k.startswith("AWS_")}
        fn = boto3.client("lambda").create_function(
            FunctionName=name, Runtime="python3.12", Role=self._role(), Handler="handler.handler",
            Code={"ZipFile": buf.getvalue()}, Timeout=900, MemorySize=512, Environment={"Variables": env})
        return fn["FunctionArn"]

    def _functions(self) -> dict[str, str]:
        return {substitution: self._create_function(name, handler)
                for name, (handler, substitution) in WORKFLOW_FUNCTIONS.items()}

    def _state_machine(self, arns: dict[str, str]) -> None:
        sfn = boto3.client("stepfunctions")
        role = f"arn:aws:iam::{ACCOUNT}:role/discscope-local"
        self.state_machine_arn = sfn.create_state_machine(
            name=self.names.state_machine, definition=render_definition(arns), roleArn=role)["stateMachineArn"]
