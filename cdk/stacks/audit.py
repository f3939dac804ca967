"""The audit trail: who read or changed which study, model or table item, kept for years.

A CloudTrail trail (all regions, management events, log file validation) with data events on the
study and model buckets' objects and on the study table, delivered to its own KMS-encrypted bucket
that is always retained and expires files only after `audit_retention_days` (six years by
default). Deployments under an organisation trail set `audit_trail=organization` instead; that
trail must then record the same data events (README, "Audit").
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .common import Settings


class AuditTrail(Construct):
    def __init__(self, scope: Construct, cid: str, settings: Settings, buckets: list[s3.IBucket],
                 table: dynamodb.ITable, access_logs: s3.IBucket) -> None:
        super().__init__(scope, cid)
        stack = cdk.Stack.of(self)
        self.trail_name = f"{settings.name_prefix}-audit"
        trail_arn = f"arn:{stack.partition}:cloudtrail:{stack.region}:{stack.account}:trail/{self.trail_name}"
        source = {"StringEquals": {"aws:SourceArn": trail_arn}}

        self.key = kms.Key(self, "Key", enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.RETAIN,
                           description="DiscScope audit trail")
        self.key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")], actions=["kms:GenerateDataKey*"],
            resources=["*"], conditions={**source, "StringLike": {
                "kms:EncryptionContext:aws:cloudtrail:arn": f"arn:{stack.partition}:cloudtrail:*:{stack.account}:trail/*"}}))
        self.key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")], actions=["kms:DescribeKey"], resources=["*"],
            conditions=source))

        # The record itself: never deleted with the stack, files expire after the retention period.
        self.bucket = s3.Bucket(
            self, "Bucket", encryption=s3.BucketEncryption.KMS, encryption_key=self.key, bucket_key_enabled=True,
            enforce_ssl=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, removal_policy=cdk.RemovalPolicy.RETAIN,
            server_access_logs_bucket=access_logs, server_access_logs_prefix="audit/",
            lifecycle_rules=[s3.LifecycleRule(id="audit-retention", expiration=cdk.Duration.days(settings.audit_retention_days),
                                              noncurrent_version_expiration=cdk.Duration.days(settings.audit_retention_days))])
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")], actions=["s3:GetBucketAcl"],
            resources=[self.bucket.bucket_arn], conditions=source))
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")], actions=["s3:PutObject"],
            resources=[self.bucket.arn_for_objects(f"AWSLogs/{stack.account}/*")],
            conditions={"StringEquals": {"aws:SourceArn": trail_arn, "s3:x-amz-acl": "bucket-owner-full-control"}}))

        objects = [f"{b.bucket_arn}/" for b in buckets]
        self.trail = cloudtrail.CfnTrail(
            self, "Trail", trail_name=self.trail_name, is_logging=True, s3_bucket_name=self.bucket.bucket_name,
            kms_key_id=self.key.key_arn, enable_log_file_validation=True, is_multi_region_trail=True,
            include_global_service_events=True,
            advanced_event_selectors=[
                cloudtrail.CfnTrail.AdvancedEventSelectorProperty(name="Management events", field_selectors=[
                    _field("eventCategory", equals=["Management"])]),
                cloudtrail.CfnTrail.AdvancedEventSelectorProperty(name="Study and model objects", field_selectors=[
                    _field("eventCategory", equals=["Data"]), _field("resources.type", equals=["AWS::S3::Object"]),
                    _field("resources.ARN", starts_with=objects)]),
                cloudtrail.CfnTrail.AdvancedEventSelectorProperty(name="Study table items", field_selectors=[
                    _field("eventCategory", equals=["Data"]), _field("resources.type", equals=["AWS::DynamoDB::Table"]),
                    _field("resources.ARN", equals=[table.table_arn])]),
            ])
        self.trail.node.add_dependency(self.bucket.policy)
        self.trail.node.add_dependency(self.key)
        cdk.CfnOutput(scope, "AuditBucketName", value=self.bucket.bucket_name)


def _field(field: str, equals: list[str] | None = None, starts_with: list[str] | None = None):
    return cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(field=field, equal_to=equals, starts_with=starts_with)
