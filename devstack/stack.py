"""The whole local stack in one process: endpoint, moto AWS with the real wiring, API gateway + web page."""

from __future__ import annotations

import getpass
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from pathlib import Path

import boto3

from cdk import container_code
from devstack.aws import API_FUNCTION, REGION, REPO, LocalAws, new_credentials, reset_clients
from devstack.gateway import Gateway, page_user
from devstack.local_auth import LocalClient
from devstack.pipeline_runner import DEFINITION, LocalPipelineRunner, RunResult, upload_tree
from devstack.retrain_data import RetrainData
from devstack.sigv4 import Credentials
from devstack.state import DurableState
from discscope.artifact import pack
from discscope.server import EndpointServer
from lambdas.shared.store import StudyStore

log = logging.getLogger("devstack")
DEFAULT_STATE = REPO / ".devstack"
LOCAL_IMAGE = "local/discscope"  # the containers run on devstack.container_env's interpreter
LOCAL_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/local"  # moto's S3 ignores it
CODE_PREFIX, DATASETS = "code/", "datasets/"
CLIENT_CREDENTIALS = "client_credentials.json"


class LocalStack:
    def __init__(self, model: str | Path, state_dir: Path | None = DEFAULT_STATE, api_port: int = 0,
                 endpoint_port: int = 0, aws_port: int | None = None,
                 retrain_data: RetrainData | None = None, pipeline_overrides: dict | None = None,
                 settings: dict[str, str] | None = None, user: str | None = None):
        self.model = model
        self.user = user or local_user()  # who the page and local clients act as
        self.state_dir = Path(state_dir) if state_dir else None
        self.api_port, self.endpoint_port = api_port, endpoint_port
        self.api_key = self._api_key()  # the page's local key (a Cognito login stands in for it in AWS)
        self.clinical_client = self._clinical_client()  # a clinical system's local IAM credentials
        self.aws = LocalAws(port=aws_port, credentials=self._aws_credentials())
        self.endpoint: EndpointServer | None = None
        self.gateway: Gateway | None = None
        self.state: DurableState | None = None
        self._saved_env = dict(os.environ)
        self.work_dir = (self.state_dir or Path(tempfile.mkdtemp(prefix="discscope-stack-"))) / "pipeline"
        self.retrain_data = retrain_data or RetrainData(self.work_dir.parent / "datasets")
        self.runs: dict[str, RunResult] = {}
        self.pipeline_overrides = pipeline_overrides or {}  # e.g. fewer training iterations in tests
        self.settings = settings or {}  # Lambda settings (e.g. RETRAIN_MIN_FEEDBACK) for this stack
        self._threads: list[threading.Thread] = []

    def _api_key(self) -> str:
        """Kept in the state folder so a restart does not invalidate clients' keys."""
        if not self.state_dir:
            return secrets.token_urlsafe(24)
        return _secret_file(self.state_dir / "api_key", lambda: secrets.token_urlsafe(24))

    def _clinical_client(self) -> LocalClient:
        """Kept in the state folder, like the page key, so `discscope analyze` can sign requests."""
        path = self.state_dir / CLIENT_CREDENTIALS if self.state_dir else None
        if path is not None and path.is_file():
            return LocalClient(**json.loads(path.read_text()))
        client = LocalClient("local-clinical-system", "AKIALOCAL" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(client.__dict__))
            path.chmod(0o600)
        return client

    def _aws_credentials(self) -> Credentials:
        """The local AWS's only key pair (the operator commands read it from the state folder)."""
        if not self.state_dir:
            return new_credentials()

        def make() -> str:
            fresh = new_credentials()
            return json.dumps({"access_key": fresh.access_key, "secret_key": fresh.secret_key})

        saved = json.loads(_secret_file(self.state_dir / "aws_credentials.json", make))
        return Credentials(saved["access_key"], saved["secret_key"], REGION)

    def start(self) -> "LocalStack":
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        self.endpoint = EndpointServer(self.model, port=self.endpoint_port).start()
        # bound now (serving later) so the study bucket's CORS can name the page's origin
        self.gateway = Gateway(API_FUNCTION, self.api_key, REPO / "web", port=self.api_port,
                               clients=(self.clinical_client,), user=page_user(self.user))
        self.aws.web_origins = self.gateway.origins
        self.aws.start(endpoint_url=self.endpoint.url)
        os.environ.update(self.settings)
        restored = {}
        if self.state_dir:
            names = self.aws.names
            self.state = DurableState(self.state_dir, names.study_bucket,
                                      {names.table: ("pk", "sk"), names.idempotency_table: ("id",)})
            self.state.connect(boto3.client("s3"), boto3.client("dynamodb"))
            self.aws.provision(before_triggers=lambda: restored.update(self._restore()))
        else:
            self.aws.provision()
        self.store = StudyStore(boto3.resource("dynamodb").Table(self.aws.names.table))
        self._deploy_initial_model()
        self.aws.start_pipeline, self.aws.switch_endpoint = self._start_pipeline, self._switch_endpoint
        self._resume_unfinished()
        self.gateway.start()
        self._write_stack_file()
        if restored.get("items"):
            log.info("restored %s objects and %s items from %s", restored["objects"], restored["items"], self.state_dir)
        return self

    def _restore(self) -> dict[str, int]:
        """The saved data back into moto, then every later write goes to disk as it happens."""
        self.aws.front.persisting = False
        try:
            return self.state.restore()
        finally:
            self.aws.front.state, self.aws.front.persisting = self.state, True

    # -- models: what the CDK's inference stack and the deploy Lambda do in AWS -----------------------
    def _deploy_initial_model(self) -> None:
        """The served model as a SageMaker artifact in the model bucket, a Model, an EndpointConfig
        and the Endpoint in moto, and the current-model record (unless a restored one says otherwise)."""
        predictor = self.endpoint.model_host.predictor
        current = self.store.current_model()
        if current and current.get("model_version") != predictor.version and self._restore_promoted(current):
            return
        key = f"models/{predictor.version}/model.tar.gz"
        with tempfile.TemporaryDirectory() as tmp:
            tar = pack(Path(self.model), Path(tmp) / "model.tar.gz") if Path(self.model).is_dir() else Path(self.model)
            boto3.client("s3").upload_file(str(tar), self.aws.names.model_bucket, key)
        url = f"s3://{self.aws.names.model_bucket}/{key}"
        name = f"discscope-{predictor.version}"
        sm = boto3.client("sagemaker")
        sm.create_model(ModelName=name, ExecutionRoleArn=os.environ["SAGEMAKER_ROLE_ARN"],
                        PrimaryContainer={"Image": LOCAL_IMAGE, "ModelDataUrl": url})
        self._endpoint_config(name, name)
        sm.create_endpoint(EndpointName=self.aws.names.endpoint, EndpointConfigName=name)
        self.store.set_current_model(predictor.version, source=str(self.model), model_data_url=url, endpoint_config=name,
                                     metrics=predictor.metadata.get("metrics", {}))

    def _restore_promoted(self, current: dict) -> bool:
        """A model promoted before the restart serves again, from the copy the switch kept (the
        snapshot holds the study bucket, not the model bucket). False when that copy is gone."""
        kept = self.work_dir / "models" / f"{current.get('endpoint_config')}.tar.gz"
        url = current.get("model_data_url") or ""
        if not kept.is_file() or not url.startswith("s3://"):
            log.warning("the promoted model %s is not kept locally; serving %s", current.get("model_version"), self.model)
            return False
        bucket, key = url.removeprefix("s3://").split("/", 1)
        boto3.client("s3").upload_file(str(kept), bucket, key)
        self._switch_endpoint(self.aws.names.endpoint, current["endpoint_config"], {},
                              {"InferenceSpecification": {"Containers": [{"ModelDataUrl": url}]}}, create=True)
        return True

    def _endpoint_config(self, config_name: str, model_name: str) -> None:
        boto3.client("sagemaker").create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": model_name, "InstanceType": os.environ["ENDPOINT_INSTANCE_TYPE"],
            "InitialInstanceCount": 1}])

    def _switch_endpoint(self, endpoint: str, config_name: str, deployment: dict, package: dict, create: bool = False) -> bool:
        """moto has no UpdateEndpoint: recreate the endpoint on the new config and hot-swap the
        local server's model. Synchronous, so the deploy Lambda records the version at once."""
        url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        bucket, key = url.removeprefix("s3://").split("/", 1)
        target = self.work_dir / "models" / f"{config_name}.tar.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        boto3.client("s3").download_file(bucket, key, str(target))
        version = self.endpoint.model_host.swap(target)
        sm = boto3.client("sagemaker")
        if create:  # after a restart moto has no SageMaker resources: make the model's again
            sm.create_model(ModelName=config_name, ExecutionRoleArn=os.environ["SAGEMAKER_ROLE_ARN"],
                            PrimaryContainer={"Image": LOCAL_IMAGE, "ModelDataUrl": url})
            self._endpoint_config(config_name, config_name)
        else:
            sm.delete_endpoint(EndpointName=endpoint)
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
        log.info("endpoint %s now serves %s (%s)", endpoint, version, config_name)
        return True

    # -- retraining: the pipeline's steps run here (one run at a time: the trigger's lock) ---------
    def runner(self, log_fn=None) -> LocalPipelineRunner:
        """The runner with the definition filled as the CDK fills it, after putting in the model bucket
        what `cdk deploy` and the README's seeding step put there: the code and the datasets."""
        names = self.aws.names
        train, evaluation = self.retrain_data.ensure()
        for folder in train:
            sync_folder(folder, names.model_bucket, f"{DATASETS}train/{folder.name}/")
        sync_folder(evaluation, names.model_bucket, f"{DATASETS}eval/{evaluation.name}/")
        members = container_code.code_members()  # lib/ is installed per container (devstack.container_env)
        upload_tree(members, names.model_bucket, CODE_PREFIX)
        with tempfile.TemporaryDirectory() as tmp:
            tar = container_code.deterministic_targz(Path(tmp) / "sourcedir.tar.gz", members)
            boto3.client("s3").upload_file(str(tar), names.model_bucket, f"{CODE_PREFIX}sourcedir.tar.gz")
        placeholders = {"ModelBucket": names.model_bucket, "StudyBucket": names.study_bucket,
                        "PipelineRoleArn": os.environ["SAGEMAKER_ROLE_ARN"], "ModelPackageGroupName": names.package_group,
                        "DataKeyArn": LOCAL_KEY_ARN, "ProcessingImageUri": LOCAL_IMAGE, "TrainingImageUri": LOCAL_IMAGE,
                        "InferenceImageUri": LOCAL_IMAGE}
        return LocalPipelineRunner(self.work_dir, placeholders, log=log_fn or log.info)

    def _start_pipeline(self, name: str, parameters: list[dict], token: str) -> str:
        sm = boto3.client("sagemaker")
        if not _exists(sm.describe_pipeline, PipelineName=name):
            sm.create_pipeline(PipelineName=name, PipelineDefinition=DEFINITION.read_text(),
                               RoleArn=os.environ["SAGEMAKER_ROLE_ARN"], ClientRequestToken=token)
        arn = sm.start_pipeline_execution(PipelineName=name, PipelineParameters=parameters,
                                          ClientRequestToken=token)["PipelineExecutionArn"]
        overrides = {p["Name"]: p["Value"] for p in parameters} | self.pipeline_overrides
        thread = threading.Thread(target=self._run_pipeline, args=(arn, overrides), name="pipeline", daemon=True)
        self._threads.append(thread)
        thread.start()
        return arn

    def _run_pipeline(self, arn: str, overrides: dict) -> None:
        run_id = arn.rsplit("/", 1)[-1]
        run_dir = self.work_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / "progress.log").open("a") as progress:
            def log_line(line: str) -> None:
                progress.write(line + "\n")
                progress.flush()
                log.info(line)
            try:
                result = self.runner(log_line).run(arn, overrides)
            except Exception as exc:  # the runner reports step failures itself; this is anything else
                log.exception("pipeline run %s crashed", run_id)
                result = RunResult(arn, "Failed", "FAILED", f"{type(exc).__name__}: {exc}")
            self.runs[arn] = result
            (run_dir / "result.json").write_text(json.dumps(result.__dict__, default=str, indent=1))

    def wait_for_runs(self, timeout: float = 600) -> None:
        deadline = time.time() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.time()))

    def _write_stack_file(self) -> None:
        """Where the running stack is, for `discscope retrain` / `approve` in another process."""
        if self.state_dir:
            (self.state_dir / "stack.json").write_text(json.dumps({
                "aws_url": self.aws.url, "api_url": self.gateway.api_url, "endpoint_url": self.endpoint.url,
                "work_dir": str(self.work_dir), "pid": os.getpid()}))

    def _resume_unfinished(self) -> None:
        """Studies caught mid-flight by the last shutdown are run again."""
        sfn = boto3.client("stepfunctions")
        for study in self.store.unfinished():  # UPLOADED or PROCESSING, whoever owns them
            payload = {"study_id": study["study_id"], "bucket": self.aws.names.study_bucket, "key": study["upload_key"]}
            try:
                boto3.client("s3").head_object(Bucket=payload["bucket"], Key=payload["key"])
            except Exception:  # registered but never uploaded: nothing to run
                continue
            sfn.start_execution(stateMachineArn=self.aws.state_machine_arn, input=json.dumps(payload),
                                name=f"{study['study_id']}-resume-{int(time.time())}")

    def stop(self) -> None:
        self.wait_for_runs(timeout=0)
        if self.state_dir:
            (self.state_dir / "stack.json").unlink(missing_ok=True)
        for part in (self.gateway, self.endpoint):  # the endpoint lets a study in flight finish
            if part:
                part.stop()
        self.aws.stop()
        os.environ.clear()
        os.environ.update(self._saved_env)
        reset_clients()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def describe(self) -> str:
        web = (REPO / "web" / "index.html").is_file()
        return "\n".join(([f"  web page      {self.gateway.url}/"] if web else []) + [
            f"  REST API      {self.gateway.api_url}   (header x-api-key: {self.api_key})",
            f"  clinical      SigV4 as {self.clinical_client.arn} (keys in {self.state_dir or 'memory'}/{CLIENT_CREDENTIALS})",
            f"  endpoint      {self.endpoint.url}   (model {self.endpoint.model_host.predictor.version})",
            f"  AWS (moto)    {self.aws.url}",
            f"  state         {self.state_dir or 'in memory only'}",
            f"  reviewer      {self.user}   (discscope up --user NAME)",
        ])


def local_user() -> str:
    """The OS user name, as the local reviewer's name by default."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        return "local-user"


def sync_folder(folder: Path, bucket: str, prefix: str) -> None:
    """Upload the folder's files that the bucket does not hold yet (datasets are written once)."""
    s3 = boto3.client("s3")
    held = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])}
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")):
        if f"{prefix}{path.name}" not in held:
            s3.upload_file(str(path), bucket, f"{prefix}{path.name}")


def _secret_file(path: Path, make) -> str:
    """A value kept in a file only this user can read, made on first use."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make())
    return path.read_text().strip()


def _exists(describe, **kwargs) -> bool:
    try:
        describe(**kwargs)
        return True
    except Exception:  # moto raises ValidationException / ResourceNotFound alike for a missing resource
        return False
