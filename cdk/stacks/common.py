"""What the stacks share: context settings, the Lambda function factory, IAM statement helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.bundling import lambda_code

DLC_ACCOUNT = "763104351884"  # AWS Deep Learning Containers (most regions; override the URIs elsewhere)
DLC = f"{DLC_ACCOUNT}.dkr.ecr.{{region}}.amazonaws.com"
DEFAULT_IMAGES = {
    "training_image_uri": f"{DLC}/pytorch-training:2.6.0-gpu-py312-cu126-ubuntu22.04-sagemaker",
    "processing_image_uri": f"{DLC}/pytorch-training:2.6.0-cpu-py312-ubuntu22.04-sagemaker",
    "inference_image_uri": f"{DLC}/pytorch-inference:2.6.0-gpu-py312-cu124-ubuntu22.04-sagemaker",
}
# Instance families with local NVMe instance storage: SageMaker refuses an endpoint-config KmsKeyId
# for them (the instance store is encrypted by the Nitro hardware instead).
LOCAL_STORAGE_FAMILIES = ("g4dn", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5", "m5d", "c5d", "r5d", "inf2", "trn1")


def _flag(value, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("false", "0", "no", "off", "")


@dataclass(frozen=True)
class Settings:
    """Context parameters (`cdk deploy -c key=value` or cdk.json "context")."""

    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    endpoint_name: str = "discscope"
    data_capture_percent: int = 100
    retrain_schedule: str = "rate(1 day)"
    retrain_min_feedback: int = 20
    retrain_approval: str = "manual"  # "auto": a candidate that passed CheckImprovement is deployed at once
    pipeline_name: str = "discscope-retrain"
    model_package_group: str = "discscope"
    images: dict = field(default_factory=dict)
    bundle: bool = True
    nag: bool = True
    retain_data: bool = True
    log_retention_days: int = 365
    alarm_email: str = ""
    api_rate_limit: float = 10
    api_burst_limit: int = 20
    web_rate_limit: float = 20
    web_burst_limit: int = 40
    waf_rate_limit: int = 1000  # requests per 5 minutes from one IP address, at each web ACL
    auth_domain_prefix: str = ""
    extra_callback_urls: tuple = ()
    # a custom domain for the page (production): ACM certificate in us-east-1, TLSv1.2_2021
    domain_name: str = ""
    certificate_arn: str = ""
    cloudfront_web_acl_arn: str = ""  # an existing CLOUDFRONT-scope web ACL (outside us-east-1)
    # audit trail: "create" (a trail of this deployment) or "organization" (an organisation trail covers it)
    audit_trail: str = "create"
    audit_retention_days: int = 2192  # six years
    # optional VPC for the SageMaker jobs and endpoint (private subnets with an S3 gateway endpoint)
    sagemaker_subnets: tuple = ()
    sagemaker_security_groups: tuple = ()
    reserved_concurrency: int = 0
    max_upload_bytes: int = 512 * 1024**2
    name_prefix: str = "discscope"

    @classmethod
    def from_app(cls, node) -> "Settings":
        get = node.try_get_context

        def text(key, default):
            value = get(key)
            return default if value in (None, "") else str(value)

        def number(key, default, kind=int):
            value = get(key)
            return default if value in (None, "") else kind(value)

        def words(key, default):
            value = get(key)
            if value in (None, ""):
                return default
            if isinstance(value, (list, tuple)):
                return tuple(value)
            return tuple(v.strip() for v in str(value).split(",") if v.strip())

        images = {k: text(k, v) for k, v in DEFAULT_IMAGES.items()}
        return cls(
            instance_type=text("instance_type", cls.instance_type),
            instance_count=number("instance_count", cls.instance_count),
            endpoint_name=text("endpoint_name", cls.endpoint_name),
            data_capture_percent=number("data_capture_percent", cls.data_capture_percent),
            retrain_schedule=text("retrain_schedule", cls.retrain_schedule),
            retrain_min_feedback=number("retrain_min_feedback", cls.retrain_min_feedback),
            retrain_approval=text("retrain_approval", cls.retrain_approval),
            images=images,
            bundle=_flag(get("bundle"), True),
            nag=_flag(get("nag"), True),
            retain_data=_flag(get("retain_data"), True),
            log_retention_days=number("log_retention_days", cls.log_retention_days),
            alarm_email=text("alarm_email", ""),
            api_rate_limit=number("api_rate_limit", cls.api_rate_limit, float),
            api_burst_limit=number("api_burst_limit", cls.api_burst_limit),
            web_rate_limit=number("web_rate_limit", cls.web_rate_limit, float),
            web_burst_limit=number("web_burst_limit", cls.web_burst_limit),
            waf_rate_limit=number("waf_rate_limit", cls.waf_rate_limit),
            auth_domain_prefix=text("auth_domain_prefix", ""),
            extra_callback_urls=words("extra_callback_urls", ()),
            domain_name=text("domain_name", ""),
            certificate_arn=text("certificate_arn", ""),
            cloudfront_web_acl_arn=text("cloudfront_web_acl_arn", ""),
            audit_trail=text("audit_trail", cls.audit_trail),
            audit_retention_days=number("audit_retention_days", cls.audit_retention_days),
            sagemaker_subnets=words("sagemaker_subnets", ()),
            sagemaker_security_groups=words("sagemaker_security_groups", ()),
            reserved_concurrency=number("reserved_concurrency", 0),
            name_prefix=text("name_prefix", cls.name_prefix),
        ).validate()

    def bucket_name(self, kind: str) -> str:
        """Study and model buckets have names made of pseudo parameters only, so other stacks (and
        their IAM statements and cdk-nag acknowledgements) name them without cross-stack exports."""
        return f"{self.name_prefix}-{kind}-{cdk.Aws.ACCOUNT_ID}-{cdk.Aws.REGION}"

    def object_arn(self, kind: str, pattern: str) -> str:
        return f"arn:{cdk.Aws.PARTITION}:s3:::{self.bucket_name(kind)}/{pattern}"

    def bucket_ref(self, scope: Construct, kind: str, key: kms.IKey) -> s3.IBucket:
        return s3.Bucket.from_bucket_attributes(scope, f"{kind.title()}BucketRef",
                                                bucket_name=self.bucket_name(kind), encryption_key=key)

    def image(self, key: str, region: str) -> str:
        return self.images.get(key, DEFAULT_IMAGES[key]).replace("{region}", region)

    @property
    def kms_on_endpoint_volume(self) -> bool:
        family = self.instance_type.split(".")[1] if self.instance_type.count(".") >= 2 else ""
        return family not in LOCAL_STORAGE_FAMILIES

    def validate(self) -> "Settings":
        if self.audit_trail not in ("create", "organization"):
            raise ValueError(f"audit_trail is 'create' or 'organization', not {self.audit_trail!r}")
        if self.audit_retention_days < 2192:
            raise ValueError("audit_retention_days must be at least 2192 (six years)")
        if bool(self.domain_name) != bool(self.certificate_arn):
            raise ValueError("domain_name and certificate_arn go together (an ACM certificate in us-east-1)")
        if bool(self.sagemaker_subnets) != bool(self.sagemaker_security_groups):
            raise ValueError("sagemaker_subnets and sagemaker_security_groups go together")
        return self

    @property
    def vpc(self) -> bool:
        return bool(self.sagemaker_subnets)

    @property
    def web_origins(self) -> tuple[str, ...]:
        return (f"https://{self.domain_name}",) if self.domain_name else ()

    @property
    def removal_policy(self) -> cdk.RemovalPolicy:
        return cdk.RemovalPolicy.RETAIN if self.retain_data else cdk.RemovalPolicy.DESTROY

    @property
    def retention(self) -> logs.RetentionDays:
        return _retention(self.log_retention_days)

    @property
    def audit_retention(self) -> logs.RetentionDays:
        return _retention(self.audit_retention_days)


def _retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention that keeps `days`."""
    chosen = min((d for d in _RETENTION if d >= days), default=3653)
    return getattr(logs.RetentionDays, _RETENTION[chosen])


_RETENTION = {1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
              60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
              365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS",
              1096: "THREE_YEARS", 1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS",
              2922: "EIGHT_YEARS", 3288: "NINE_YEARS", 3653: "TEN_YEARS"}


# --- IAM helpers -------------------------------------------------------------------------------


def allow(actions: list[str], resources: list[str], conditions: dict | None = None) -> iam.PolicyStatement:
    return iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions)


def kms_use(key: kms.IKey, *services: str, write: bool = True) -> iam.PolicyStatement:
    """Use of the data key through the named services only (s3, dynamodb, sqs, ...)."""
    actions = ["kms:Decrypt", "kms:DescribeKey"] + (["kms:Encrypt", "kms:GenerateDataKey"] if write else [])
    conditions = None
    if services:
        conditions = {"StringEquals": {"kms:ViaService": [f"{s}.{cdk.Aws.REGION}.amazonaws.com" for s in services]}}
    return allow(actions, [key.key_arn], conditions)


# --- functions ---------------------------------------------------------------------------------


class Functions:
    """Creates the project's Lambda functions alike: one code asset, Python 3.12, X-Ray, a KMS
    log group with retention, powertools settings, an optional DLQ for asynchronous invocations."""

    def __init__(self, scope: Construct, settings: Settings, logs_key: kms.IKey, common_env: dict[str, str]):
        self.scope, self.settings, self.logs_key, self.common_env = scope, settings, logs_key, common_env
        self._code: lambda_.Code | None = None

    def code(self) -> lambda_.Code:
        # one Code object per stack (an asset belongs to one stack); the staging (and so the pip
        # run) is shared across stacks by CDK's asset cache
        if self._code is None:
            self._code = lambda_code(install=self.settings.bundle)
        return self._code

    def create(self, cid: str, handler: str, *, service: str, env: dict[str, str] | None = None,
               timeout_s: int = 30, memory: int = 512, dlq: sqs.IQueue | None = None,
               description: str = "") -> lambda_.Function:
        log_group = logs.LogGroup(self.scope, f"{cid}Logs", retention=self.settings.retention,
                                  encryption_key=self.logs_key, removal_policy=cdk.RemovalPolicy.DESTROY)
        # own role: writes to its own log group only (instead of AWSLambdaBasicExecutionRole)
        role = iam.Role(self.scope, f"{cid}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"DiscScope {handler}")
        role.add_to_policy(allow(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group.log_group_arn}"]))
        fn = lambda_.Function(
            self.scope, cid, runtime=lambda_.Runtime.PYTHON_3_12, architecture=lambda_.Architecture.X86_64,
            handler=handler, code=self.code(), role=role, timeout=cdk.Duration.seconds(timeout_s), memory_size=memory,
            tracing=lambda_.Tracing.ACTIVE, log_group=log_group, description=description or handler,
            environment={**self.common_env, "POWERTOOLS_SERVICE_NAME": f"discscope-{service}",
                         "POWERTOOLS_METRICS_NAMESPACE": "DiscScope", **(env or {})},
            dead_letter_queue=dlq, reserved_concurrent_executions=self.settings.reserved_concurrency or None)
        return fn


def access_log_bucket(scope: Construct, cid: str, settings: Settings, removal: cdk.RemovalPolicy) -> s3.Bucket:
    """Target of S3 server access logs: SSE-S3 (SSE-KMS targets are not supported). One per stack, so
    CDK's log-delivery statements name their source buckets (aws:SourceArn) and account."""
    return s3.Bucket(
        scope, cid, encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL, versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, removal_policy=removal,
        lifecycle_rules=[
            s3.LifecycleRule(id="expire-access-logs", expiration=cdk.Duration.days(max(settings.log_retention_days, 1)),
                             noncurrent_version_expiration=cdk.Duration.days(30)),
            s3.LifecycleRule(id="abort-multipart", abort_incomplete_multipart_upload_after=cdk.Duration.days(1)),
        ])


def log_group(scope: Construct, cid: str, settings: Settings, key: kms.IKey) -> logs.LogGroup:
    return logs.LogGroup(scope, cid, retention=settings.retention, encryption_key=key,
                         removal_policy=cdk.RemovalPolicy.DESTROY)


def dead_letter_queue(scope: Construct, cid: str, key: kms.IKey) -> sqs.Queue:
    return sqs.Queue(scope, cid, encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
                     enforce_ssl=True, retention_period=cdk.Duration.days(14))


# --- alarms ------------------------------------------------------------------------------------


def alarm_on(scope: Construct, cid: str, metric: cloudwatch.IMetric, description: str, topic: sns.ITopic,
             threshold: float = 1, periods: int = 1) -> cloudwatch.Alarm:
    """An alarm that notifies the operators' topic when `metric` reaches `threshold`."""
    alarm = cloudwatch.Alarm(scope, cid, metric=metric, threshold=threshold, evaluation_periods=periods,
                             datapoints_to_alarm=periods, alarm_description=description,
                             comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                             treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
    alarm.add_alarm_action(cw_actions.SnsAction(topic))
    return alarm


def function_errors_alarm(scope: Construct, fn: lambda_.Function, topic: sns.ITopic) -> cloudwatch.Alarm:
    return alarm_on(scope, f"{fn.node.id}Errors", fn.metric_errors(period=cdk.Duration.minutes(5), statistic="Sum"),
                    f"{fn.node.id}: the function raised (an unhandled error or a timeout)", topic)


def queue_depth_alarm(scope: Construct, queue: sqs.IQueue, what: str, topic: sns.ITopic) -> cloudwatch.Alarm:
    return alarm_on(scope, f"{queue.node.id}Depth", queue.metric_approximate_number_of_messages_visible(
        period=cdk.Duration.minutes(5), statistic="Maximum"), f"{what}: events that failed every retry wait here", topic)


# --- SageMaker in a VPC ---------------------------------------------------------------------------


def vpc_statements(settings: Settings) -> list[iam.PolicyStatement]:
    """What SageMaker needs, as the job's or model's role, to place network interfaces in the subnets
    (only when a VPC is configured). The Describe calls have no resource-level permissions."""
    if not settings.vpc:
        return []
    region, account, partition = cdk.Aws.REGION, cdk.Aws.ACCOUNT_ID, cdk.Aws.PARTITION
    return [
        allow(["ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets",
               "ec2:DescribeSecurityGroups"], ["*"]),
        allow(["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
               "ec2:DeleteNetworkInterfacePermission"],
              [f"arn:{partition}:ec2:{region}:{account}:network-interface/*"]
              + [f"arn:{partition}:ec2:{region}:{account}:subnet/{s}" for s in settings.sagemaker_subnets]
              + [f"arn:{partition}:ec2:{region}:{account}:security-group/{g}" for g in settings.sagemaker_security_groups]),
    ]
