"""Configuration from the environment: the same names in AWS (set by the CDK) and in the local stack."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    study_bucket: str
    table_name: str
    endpoint_name: str
    state_machine_arn: str
    event_bus: str
    idempotency_table: str
    max_upload_bytes: int
    presign_expiry_s: int
    retrain_min_feedback: int
    pipeline_name: str

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ.get
        return cls(
            study_bucket=env("STUDY_BUCKET", "discscope-studies"),
            table_name=env("STUDY_TABLE", "discscope-studies"),
            endpoint_name=env("ENDPOINT_NAME", "discscope"),
            state_machine_arn=env("STATE_MACHINE_ARN", ""),
            event_bus=env("EVENT_BUS", "default"),
            idempotency_table=env("IDEMPOTENCY_TABLE", "discscope-idempotency"),
            max_upload_bytes=int(env("MAX_UPLOAD_BYTES", str(512 * 1024**2))),
            # presigned URLs live at most 15 minutes (the API refuses longer settings)
            presign_expiry_s=min(int(env("PRESIGN_EXPIRY_S", "900")), 900),
            retrain_min_feedback=int(env("RETRAIN_MIN_FEEDBACK", "20")),
            pipeline_name=env("PIPELINE_NAME", "discscope-retrain"),
        )
