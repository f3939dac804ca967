"""The whole local stack in one process: endpoint, moto AWS with the real wiring, API gateway + web page."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path

import boto3

from devstack.aws import REPO, LocalAws
from devstack.gateway import Gateway
from devstack.state import StateDir
from discscope.server import EndpointServer
from lambdas.shared.store import PROCESSING, UPLOADED, StudyStore

log = logging.getLogger("devstack")
DEFAULT_STATE = REPO / ".devstack"


class LocalStack:
    def __init__(self, model: str | Path, state_dir: Path | None = DEFAULT_STATE, api_port: int = 0,
                 endpoint_port: int = 0, aws_port: int | None = None, snapshot_every_s: float = 30.0):
        self.model = model
        self.state_dir = Path(state_dir) if state_dir else None
        self.api_port, self.endpoint_port, self.snapshot_every_s = api_port, endpoint_port, snapshot_every_s
        self.aws = LocalAws(port=aws_port)
        self.endpoint: EndpointServer | None = None
        self.gateway: Gateway | None = None
        self.state: StateDir | None = None
        self._saved_env = dict(os.environ)
        self._stop = threading.Event()
        self.api_key = self._api_key()

    def _api_key(self) -> str:
        """Kept in the state folder so a restart does not invalidate clients' keys."""
        if not self.state_dir:
            return secrets.token_urlsafe(24)
        path = self.state_dir / "api_key"
        if not path.is_file():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text().strip()

    def start(self) -> "LocalStack":
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        self.endpoint = EndpointServer(self.model, port=self.endpoint_port).start()
        self.aws.start(endpoint_url=self.endpoint.url)
        restored = {}
        if self.state_dir:
            names = self.aws.names
            self.state = StateDir(self.state_dir, names.study_bucket, [names.table, names.idempotency_table])
            self.aws.provision(before_triggers=lambda: restored.update(self.state.restore()))
        else:
            self.aws.provision()
        self.store = StudyStore(boto3.resource("dynamodb").Table(self.aws.names.table))
        predictor = self.endpoint.model_host.predictor
        self.store.set_current_model(predictor.version, source=str(self.model),
                                     metrics=predictor.metadata.get("metrics", {}))
        self._resume_unfinished()
        self.gateway = Gateway(self.aws.api_function, self.api_key, REPO / "web", port=self.api_port).start()
        if self.state and self.snapshot_every_s:
            threading.Thread(target=self._snapshots, name="snapshots", daemon=True).start()
        if restored.get("items"):
            log.info("restored %s objects and %s items from %s", restored["objects"], restored["items"], self.state_dir)
        return self

    def _resume_unfinished(self) -> None:
        """Studies caught mid-flight by the last shutdown are run again."""
        sfn = boto3.client("stepfunctions")
        studies, cursor = [], None
        while True:
            page, cursor = self.store.list_recent(limit=100, cursor=cursor)
            studies += page
            if not cursor:
                break
        for listed in studies:
            if listed["status"] in (UPLOADED, PROCESSING):
                study = self.store.get(listed["study_id"])  # the list holds only its own fields
                payload = {"study_id": study["study_id"], "bucket": self.aws.names.study_bucket, "key": study["upload_key"]}
                try:
                    boto3.client("s3").head_object(Bucket=payload["bucket"], Key=payload["key"])
                except Exception:  # registered but never uploaded: nothing to run
                    continue
                sfn.start_execution(stateMachineArn=self.aws.state_machine_arn, input=json.dumps(payload),
                                    name=f"{study['study_id']}-resume-{int(time.time())}")

    def _snapshots(self) -> None:
        while not self._stop.wait(self.snapshot_every_s):
            try:
                self.state.save()
            except Exception as exc:  # a failed snapshot must not stop the stack
                log.warning("snapshot failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self.state:
            try:
                saved = self.state.save()
                log.info("saved %s objects and %s items to %s", saved["objects"], saved["items"], self.state_dir)
            except Exception as exc:
                log.warning("could not save state: %s", exc)
        for part in (self.gateway, self.endpoint):
            if part:
                part.stop()
        self.aws.stop()
        os.environ.clear()
        os.environ.update(self._saved_env)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def describe(self) -> str:
        web = (REPO / "web" / "index.html").is_file()
        return "\n".join(([f"  web page      {self.gateway.url}/"] if web else []) + [
            f"  REST API      {self.gateway.api_url}   (header x-api-key: {self.api_key})",
            f"  endpoint      {self.endpoint.url}   (model {self.endpoint.model_host.predictor.version})",
            f"  AWS (moto)    {self.aws.url}",
            f"  state         {self.state_dir or 'in memory only'}",
        ])
