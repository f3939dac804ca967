"""API + web: the REST API in front of the API Lambda, and the annotation page behind CloudFront.

Two audiences, two REST APIs over the same Lambda and the same routes (the Lambda's resolver sees
identical paths, so no prefix stripping is needed in lambdas/api.py):

- **Clinical API** (`ClinicalApi`): for hospital systems and `discscope analyze`. Every method uses
  IAM authorization: requests are SigV4-signed with the system's IAM role or user, which needs
  `execute-api:Invoke` on this API (the `ClinicalClientPolicy` managed policy grants exactly that).
  The Lambda records the IAM principal as the owner of the studies it creates.
- **Web API** (`WebApi`): for people using the page. Every method requires a Cognito user-pool ID
  token (Hosted UI login, `web/auth.js`). It is reached through the page's own CloudFront
  distribution under `/api/*` (a CloudFront Function strips the prefix), so the page and its API
  share one origin (no CORS), exactly like the local stack (`http://127.0.0.1:8000/api`).

A page never holds AWS credentials, and a clinical system never needs a user account. Both APIs
validate requests (JSON-schema body models, required path parameters), write access logs with the
caller's identity and the request path (which holds the study id) to KMS-encrypted log groups kept
as long as the audit trail, trace with X-Ray, throttle at the stage and sit behind AWS WAF.

The page: `web/` in a private, KMS-encrypted bucket read by CloudFront through origin access
control; `config.js` is generated at deploy time with the Cognito settings and the API path. With
`domain_name` and `certificate_arn` the distribution serves that name with TLSv1.2_2021 at least
(production needs it: the default *.cloudfront.net certificate lets viewers negotiate TLSv1). The
study bucket's CORS rule names exactly the page's origins.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_wafv2 as wafv2
from aws_cdk import custom_resources as cr
from constructs import Construct

from .common import Functions, Settings, access_log_bucket, allow, function_errors_alarm, kms_use, log_group
from .waf import WebAcl
from .inference import InferenceStack
from .storage import StorageStack
from .workflow import common_environment, table_statement

WEB = Path(__file__).resolve().parents[2] / "web"
API_PREFIX = "/api"
STAGE = "v1"
PAGE_GROUP = "clinicians"  # the Cognito group new page users join (studies are owned by a group)
LEVELS = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]

# route -> methods (lambdas/api.py); every one is a Lambda proxy integration
ROUTES = {
    "/studies": ["GET", "POST"],
    "/studies/{study_id}": ["GET"],
    "/studies/{study_id}/corrections": ["POST"],
    "/studies/{study_id}/accept": ["POST"],
    "/studies/{study_id}/retry": ["POST"],
    "/models/current": ["GET"],
}

CREATE_STUDY_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4, title="CreateStudy", type=apigw.JsonSchemaType.OBJECT,
    required=["filename", "size"],
    properties={
        "filename": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1, max_length=255),
        "content_type": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, max_length=255),
        "size": apigw.JsonSchema(type=apigw.JsonSchemaType.INTEGER, minimum=1),
    })
CORRECTIONS_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4, title="Corrections", type=apigw.JsonSchemaType.OBJECT, required=["discs"],
    properties={"discs": apigw.JsonSchema(
        type=apigw.JsonSchemaType.ARRAY, max_items=12,
        items=apigw.JsonSchema(
            type=apigw.JsonSchemaType.OBJECT, required=["box", "level"],
            properties={
                "box": apigw.JsonSchema(type=apigw.JsonSchemaType.ARRAY, min_items=4, max_items=4,
                                        items=apigw.JsonSchema(type=apigw.JsonSchemaType.NUMBER)),
                "level": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, enum=LEVELS),
                "herniated": apigw.JsonSchema(type=apigw.JsonSchemaType.BOOLEAN),
            }))})

# Access log lines: who (IAM principal, or the Cognito user's sub), what (method, path: it holds the
# study id), when, from where, and the outcome.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId", "time": "$context.requestTime", "ip": "$context.identity.sourceIp",
    "method": "$context.httpMethod", "path": "$context.path", "resource": "$context.resourcePath",
    "status": "$context.status", "length": "$context.responseLength", "latencyMs": "$context.responseLatency",
    "iamPrincipal": "$context.identity.userArn", "iamCaller": "$context.identity.caller",
    "cognitoSub": "$context.authorizer.claims.sub", "wafStatus": "$context.waf.status",
}

# CloudFront Function: /api/studies -> /studies on the Web API origin
STRIP_PREFIX = """function handler(event) {
  var request = event.request;
  request.uri = request.uri.replace(/^\\/api(?=\\/|$)/, '') || '/';
  return request;
}"""


class ApiWebStack(cdk.Stack):
    def __init__(self, scope: Construct, cid: str, *, settings: Settings, storage: StorageStack,
                 inference: InferenceStack, **kwargs) -> None:
        super().__init__(scope, cid, **kwargs)
        self.settings = settings
        self.storage = storage

        # --- the API Lambda ---------------------------------------------------------------------
        functions = Functions(self, settings, storage.logs_key,
                              common_environment(settings, storage, inference.endpoint_name))
        self.api_function = functions.create("Api", "lambdas.api.handler", service="api", timeout_s=29, memory=512)
        self.add_stack_dependency(storage)
        bucket = settings.bucket_ref(self, "studies", storage.data_key)
        for statement in (
            # feedback YOLO text; presigned POST of uploads (and a retry's copy of one onto itself);
            # presigned GET of results
            allow(["s3:PutObject"], [bucket.arn_for_objects("feedback/*"), bucket.arn_for_objects("uploads/*")]),
            allow(["s3:GetObject"], [bucket.arn_for_objects("results/*"), bucket.arn_for_objects("uploads/*")]),
            table_statement(storage, ["GetItem", "PutItem", "UpdateItem", "Query"], index=True),
            kms_use(storage.data_key, "s3", "dynamodb"),
            allow(["events:PutEvents"], [f"arn:{self.partition}:events:{self.region}:{self.account}:event-bus/default"],
                  {"StringEquals": {"events:source": "discscope.api"}}),
        ):
            self.api_function.add_to_role_policy(statement)

        # API Gateway writes execution logs through one account-wide role
        cw_role = iam.Role(self, "ApiGatewayCloudWatchRole", assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
                           managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(
                               "service-role/AmazonAPIGatewayPushToCloudWatchLogs")])
        self.api_account = apigw.CfnAccount(self, "ApiGatewayAccount", cloud_watch_role_arn=cw_role.role_arn)

        # --- Cognito for page users ------------------------------------------------------------
        self.user_pool = cognito.UserPool(
            self, "Users", self_sign_up_enabled=False, sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            mfa=cognito.Mfa.REQUIRED, mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(min_length=12, require_digits=True, require_lowercase=True,
                                                   require_uppercase=True, require_symbols=True,
                                                   temp_password_validity=cdk.Duration.days(3)),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY, feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            removal_policy=settings.removal_policy)
        # People own studies through their groups (lambdas/shared/access.py): one to start with.
        cognito.CfnUserPoolGroup(self, "Clinicians", user_pool_id=self.user_pool.user_pool_id, group_name=PAGE_GROUP,
                                 description="page users whose studies are shared within this group")
        prefix = settings.auth_domain_prefix or f"discscope-{self.account}"
        self.domain = self.user_pool.add_domain("HostedUi", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=prefix))
        self.authorizer = apigw.CognitoUserPoolsAuthorizer(self, "PageUsers", cognito_user_pools=[self.user_pool])

        # --- the two REST APIs --------------------------------------------------------------------
        self.clinical_api = self._rest_api("ClinicalApi", "DiscScope API for clinical systems (IAM, SigV4)",
                                           settings.api_rate_limit, settings.api_burst_limit, iam_auth=True)
        self.web_api = self._rest_api("WebApi", "DiscScope API for the annotation page (Cognito)",
                                      settings.web_rate_limit, settings.web_burst_limit, iam_auth=False)
        # What a clinical system's role or user needs: invoke this API's stage, nothing else.
        self.client_policy = iam.ManagedPolicy(
            self, "ClinicalClientPolicy", description="DiscScope clinical API: attach to each clinical system's IAM role",
            statements=[allow(["execute-api:Invoke"], [self.clinical_api.arn_for_execute_api(stage=STAGE)])])

        # AWS WAF on both API stages (one regional web ACL), the Lambda's errors alarmed.
        self.api_acl = WebAcl(self, "ApiAcl", waf_scope="REGIONAL", settings=settings, logs_key=storage.logs_key)
        for api in (self.clinical_api, self.web_api):
            wafv2.CfnWebACLAssociation(self, f"{api.node.id}Waf", web_acl_arn=self.api_acl.arn,
                                       resource_arn=api.deployment_stage.stage_arn)
        self.alarms = [function_errors_alarm(self, self.api_function, storage.alarm_topic)]

        # --- the page ------------------------------------------------------------------------------
        self.access_logs = access_log_bucket(self, "AccessLogs", settings, settings.removal_policy)
        web_key = kms.Key(self, "WebKey", enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.DESTROY,
                          description="DiscScope web page bucket")
        self.web_bucket = s3.Bucket(
            self, "Web", encryption=s3.BucketEncryption.KMS, encryption_key=web_key, bucket_key_enabled=True,
            enforce_ssl=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="web/", removal_policy=cdk.RemovalPolicy.DESTROY,
            lifecycle_rules=[s3.LifecycleRule(id="old-versions", noncurrent_version_expiration=cdk.Duration.days(30))])
        # CloudFront standard logs need a bucket with ACLs (log delivery writes objects with an ACL)
        self.cdn_logs = s3.Bucket(
            self, "CdnLogs", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True, versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, object_ownership=s3.ObjectOwnership.OBJECT_WRITER,
            server_access_logs_bucket=self.access_logs, server_access_logs_prefix="cdn-logs/",
            removal_policy=settings.removal_policy,
            lifecycle_rules=[s3.LifecycleRule(id="expire", expiration=cdk.Duration.days(max(settings.log_retention_days, 1)),
                                              noncurrent_version_expiration=cdk.Duration.days(30))])

        strip = cloudfront.Function(self, "StripApiPrefix", code=cloudfront.FunctionCode.from_inline(STRIP_PREFIX),
                                    runtime=cloudfront.FunctionRuntime.JS_2_0)
        self.cdn_acl_arn = settings.cloudfront_web_acl_arn or self._cloudfront_acl()
        domain = ({"domain_names": [settings.domain_name],
                   "certificate": acm.Certificate.from_certificate_arn(self, "Certificate", settings.certificate_arn),
                   "minimum_protocol_version": cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021}
                  if settings.domain_name else {})
        self.distribution = cloudfront.Distribution(
            self, "Cdn", comment="DiscScope annotation page and its API", web_acl_id=self.cdn_acl_arn, **domain,
            default_root_object="index.html", http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True, log_bucket=self.cdn_logs, log_file_prefix="cloudfront/",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.web_bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS),
            additional_behaviors={f"{API_PREFIX}/*": cloudfront.BehaviorOptions(
                origin=origins.RestApiOrigin(self.web_api),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                function_associations=[cloudfront.FunctionAssociation(
                    function=strip, event_type=cloudfront.FunctionEventType.VIEWER_REQUEST)])})
        self.web_url = f"https://{self.distribution.distribution_domain_name}"
        self.page_origins = [self.web_url, *settings.web_origins]
        self._study_bucket_cors(storage)
        cdk.Annotations.of(self).acknowledge_warning(
            "@aws-cdk/aws-cloudfront-origins:wildcardKeyPolicyForOac",
            "the web key encrypts only the static page files; its policy lets the CloudFront service decrypt for "
            "distributions of this account (aws:SourceArn distribution/*), which avoids the key/bucket/distribution cycle")

        self.client = self.user_pool.add_client(
            "Page", generate_secret=False, prevent_user_existence_errors=True,
            auth_flows=cognito.AuthFlow(user_srp=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE],
                callback_urls=[f"{o}/" for o in self.page_origins] + list(settings.extra_callback_urls),
                logout_urls=[f"{o}/" for o in self.page_origins] + list(settings.extra_callback_urls)),
            id_token_validity=cdk.Duration.hours(1), access_token_validity=cdk.Duration.hours(1),
            refresh_token_validity=cdk.Duration.hours(12), enable_token_revocation=True)

        # config.js, generated at deploy time (tokens resolved by the deployment custom resource)
        config = {"apiUrl": API_PREFIX, "auth": "cognito",
                  "cognito": {"region": self.region, "userPoolId": self.user_pool.user_pool_id,
                              "clientId": self.client.user_pool_client_id,
                              "domain": self.domain.base_url(),
                              "scopes": ["openid", "email", "profile"]}}
        config_js = cdk.Fn.join("", ["window.DISCSCOPE_CONFIG = ", self.to_json_string(config), ";\n"])
        s3deploy.BucketDeployment(
            self, "Page", destination_bucket=self.web_bucket, distribution=self.distribution, distribution_paths=["/*"],
            sources=[s3deploy.Source.asset(str(WEB), exclude=["config.js", "**/__pycache__", ".*"]),
                     s3deploy.Source.data("config.js", config_js)],
            memory_limit=512, log_group=log_group(self, "PageDeploymentLogs", settings, storage.logs_key))

        cdk.CfnOutput(self, "WebUrl", value=f"{self.web_url}/", description="the annotation page")
        cdk.CfnOutput(self, "ClinicalApiUrl", value=self.clinical_api.url, description="REST API for clinical systems (SigV4)")
        cdk.CfnOutput(self, "ClinicalClientPolicyArn", value=self.client_policy.managed_policy_arn,
                      description="attach to each clinical system's IAM role: execute-api:Invoke on the clinical API")
        cdk.CfnOutput(self, "WebApiUrl", value=self.web_api.url, description="REST API for page users (Cognito); the page uses <WebUrl>/api")
        cdk.CfnOutput(self, "UserPoolId", value=self.user_pool.user_pool_id,
                      description="aws cognito-idp admin-create-user --user-pool-id <UserPoolId> --username EMAIL")
        cdk.CfnOutput(self, "LoginDomain", value=self.domain.base_url())

    def _cloudfront_acl(self) -> str:
        """A CLOUDFRONT web ACL in this stack, which CloudFront accepts only from us-east-1: elsewhere,
        deploy one there and pass `-c cloudfront_web_acl_arn=...` (the rule says so at deploy time)."""
        acl = WebAcl(self, "CdnAcl", waf_scope="CLOUDFRONT", settings=self.settings, logs_key=self.storage.logs_key)
        cdk.CfnRule(self, "CloudFrontAclRegion", assertions=[cdk.CfnRuleAssertion(
            assert_=cdk.Fn.condition_equals(cdk.Aws.REGION, "us-east-1"),
            assert_description="CloudFront web ACLs live in us-east-1: deploy this stack there, or create the ACL there "
                               "and pass -c cloudfront_web_acl_arn=<arn> (README, Deploying to AWS)")])
        return acl.arn

    def _study_bucket_cors(self, storage: StorageStack) -> None:
        """The study bucket accepts browser uploads (presigned POST) and artifact reads from the page's
        own origins only; set here because only this stack knows the distribution's domain."""
        bucket = self.settings.bucket_name("studies")
        rules = {"CORSRules": [{"AllowedMethods": ["POST", "GET", "HEAD"], "AllowedOrigins": self.page_origins,
                                "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 3000}]}
        call = cr.AwsSdkCall(service="S3", action="putBucketCors", parameters={"Bucket": bucket, "CORSConfiguration": rules},
                             physical_resource_id=cr.PhysicalResourceId.of(f"{bucket}-cors"))
        self.cors = cr.AwsCustomResource(
            self, "StudyBucketCors", on_create=call, on_update=call, install_latest_aws_sdk=False,
            log_group=log_group(self, "StudyBucketCorsLogs", self.settings, storage.logs_key),
            policy=cr.AwsCustomResourcePolicy.from_statements([allow(["s3:PutBucketCORS"], [
                f"arn:{cdk.Aws.PARTITION}:s3:::{bucket}"])]))

    def _rest_api(self, cid: str, description: str, rate: float, burst: int, iam_auth: bool) -> apigw.RestApi:
        # access logs are audit records: the audit retention, kept when the stack is deleted
        access_logs = logs.LogGroup(self, f"{cid}AccessLogs", retention=self.settings.audit_retention,
                                    encryption_key=self.storage.logs_key, removal_policy=cdk.RemovalPolicy.RETAIN)
        api = apigw.RestApi(
            self, cid, description=description, cloud_watch_role=False,
            endpoint_types=[apigw.EndpointType.REGIONAL],
            deploy_options=apigw.StageOptions(
                stage_name=STAGE, tracing_enabled=True, throttling_rate_limit=rate, throttling_burst_limit=burst,
                logging_level=apigw.MethodLoggingLevel.ERROR, data_trace_enabled=False, metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS))))
        api.node.add_dependency(self.api_account)
        validator = api.add_request_validator(f"{cid}Validator", validate_request_body=True,
                                              validate_request_parameters=True)
        models = {"/studies POST": api.add_model(f"{cid}CreateStudy", content_type="application/json",
                                                 schema=CREATE_STUDY_SCHEMA),
                  "/studies/{study_id}/corrections POST": api.add_model(f"{cid}Corrections",
                                                                        content_type="application/json",
                                                                        schema=CORRECTIONS_SCHEMA)}
        for response_type, code in ((apigw.ResponseType.DEFAULT_4_XX, None), (apigw.ResponseType.DEFAULT_5_XX, None)):
            api.add_gateway_response(f"{cid}{response_type.response_type}", type=response_type, templates={
                "application/json": '{"error_code": "$context.error.responseType", "message": $context.error.messageString}'})
        api.add_gateway_response(f"{cid}BadBody", type=apigw.ResponseType.BAD_REQUEST_BODY, templates={
            "application/json": '{"error_code": "BAD_REQUEST", "message": "$context.error.validationErrorString"}'})

        integration = apigw.LambdaIntegration(self.api_function, proxy=True, allow_test_invoke=False)
        auth = ({"authorization_type": apigw.AuthorizationType.IAM} if iam_auth else
                {"authorizer": self.authorizer, "authorization_type": apigw.AuthorizationType.COGNITO})
        for path, methods in ROUTES.items():
            resource = api.root.resource_for_path(path)
            for method in methods:
                params = {"method.request.path.study_id": True} if "{study_id}" in path else {}
                if path == "/studies" and method == "GET":
                    params = {"method.request.querystring.limit": False, "method.request.querystring.cursor": False}
                model = models.get(f"{path} {method}")
                resource.add_method(method, integration, request_validator=validator, request_parameters=params or None,
                                    request_models={"application/json": model} if model else None, **auth)
        return api
