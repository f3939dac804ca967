"""The CDK app: one synthesis of all five stacks (no pip: context bundle=false), checked with
aws_cdk.assertions, plus cdk-nag (AwsSolutions + HIPAA Security) with zero unacknowledged findings,
and the local pip bundling on a tiny requirements file (skipped offline)."""

from __future__ import annotations

import json
import os
import re
import socket
import tarfile
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
cdk = pytest.importorskip("aws_cdk")
from aws_cdk.assertions import Match, Template  # noqa: E402

from cdk.app import build  # noqa: E402
from cdk.bundling import bundle_lambdas, lambda_code, model_artifact  # noqa: E402
from cdk.stacks.common import Settings  # noqa: E402
from cdk.stacks.inference import InferenceStack  # noqa: E402
from cdk.stacks.mlops import PIPELINE_DEFINITION, PLACEHOLDERS  # noqa: E402
from cdk.stacks.storage import StorageStack  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]
HANDLERS = ["lambdas.api.handler", "lambdas.ingest.handler", "lambdas.workflow.validate_handler",
            "lambdas.workflow.infer_handler", "lambdas.workflow.persist_handler", "lambdas.workflow.mark_failed_handler",
            "lambdas.retrain_trigger.handler", "lambdas.deploy_model.handler"]


def make_app(outdir: Path, **context) -> cdk.App:
    return cdk.App(context={**CONTEXT, "bundle": "false", **context}, outdir=str(outdir))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("cdk.out")
    app = make_app(out)
    stacks = build(app)
    assembly = app.synth()  # raises ValidationFailed on any unacknowledged cdk-nag error
    return {"out": out, "stacks": stacks, "assembly": assembly,
            "templates": {name: Template.from_stack(stack) for name, stack in stacks.items()}}


@pytest.fixture(scope="module")
def t(synth):
    return synth["templates"]


def resources(template: Template, kind: str) -> dict:
    return template.find_resources(kind)


def one(template: Template, kind: str, props: dict | None = None) -> dict:
    found = template.find_resources(kind, {"Properties": props} if props else None)
    assert len(found) == 1, f"{kind}: {len(found)} match"
    return next(iter(found.values()))


def all_templates_json(synth) -> str:
    return json.dumps({n: tpl.to_json() for n, tpl in synth["templates"].items()})


# --- cdk-nag -------------------------------------------------------------------------------------


def test_cdk_nag_has_no_unacknowledged_findings(synth):
    report = synth["out"] / "validation-report.json"
    violations = []
    if report.exists():
        data = json.loads(report.read_text())
        violations = [(v["ruleName"], c["constructPath"]) for r in data.get("pluginReports", [])
                      for v in r.get("violations", []) for c in v.get("violatingConstructs", [])]
    assert violations == []


def test_acknowledgements_have_specific_reasons(synth):
    from cdk.nag import ACKNOWLEDGED
    mine = [a for a in ACKNOWLEDGED if a[0].startswith("DiscScope-")]
    assert mine
    for path, rule, reason in mine:
        assert rule.startswith(("AwsSolutions::AwsSolutions-", "HIPAA.Security::HIPAA.Security-"))
        assert len(reason) >= 30, (path, rule)
    # never one blanket acknowledgement on the whole app
    assert not any(path in ("", "/") for path, _, _ in mine)
    # the rule families acknowledged are the ones documented in the README
    rules = {rule.split("::")[1].split("[")[0] for _, rule, _ in mine}
    assert "AwsSolutions-IAM5" in rules and "HIPAA.Security-LambdaInsideVPC" in rules


def test_no_sagemaker_full_access_anywhere(synth):
    assert "AmazonSageMakerFullAccess" not in all_templates_json(synth)
    for tpl in synth["templates"].values():
        for role in resources(tpl, "AWS::IAM::Role").values():
            for arn in role["Properties"].get("ManagedPolicyArns", []):
                assert "SageMaker" not in json.dumps(arn)


# --- storage -------------------------------------------------------------------------------------


def test_buckets_kms_tls_private_lifecycle_logged(t):
    s = t["storage"]
    buckets = resources(s, "AWS::S3::Bucket")
    data = {k: v for k, v in buckets.items() if "BucketName" in v["Properties"]}
    assert len(data) == 2
    for logical, bucket in data.items():
        p = bucket["Properties"]
        rule = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert "KMSMasterKeyID" in rule["ServerSideEncryptionByDefault"]
        assert p["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert p["LifecycleConfiguration"]["Rules"]
        assert p["LoggingConfiguration"]["DestinationBucketName"]
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}
    policies = resources(s, "AWS::S3::BucketPolicy")
    tls_only = [p for p in policies.values() if any(
        st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for st in p["Properties"]["PolicyDocument"]["Statement"])]
    assert len(tls_only) == 3  # studies, models, access logs


def test_tables_with_pitr_and_index(t):
    s = t["storage"]
    s.has_resource_properties("AWS::DynamoDB::Table", {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": Match.object_like({"SSEEnabled": True, "SSEType": "KMS"}),
        "GlobalSecondaryIndexes": [Match.object_like({"IndexName": "by_created"})]})
    s.has_resource_properties("AWS::DynamoDB::Table", {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}})


# --- inference -----------------------------------------------------------------------------------


def test_endpoint_gpu_and_data_capture(t):
    i = t["inference"]
    config = one(i, "AWS::SageMaker::EndpointConfig")["Properties"]
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.g5.xlarge"
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == 100
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    assert "KmsKeyId" in capture
    assert "KmsKeyId" not in config  # g5 has instance storage: SageMaker refuses a volume key
    i.has_resource_properties("AWS::SageMaker::Endpoint", {"EndpointName": "discscope"})
    model = one(i, "AWS::SageMaker::Model")["Properties"]["PrimaryContainer"]
    assert "pytorch-inference" in json.dumps(model["Image"])
    assert "models/production/model.tar.gz" in json.dumps(model["ModelDataUrl"])


def test_instance_type_from_context(tmp_path):
    app = make_app(tmp_path, instance_type="ml.m5.xlarge", nag="false")
    settings = Settings.from_app(app.node)
    storage = StorageStack(app, "S", settings=settings)
    inference = InferenceStack(app, "I", settings=settings, storage=storage)
    config = one(Template.from_stack(inference), "AWS::SageMaker::EndpointConfig")["Properties"]
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.xlarge"
    assert "KmsKeyId" in config  # no instance store: the ML volume is KMS-encrypted


def test_model_artifact_matches_pack_layout(tmp_path):
    out = model_artifact(out_dir=tmp_path / "a")
    with tarfile.open(out / "model.tar.gz") as tar:
        names = set(tar.getnames())
        requirements = tar.extractfile("code/requirements.txt").read().decode()
    assert {"model.pt", "metadata.json", "code/inference.py", "code/requirements.txt",
            "code/discscope/__init__.py", "code/discscope/artifact.py"} <= names
    assert not any("__pycache__" in n for n in names)
    assert "SimpleITK" in requirements
    again = model_artifact(out_dir=tmp_path / "b")
    assert (out / "model.tar.gz").read_bytes() == (again / "model.tar.gz").read_bytes()  # deterministic


# --- workflow ------------------------------------------------------------------------------------


def test_every_lambda_handler_and_runtime(t):
    found = {}
    for tpl in t.values():
        for fn in resources(tpl, "AWS::Lambda::Function").values():
            p = fn["Properties"]
            if str(p.get("Handler", "")).startswith("lambdas."):
                found[p["Handler"]] = p
    assert sorted(found) == sorted(HANDLERS)
    for p in found.values():
        assert p["Runtime"] == "python3.12"
        assert p["TracingConfig"] == {"Mode": "Active"}
        env = p["Environment"]["Variables"]
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "DiscScope"
        for name in ("STUDY_BUCKET", "STUDY_TABLE", "ENDPOINT_NAME", "EVENT_BUS", "IDEMPOTENCY_TABLE",
                     "MAX_UPLOAD_BYTES", "PRESIGN_EXPIRY_S", "RETRAIN_MIN_FEEDBACK", "PIPELINE_NAME"):
            assert name in env
    assert "STATE_MACHINE_ARN" in found["lambdas.ingest.handler"]["Environment"]["Variables"]
    deploy = found["lambdas.deploy_model.handler"]["Environment"]["Variables"]
    for name in ("MODEL_BUCKET", "MODEL_PACKAGE_GROUP", "SAGEMAKER_ROLE_ARN", "ENDPOINT_INSTANCE_TYPE",
                 "ROLLBACK_ALARMS", "DATA_CAPTURE_URI", "DATA_CAPTURE_KMS_KEY"):
        assert name in deploy
    assert deploy["ENDPOINT_INSTANCE_TYPE"] == "ml.g5.xlarge"


def test_state_machine_definition_logging_tracing(t):
    w = t["workflow"]
    sm = one(w, "AWS::StepFunctions::StateMachine")["Properties"]
    definition = json.dumps(sm["DefinitionString"])
    asl = json.loads((REPO / "step_functions" / "study_workflow.asl.json").read_text())
    for state in ("Validate", "Infer", "Persist", "MarkFailed"):
        assert asl["States"][state]["Resource"] in definition
    subs = sm["DefinitionSubstitutions"]
    functions = resources(w, "AWS::Lambda::Function")
    for key, handler in (("ValidateFunctionArn", "validate_handler"), ("InferFunctionArn", "infer_handler"),
                         ("PersistFunctionArn", "persist_handler"), ("MarkFailedFunctionArn", "mark_failed_handler")):
        logical = subs[key]["Fn::GetAtt"][0]
        assert functions[logical]["Properties"]["Handler"] == f"lambdas.workflow.{handler}"
    assert sm["TracingConfiguration"] == {"Enabled": True}
    assert sm["LoggingConfiguration"]["Level"] == "ALL"
    assert sm["LoggingConfiguration"]["Destinations"]


def test_s3_notification_to_ingest_and_dlqs(t):
    w = t["workflow"]
    notification = one(w, "Custom::S3BucketNotifications")["Properties"]["NotificationConfiguration"]
    config = notification["LambdaFunctionConfigurations"][0]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "uploads/"}]
    ingest = [k for k, v in resources(w, "AWS::Lambda::Function").items()
              if v["Properties"].get("Handler") == "lambdas.ingest.handler"][0]
    assert config["LambdaFunctionArn"] == {"Fn::GetAtt": [ingest, "Arn"]}
    fn = resources(w, "AWS::Lambda::Function")[ingest]["Properties"]
    assert "TargetArn" in fn["DeadLetterConfig"]
    for tpl in (w, t["mlops"]):
        for q in resources(tpl, "AWS::SQS::Queue").values():
            assert q["Properties"]["KmsMasterKeyId"]


def test_least_privilege_statements(t):
    def statements(tpl):
        out = []
        for pol in resources(tpl, "AWS::IAM::Policy").values():
            out += pol["Properties"]["PolicyDocument"]["Statement"]
        return out

    def actions(st):
        a = st["Action"]
        return [a] if isinstance(a, str) else a

    everything = [st for tpl in t.values() for st in statements(tpl)]
    for st in everything:
        assert "sagemaker:*" not in actions(st) and "s3:*" not in actions(st) and "dynamodb:*" not in actions(st)
    wf = statements(t["workflow"])
    assert any("sagemaker:InvokeEndpoint" in actions(st) and "endpoint/discscope" in json.dumps(st["Resource"])
               for st in wf)
    assert any("states:StartExecution" in actions(st) for st in wf)
    api = statements(t["api_web"])
    assert any("events:PutEvents" in actions(st) and st.get("Condition") for st in api)
    ml = statements(t["mlops"])
    pass_role = [st for st in ml if "iam:PassRole" in actions(st)]
    assert pass_role and all(st["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com"
                             for st in pass_role)
    assert any("sagemaker:StartPipelineExecution" in actions(st) for st in ml)
    assert any("sagemaker:UpdateEndpoint" in actions(st) for st in ml)


# --- api + web -----------------------------------------------------------------------------------


def test_api_keys_cognito_validation_logs_throttling(t):
    a = t["api_web"]
    assert len(resources(a, "AWS::ApiGateway::RestApi")) == 2
    a.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    a.has_resource_properties("AWS::ApiGateway::UsagePlan", {
        "Throttle": Match.object_like({"RateLimit": Match.any_value(), "BurstLimit": Match.any_value()}),
        "Quota": Match.object_like({"Period": "DAY"})})
    a.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    a.has_resource_properties("AWS::ApiGateway::Authorizer", {"Type": "COGNITO_USER_POOLS"})
    assert len(resources(a, "AWS::ApiGateway::RequestValidator")) == 2
    methods = [m["Properties"] for m in resources(a, "AWS::ApiGateway::Method").values()
               if m["Properties"]["HttpMethod"] != "OPTIONS"]
    assert len(methods) == 12  # six routes on each API
    keyed = [m for m in methods if m.get("ApiKeyRequired")]
    cognito = [m for m in methods if m.get("AuthorizationType") == "COGNITO_USER_POOLS"]
    assert len(keyed) == 6 and len(cognito) == 6
    assert all(m.get("RequestValidatorId") for m in methods)
    assert all(m["Integration"]["Type"] == "AWS_PROXY" for m in methods)
    for stage in resources(a, "AWS::ApiGateway::Stage").values():
        p = stage["Properties"]
        assert p["AccessLogSetting"]["DestinationArn"]
        assert p["TracingEnabled"] is True
        assert p["MethodSettings"][0]["ThrottlingRateLimit"] > 0
    paths = {r["Properties"]["PathPart"] for r in resources(a, "AWS::ApiGateway::Resource").values()}
    assert {"studies", "{study_id}", "corrections", "accept", "models", "current"} <= paths


def test_cloudfront_oac_private_bucket_config(t, synth):
    a = t["api_web"]
    dist = one(a, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    s3_origin = [o for o in dist["Origins"] if "S3OriginConfig" in o][0]
    assert s3_origin["OriginAccessControlId"]
    assert s3_origin["S3OriginConfig"]["OriginAccessIdentity"] == ""
    assert dist["CacheBehaviors"][0]["PathPattern"] == "/api/*"
    assert dist["Logging"]["Bucket"]
    a.resource_count_is("AWS::CloudFront::OriginAccessControl", 1)
    web = [b for b in resources(a, "AWS::S3::Bucket").values() if "WebsiteConfiguration" not in b["Properties"]]
    for bucket in web:
        assert bucket["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    deployment = [d for d in resources(a, "Custom::CDKBucketDeployment").values()]
    text = json.dumps(deployment)
    assert "window.DISCSCOPE_CONFIG = " in text and "userPoolId" in text and '\\"apiUrl\\":\\"/api\\"' in text
    index = (REPO / "web" / "index.html").read_text()
    assert index.index("config.js") < index.index("auth.js") < index.index("app.js")


# --- mlops ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not PIPELINE_DEFINITION.is_file(), reason="sagemaker/pipeline_definition.json not generated yet")
def test_pipeline_definition_embedded_with_placeholders_filled(t):
    m = t["mlops"]
    pipeline = one(m, "AWS::SageMaker::Pipeline")["Properties"]
    assert pipeline["PipelineName"] == "discscope-retrain"
    body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    assert json.loads(body) == json.loads(PIPELINE_DEFINITION.read_text())
    used = set(re.findall(r"\$\{([^}]+)\}", body))
    assert used - set(variables) <= {"AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix"}
    assert set(variables) == set(PLACEHOLDERS) & used | (set(variables) - used)
    assert variables["ModelPackageGroupName"] == "discscope"
    assert variables["PipelineRoleArn"]["Fn::GetAtt"][0] == pipeline["RoleArn"]["Fn::GetAtt"][0]
    for key in ("ProcessingImageUri", "TrainingImageUri", "InferenceImageUri"):
        assert "763104351884" in json.dumps(variables[key])
    m.has_resource_properties("AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": "discscope"})


def test_eventbridge_rules_and_patterns(t):
    m = t["mlops"]
    rules = [r["Properties"] for r in resources(m, "AWS::Events::Rule").values()]
    patterns = [r.get("EventPattern") for r in rules]
    assert {"source": ["discscope.api"], "detail-type": ["FeedbackSaved"]} in patterns
    assert any(r.get("ScheduleExpression") == "rate(1 day)" for r in rules)
    pipeline = [p for p in patterns if p and p.get("detail-type") == [
        "SageMaker Model Building Pipeline Execution Status Change"]][0]
    assert pipeline["source"] == ["aws.sagemaker"] and "pipeline/discscope-retrain" in json.dumps(pipeline["detail"])
    approved = [p for p in patterns if p and p.get("detail-type") == ["SageMaker Model Package State Change"]][0]
    assert approved["detail"] == {"ModelPackageGroupName": ["discscope"], "ModelApprovalStatus": ["Approved"]}
    functions = resources(m, "AWS::Lambda::Function")
    handler_of = {k: v["Properties"].get("Handler") for k, v in functions.items()}
    for rule in rules:
        target = rule["Targets"][0]
        assert target["DeadLetterConfig"]["Arn"] and target["RetryPolicy"]
        handler = handler_of[target["Arn"]["Fn::GetAtt"][0]]
        if rule.get("EventPattern", {}).get("detail-type", [""])[0].startswith("SageMaker Model Package"):
            assert handler == "lambdas.deploy_model.handler"
        elif "Endpoint" not in json.dumps(rule.get("EventPattern", {})):
            assert handler == "lambdas.retrain_trigger.handler"


def test_rollback_alarms_are_the_deploy_lambdas(t):
    m = t["mlops"]
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in resources(m, "AWS::CloudWatch::Alarm").values()}
    deploy = [f["Properties"] for f in resources(m, "AWS::Lambda::Function").values()
              if f["Properties"].get("Handler") == "lambdas.deploy_model.handler"][0]
    names = deploy["Environment"]["Variables"]["ROLLBACK_ALARMS"].split(",")
    assert names and set(names) == set(alarms)
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert {"Name": "EndpointName", "Value": "discscope"} in alarm["Dimensions"]
        assert alarm["AlarmActions"]


# --- bundling ------------------------------------------------------------------------------------


def _online() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _online(), reason="PyPI is not reachable")
def test_local_bundling_installs_for_lambda_and_hash_follows_requirements(tmp_path):
    src = tmp_path / "lambdas"
    (src / "shared").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "shared" / "__init__.py").write_text("")
    (src / "api.py").write_text("def handler(event, context):\n    return {}\n")
    (src / "requirements.txt").write_text("six==1.16.0\n")
    out = bundle_lambdas(tmp_path / "out", src)
    assert (out / "six.py").is_file() and (out / "lambdas" / "api.py").is_file()
    assert not list(out.rglob("*.pyc"))

    def asset_hash(requirements: str) -> str:
        (src / "requirements.txt").write_text(requirements)
        app = cdk.App(outdir=str(tmp_path / f"o{abs(hash(requirements))}"))
        stack = cdk.Stack(app, "B")
        from aws_cdk import aws_lambda as lambda_
        lambda_.Function(stack, "F", runtime=lambda_.Runtime.PYTHON_3_12, handler="lambdas.api.handler",
                         code=lambda_code(source=src))
        fn = next(iter(Template.from_stack(stack).find_resources("AWS::Lambda::Function").values()))
        return fn["Properties"]["Code"]["S3Key"]

    assert asset_hash("six==1.16.0\n") != asset_hash("six==1.17.0\n")
