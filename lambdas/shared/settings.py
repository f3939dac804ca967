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
    retrain_approval: str
    model_bucket: str
    model_package_group: str
    sagemaker_role_arn: str
    endpoint_instance_type: str
    endpoint_instance_count: int
    rollback_alarms: tuple[str, ...]
    data_capture_uri: str
    data_capture_kms_key: str
    endpoint_volume_kms_key: str
    endpoint_read_timeout_s: int
    vpc_subnets: tuple[str, ...]
    vpc_security_groups: tuple[str, ...]

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
            # "manual": a registered candidate waits for a person; "auto": approved when it passed the check
            retrain_approval=env("RETRAIN_APPROVAL", "manual"),
            model_bucket=env("MODEL_BUCKET", "discscope-models"),
            model_package_group=env("MODEL_PACKAGE_GROUP", "discscope"),
            sagemaker_role_arn=env("SAGEMAKER_ROLE_ARN", ""),
            endpoint_instance_type=env("ENDPOINT_INSTANCE_TYPE", "ml.g5.xlarge"),
            endpoint_instance_count=int(env("ENDPOINT_INSTANCE_COUNT", "1")),
            rollback_alarms=_words(env("ROLLBACK_ALARMS", "")),
            data_capture_uri=env("DATA_CAPTURE_URI", ""),
            data_capture_kms_key=env("DATA_CAPTURE_KMS_KEY", ""),
            endpoint_volume_kms_key=env("ENDPOINT_VOLUME_KMS_KEY", ""),
            # SageMaker answers within 60 s or fails; the local CPU endpoint queues studies one at a time
            endpoint_read_timeout_s=int(env("ENDPOINT_READ_TIMEOUT_S", "70")),
            vpc_subnets=_words(env("VPC_SUBNETS", "")),
            vpc_security_groups=_words(env("VPC_SECURITY_GROUPS", "")),
        )


def _words(value: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in value.split(",") if w.strip())
