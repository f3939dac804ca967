"""cdk-nag: AwsSolutions and HIPAA Security checks on the whole app, and the acknowledged findings.

cdk-nag 3 runs as a policy-validation plugin: an error finding makes synthesis fail
(`<outdir>/validation-report.json` lists what is left). Every acknowledgement below is scoped to
the construct it concerns (a role, a function, a stage, a bucket) and says why the finding does not
apply or what stands in for the control. IAM5 (wildcard) findings are acknowledged one resource
pattern at a time, on the role that holds it, with the reason for that pattern.
"""

from __future__ import annotations

import aws_cdk as core
import cdk_nag
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

AWS = "AwsSolutions::AwsSolutions-"
HIPAA = "HIPAA.Security::HIPAA.Security-"
PARTITION, ACCOUNT, REGION = "<AWS::Partition>", "<AWS::AccountId>", "<AWS::Region>"
SM = f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}"


ACKNOWLEDGED: list[tuple[str, str, str]] = []  # (construct path, rule, reason), for the tests and audits


def ack(scope: IConstruct, rule: str, reason: str) -> None:
    if len(reason) < 30:
        raise ValueError(f"acknowledgement of {rule} on {scope.node.path} needs a specific reason")
    ACKNOWLEDGED.append((scope.node.path, rule, reason))
    core.Validations.of(scope).acknowledge(core.Acknowledgment(id=rule, reason=reason))


def iam5(scope: IConstruct, reasons: dict[str, str]) -> None:
    for finding, reason in reasons.items():
        ack(scope, f"{AWS}IAM5[{finding}]", reason)


def _logical(construct) -> str:
    stack = core.Stack.of(construct)
    return stack.resolve(stack.get_logical_id(construct.node.default_child))


def apply_nag(app: core.App, stacks: dict[str, core.Stack]) -> None:
    core.Validations.of(app).add_plugins(cdk_nag.AwsSolutionsChecks(app), cdk_nag.HIPAASecurityChecks(app))
    settings = stacks["storage"].settings

    def bucket(kind: str, pattern: str) -> str:
        return f"Resource::arn:{PARTITION}:s3:::{settings.name_prefix}-{kind}-{ACCOUNT}-{REGION}/{pattern}"

    objects = {
        "uploads": (bucket("studies", "uploads/*"),
                    "study uploads: objects under uploads/ of the study bucket, keyed by study id at run time"),
        "results": (bucket("studies", "results/*"),
                    "analysis artifacts: objects under results/ of the study bucket, keyed by study id at run time"),
        "feedback": (bucket("studies", "feedback/*"),
                     "YOLO feedback files under feedback/ of the study bucket, one per reviewed study"),
        "models": (bucket("models", "models/*"),
                   "model artifacts under models/ of the model bucket: the baseline and every trained candidate (paths "
                   "made by SageMaker training jobs), read by reference from model packages; not data-capture/ or code/"),
        "results_write": (bucket("studies", "results/*"),
                          "the endpoint writes each study's pictures and mask under results/<study id>/ (the Infer step "
                          "names the prefix per study at run time)"),
    }
    x_ray = ("Resource::*", "xray:PutTraceSegments/PutTelemetryRecords (active tracing) have no resource-level "
                            "permissions; nothing else in this policy uses *")

    # --- project Lambda functions --------------------------------------------------------------
    wf, api_web, mlops, inference = stacks["workflow"], stacks["api_web"], stacks["mlops"], stacks["inference"]
    functions: list[lambda_.Function] = [*wf.functions.values(), api_web.api_function, mlops.retrain_trigger,
                                         mlops.deploy_model]
    for fn in functions:
        ack(fn, f"{AWS}L1", "Python 3.12 is the runtime the bundled wheels are built for (cp312 manylinux, "
                            "cdk/container_code.py PLATFORM_ARGS); a newer runtime is a deliberate change of the bundling "
                            "platform and its pins")
        ack(fn, f"{HIPAA}LambdaInsideVPC", "the functions call only AWS APIs (S3, DynamoDB, SageMaker, Step "
                                           "Functions, EventBridge) over TLS with IAM; no private resources to reach, "
                                           "and a VPC would need NAT or six interface endpoints")
        if not settings.reserved_concurrency:
            ack(fn, f"{HIPAA}LambdaConcurrency", "no reserved concurrency by default: new accounts have a quota of 10 and "
                                                 "reservations must leave 10 unreserved, so the deploy would fail there; "
                                                 "load is bounded by API Gateway stage throttling and the WAF rate rule; "
                                                 "set -c reserved_concurrency=N")
        iam5(fn.role, dict([x_ray]))
    for fn in [*wf.functions.values(), api_web.api_function]:
        if fn is wf.functions["lambdas.ingest.handler"]:
            continue
        ack(fn, f"{HIPAA}LambdaDLQ", "invoked synchronously (Step Functions task or API Gateway proxy): failures go "
                                     "back to the caller (the state machine's Catch -> MarkFailed, or an HTTP 5xx), "
                                     "never to an asynchronous DLQ")
    for fn in wf.functions.values():
        roles_objects = ["uploads"] + (["results"] if fn is wf.functions["lambdas.workflow.infer_handler"] else [])
        if fn is not wf.functions["lambdas.ingest.handler"]:
            iam5(fn.role, dict(objects[k] for k in roles_objects))
    iam5(api_web.api_function.role, dict(objects[k] for k in ("uploads", "results", "feedback")))
    iam5(mlops.retrain_trigger.role, {
        f"Resource::{SM}:pipeline/discscope-retrain/execution/*":
            "DescribePipelineExecution of this pipeline's own executions (ids are made by SageMaker)"})
    iam5(mlops.deploy_model.role, {
        f"Resource::{SM}:model-package/discscope/*": "versions of the one model package group 'discscope'",
        f"Resource::{SM}:model/discscope-*": "Models the deploy function names discscope-<version>-<hash>",
        f"Resource::{SM}:endpoint-config/discscope-*": "EndpointConfigs the deploy function names discscope-<version>-<hash>",
    })

    # --- the state machine -----------------------------------------------------------------------
    sm_reasons = {x_ray[0]: "X-Ray tracing and CloudWatch Logs delivery (logs:*LogDelivery, xray:Put*) have no "
                            "resource-level permissions"}
    for fn in [wf.functions[h] for h in ("lambdas.workflow.validate_handler", "lambdas.workflow.infer_handler",
                                         "lambdas.workflow.persist_handler", "lambdas.workflow.mark_failed_handler")]:
        sm_reasons[f"Resource::<{_logical(fn)}.Arn>:*"] = "versions and aliases of the task's own function (CDK grantInvoke)"
    iam5(wf.state_machine.role, sm_reasons)

    # --- SageMaker roles ---------------------------------------------------------------------------
    ecr = (f"Resource::arn:{PARTITION}:ecr:{REGION}:763104351884:repository/pytorch-*",
           "pull of the AWS Deep Learning Container PyTorch images (AWS's account 763104351884)")
    sm_logs = (f"Resource::arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/*",
               "SageMaker containers write to log groups named by SageMaker under /aws/sagemaker/")
    star = ("Resource::*", "ecr:GetAuthorizationToken and cloudwatch:PutMetricData (limited by the cloudwatch:namespace "
                           "condition to /aws/sagemaker/*) have no resource-level permissions"
            + ("; nor have the ec2:Describe* calls SageMaker makes to place network interfaces in the configured VPC"
               if settings.vpc else ""))
    iam5(inference.execution_role, dict([ecr, sm_logs, star, objects["uploads"], objects["models"], objects["results_write"], (
        bucket("models", "data-capture/*"), "endpoint data capture files under data-capture/ (names made by SageMaker)")]
        + _vpc_reasons(settings)))
    iam5(mlops.pipeline_role, dict([ecr, sm_logs, star, objects["uploads"], objects["results"], objects["feedback"]] + [
        (bucket("models", f"{p}/*"), f"pipeline {what} under {p}/ of the model bucket")
        for p, what in (("code", "code"), ("datasets", "training and evaluation data"),
                        ("models", "models: production (read), candidates and their evaluations (written per execution)"),
                        ("models/candidates", "trained candidates (SageMaker names the job folders)"),
                        ("models/evaluations", "evaluation reports, one folder per execution"),
                        ("pipeline", "working data of a run (feedback samples, paths made per execution)"))]
        + _vpc_reasons(settings) + [
        (f"Resource::{SM}:processing-job/pipelines-*", "processing jobs the pipeline starts (SageMaker names them pipelines-*)"),
        (f"Resource::{SM}:training-job/pipelines-*", "training jobs the pipeline starts (SageMaker names them pipelines-*)"),
        (f"Resource::{SM}:model-package/discscope/*", "RegisterModel creates versions in the one group 'discscope'"),
    ] + [(f"Resource::{SM}:{kind}/*", "experiment and lineage entities SageMaker Pipelines records for each run "
                                        "(names made by SageMaker)")
         for kind in ("experiment", "experiment-trial", "experiment-trial-component", "action", "artifact", "context")]))

    # --- inline policies, managed policies --------------------------------------------------------
    for stack in (s for s in stacks.values() if s is not stacks["storage"]):  # storage has no role policies
        ack(stack, f"{HIPAA}IAMNoInlinePolicy", "CDK writes each role's statements as a policy attached to that one "
                                                 "role only (AWS::IAM::Policy); a customer-managed policy would hold the "
                                                 "same least-privilege statements but outlive and be shareable beyond the role")
    ack(api_web.node.find_child("ApiGatewayCloudWatchRole"),
        f"{AWS}IAM4[Policy::arn:{PARTITION}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
        "the account-level role API Gateway uses to write execution/access logs; AWS's documented policy for it")
    storage = stacks["storage"]
    ack(storage.node.find_child("Backups"),
        f"{AWS}IAM4[Policy::arn:{PARTITION}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup]",
        "AWS Backup's service role for the backup selection of the study table; AWS's documented policy for it")

    iam5(api_web.client_policy, {
        f"Resource::arn:{PARTITION}:execute-api:{REGION}:{ACCOUNT}:<{_logical(api_web.clinical_api)}>/v1/*/*":
            "execute-api:Invoke on every method and path of the clinical API's v1 stage: those routes are the API a "
            "clinical system uses; the Lambda scopes each call to the caller's own studies"})

    # --- CDK's own singleton handlers (BucketDeployment, S3 notifications, AwsCustomResource) ---------
    for stack in stacks.values():
        for child in stack.node.children:
            cid = child.node.id
            if cid.startswith("Custom::CDKBucketDeployment"):
                _bucket_deployment(child, settings, stack)
            elif cid.startswith("BucketNotificationsHandler"):
                _cdk_handler(child, "the S3 -> ingest notification", old_runtime=False, hipaa=False)
            elif cid.startswith("AWS679f53fac002430cb0da5b7982bd2287"):  # AwsCustomResource's handler
                _cdk_handler(child, "the study bucket's CORS rule (one s3:PutBucketCORS call on that bucket)", old_runtime=False)

    # --- data stores -------------------------------------------------------------------------------
    audit_buckets = [storage.audit.bucket] if storage.audit else []
    for b in (storage.study_bucket, storage.model_bucket, storage.access_logs, api_web.web_bucket, api_web.cdn_logs,
              api_web.access_logs, *audit_buckets):
        ack(b, f"{HIPAA}S3BucketReplicationEnabled", "single-region deployment: the bucket is versioned (overwrites and "
                                                      "deletes are recoverable); cross-region replication needs a second "
                                                      "region's bucket and key, a disaster-recovery decision left to the deployer")
    for logs_bucket in (storage.access_logs, api_web.access_logs):
        ack(logs_bucket, f"{HIPAA}S3DefaultEncryptionKMS", "S3 server access logs can only be delivered to a bucket "
                                                           "with SSE-S3 (SSE-KMS destinations are not supported)")
    ack(api_web.cdn_logs, f"{HIPAA}S3DefaultEncryptionKMS", "CloudFront standard logs (request metadata: paths with "
                                                             "opaque study ids, no images or names) go to an ACL-enabled "
                                                             "SSE-S3 bucket, as CloudFront's log delivery requires without a "
                                                             "KMS key policy for it")
    if storage.audit:
        ack(storage.audit.trail, f"{HIPAA}CloudTrailCloudWatchLogsEnabled",
            "the trail delivers to its own KMS-encrypted, versioned bucket that is never deleted with the stack and "
            "keeps files for audit_retention_days, with log file validation; CloudWatch Logs would hold a second copy")
    ack(storage.idempotency_table, f"{HIPAA}DynamoDBInBackupPlan", "idempotency records of S3 events expire by TTL "
                                                                    "after 24 h; nothing in it needs restoring (PITR is on)")

    # --- endpoint ----------------------------------------------------------------------------------
    if not settings.kms_on_endpoint_volume:
        ack(inference.node.find_child("EndpointConfig"), f"{HIPAA}SageMakerEndpointConfigurationKMSKeyConfigured",
            f"{settings.instance_type} has NVMe instance storage, for which SageMaker refuses a KmsKeyId; that "
            "storage is encrypted at rest by the Nitro hardware; data capture is KMS-encrypted")

    # --- API Gateway, CloudFront -------------------------------------------------------------------
    for api in (api_web.clinical_api, api_web.web_api):
        stage = api.deployment_stage
        ack(stage, f"{HIPAA}APIGWCacheEnabledAndEncrypted", "responses carry per-user presigned URLs and live "
                                                             "study status that must not be cached")
        ack(stage, f"{HIPAA}APIGWSSLEnabled", "client certificates authenticate API Gateway to HTTP backends; the "
                                              "only backend is a Lambda proxy integration (IAM-invoked)")
    for method in api_web.clinical_api.methods:
        ack(method, f"{AWS}COG4", "clinical systems are machines: every clinical API method uses IAM authorization "
                                  "(SigV4 with the system's role); Cognito user pools are for people, on the Web API")
    cdn = api_web.distribution
    ack(cdn, f"{AWS}CFR1", "no geo restriction: clinicians may work from anywhere; the page is static and every API "
                           "call behind it needs a Cognito login (and passes WAF)")
    if not settings.domain_name:
        ack(cdn, f"{AWS}CFR4", "no custom domain configured: on the default *.cloudfront.net certificate CloudFront "
                               "lets viewers negotiate TLSv1; production sets domain_name and certificate_arn, which "
                               "selects TLSv1.2_2021 (README, custom domain)")


def _vpc_reasons(settings) -> list[tuple[str, str]]:
    """The VPC statements (common.vpc_statements) exist only when a VPC is configured."""
    if not settings.vpc:
        return []
    return [(f"Resource::arn:{PARTITION}:ec2:{REGION}:{ACCOUNT}:network-interface/*",
             "the network interfaces SageMaker creates in the configured subnets (ids made by EC2)")]


def _cdk_handler(handler, what: str, old_runtime: bool = True, hipaa: bool = True) -> None:
    """aws-cdk-lib's own Lambda handlers: what cdk-nag finds on each (a test checks that every
    acknowledgement here suppresses a finding)."""
    ack(handler, f"{AWS}IAM4[Policy::arn:{PARTITION}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        f"aws-cdk-lib's own handler for {what}: its role comes with the basic execution policy")
    if old_runtime:
        ack(handler, f"{AWS}L1", f"aws-cdk-lib chooses the runtime of its handler for {what}")
    if hipaa:
        for rule, reason in (("LambdaConcurrency", "deploy-time custom resource, invoked only by CloudFormation"),
                             ("LambdaDLQ", "invoked synchronously by CloudFormation, which reports its failures"),
                             ("LambdaInsideVPC", "deploy-time custom resource calling only S3/CloudFront APIs")):
            ack(handler, f"{HIPAA}{rule}", reason)


def _bucket_deployment(handler, settings, stack: core.Stack) -> None:
    _cdk_handler(handler, "BucketDeployment")
    reasons = {
        f"Resource::arn:{PARTITION}:s3:::cdk-hnb659fds-assets-{ACCOUNT}-{REGION}/*": "reads the deployment's source assets from the CDK bootstrap bucket",
        "Action::s3:GetObject*": "aws-cdk-lib's BucketDeployment grant (read source assets)",
        "Action::s3:GetBucket*": "aws-cdk-lib's BucketDeployment grant (read source assets)",
        "Action::s3:List*": "aws-cdk-lib's BucketDeployment grant (list source and destination)",
        "Action::s3:DeleteObject*": "aws-cdk-lib's BucketDeployment grant (prune the destination prefix)",
        "Action::s3:Abort*": "aws-cdk-lib's BucketDeployment grant (abort failed multipart copies)",
        "Action::kms:GenerateDataKey*": "aws-cdk-lib's BucketDeployment grant (write to the KMS-encrypted destination)",
        "Action::kms:ReEncrypt*": "aws-cdk-lib's BucketDeployment grant (write to the KMS-encrypted destination)",
    }
    web = stack.node.try_find_child("Web")
    if web is not None:  # the page: its bucket, and the CloudFront invalidation after each deployment
        reasons[f"Resource::<{_logical(web)}.Arn>/*"] = "writes the web page files to its bucket"
        reasons["Resource::*"] = ("aws-cdk-lib's BucketDeployment handler invalidates the distribution's cache after "
                                  "a deployment; cloudfront:CreateInvalidation has no resource-level permission there")
    else:  # the baseline model (inference) or the pipeline code (mlops)
        reasons[f"Resource::arn:{PARTITION}:s3:::{settings.name_prefix}-models-{ACCOUNT}-{REGION}/*"] = \
            "writes the baseline model / pipeline code under its prefix of the model bucket"
    iam5(handler, reasons)
