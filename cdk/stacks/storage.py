"""Storage: the study and model buckets, their access-log bucket, the tables, the KMS keys, the
operators' alarm topic, and the audit trail (CloudTrail data events on the buckets and the table)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_backup as backup
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from .audit import AuditTrail
from .common import Settings, access_log_bucket

# lambdas/shared/store.py: the list index and the attributes it projects
LIST_INDEX = "by_created"
LIST_FIELDS = ["study_id", "status", "filename", "created_at", "updated_at", "error_code", "model_version",
               "needs_review", "max_probability", "herniated", "reviewed_by", "reviewed_at", "feedback_version"]
TTL_ATTRIBUTE = "expires_at"  # store.TTL_ATTRIBUTE: the retrain trigger's event markers expire


class StorageStack(cdk.Stack):
    def __init__(self, scope: Construct, cid: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(scope, cid, **kwargs)
        self.settings = settings
        removal = settings.removal_policy

        # Data key: buckets, tables, queues, topics, data capture. Logs key: CloudWatch Logs only.
        self.data_key = kms.Key(self, "DataKey", enable_key_rotation=True, removal_policy=removal,
                                description="DiscScope data at rest (studies, models, tables, queues)")
        self.logs_key = kms.Key(self, "LogsKey", enable_key_rotation=True, removal_policy=removal,
                                description="DiscScope CloudWatch Logs")
        self.logs_key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                    f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:*"}}))

        self.access_logs = access_log_bucket(self, "AccessLogs", settings, removal)

        # CORS (the page's exact origins) is set by the api+web stack, which knows the distribution's domain.
        self.study_bucket = self._bucket("StudyBucket", settings.bucket_name("studies"), "studies/", removal, lifecycle=[
            s3.LifecycleRule(id="abort-multipart", abort_incomplete_multipart_upload_after=cdk.Duration.days(1)),
            s3.LifecycleRule(id="old-versions", noncurrent_version_expiration=cdk.Duration.days(90)),
            # studies and results are read rarely after review: let S3 move them to cheaper tiers
            s3.LifecycleRule(id="tiering", transitions=[s3.Transition(
                storage_class=s3.StorageClass.INTELLIGENT_TIERING, transition_after=cdk.Duration.days(30))]),
        ])
        self.model_bucket = self._bucket("ModelBucket", settings.bucket_name("models"), "models/", removal, lifecycle=[
            s3.LifecycleRule(id="abort-multipart", abort_incomplete_multipart_upload_after=cdk.Duration.days(1)),
            s3.LifecycleRule(id="old-versions", noncurrent_version_expiration=cdk.Duration.days(90)),
            # endpoint data capture and pipeline intermediates (feedback samples) are working data, not
            # records; models/ (baseline, candidates, their evaluations) never expires: packages point there
            s3.LifecycleRule(id="data-capture", prefix="data-capture/", expiration=cdk.Duration.days(180)),
            s3.LifecycleRule(id="pipeline-work", prefix="pipeline/", expiration=cdk.Duration.days(180)),
        ])

        # One table for studies, feedback, the current model and the retraining bookkeeping.
        self.table = dynamodb.Table(
            self, "StudyTable", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=self.data_key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=TTL_ATTRIBUTE,  # only the retrain trigger's event markers carry it
            deletion_protection=settings.retain_data, removal_policy=removal)
        self.table.add_global_secondary_index(
            index_name=LIST_INDEX,
            partition_key=dynamodb.Attribute(name="gsi1pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="gsi1sk", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.INCLUDE, non_key_attributes=LIST_FIELDS)
        # powertools idempotency records (ingest); short-lived, expired by TTL
        self.idempotency_table = dynamodb.Table(
            self, "IdempotencyTable", partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST, time_to_live_attribute="expiration",
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=self.data_key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            removal_policy=cdk.RemovalPolicy.DESTROY)

        # Daily/weekly/monthly backups of the study table beside PITR (HIPAA: data in a backup plan).
        vault = backup.BackupVault(self, "Vault", encryption_key=self.data_key, removal_policy=removal)
        plan = backup.BackupPlan.daily_weekly_monthly5_year_retention(self, "Backups", vault)
        plan.add_selection("Tables", resources=[backup.BackupResource.from_dynamo_db_table(self.table)])

        # Operators' alarms (every stack's) and the event DLQs: EventBridge and CloudWatch use this key.
        self.ops_key = kms.Key(self, "OpsKey", enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.DESTROY,
                               description="DiscScope alarm topic and event dead-letter queues")
        for service in ("events.amazonaws.com", "cloudwatch.amazonaws.com"):
            self.ops_key.add_to_resource_policy(iam.PolicyStatement(
                principals=[iam.ServicePrincipal(service)], actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"], conditions={"StringEquals": {"aws:SourceAccount": self.account}}))
        self.alarm_topic = sns.Topic(self, "Alarms", master_key=self.ops_key, enforce_ssl=True,
                                     display_name="DiscScope alarms")
        if settings.alarm_email:
            self.alarm_topic.add_subscription(subs.EmailSubscription(settings.alarm_email))

        self.audit = AuditTrail(self, "Audit", settings, [self.study_bucket, self.model_bucket], self.table, self.access_logs) \
            if settings.audit_trail == "create" else None

        for name, value in (("StudyBucketName", self.study_bucket.bucket_name),
                            ("ModelBucketName", self.model_bucket.bucket_name),
                            ("StudyTableName", self.table.table_name)):
            cdk.CfnOutput(self, name, value=value)

    def _bucket(self, cid: str, name: str, log_prefix: str, removal: cdk.RemovalPolicy, lifecycle) -> s3.Bucket:
        return s3.Bucket(
            self, cid, bucket_name=name, encryption=s3.BucketEncryption.KMS, encryption_key=self.data_key, bucket_key_enabled=True,
            enforce_ssl=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=log_prefix, lifecycle_rules=lifecycle, removal_policy=removal)
