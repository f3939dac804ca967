"""The CDK app: one synthesis of all five stacks (no pip: context bundle=false), checked with
aws_cdk.assertions, plus cdk-nag (AwsSolutions + HIPAA Security) with zero unacknowledged findings,
and the local pip bundling on a tiny requirements file (skipped offline)."""

from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

import pytest
from online import pypi_reachable

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
    from cdk.nag import ACKNOWLEDGED

    ACKNOWLEDGED.clear()  # the record is per synthesis
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


def test_every_acknowledgement_suppresses_a_finding(synth):
    """No acknowledgement for something the code does not do: each one, at its construct, matches a
    finding cdk-nag reported there and suppressed."""
    from cdk.nag import ACKNOWLEDGED

    report = json.loads((synth["out"] / "validation-report.json").read_text())
    suppressed = {(v["acknowledgedAt"], v["acknowledgedId"]) for r in report["pluginReports"]
                  for v in r.get("suppressedViolations", [])}
    mine = {(path, rule) for path, rule, _ in ACKNOWLEDGED if path.startswith("DiscScope-")}
    assert mine and mine <= suppressed, sorted(mine - suppressed)


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
    assert not any("CorsConfiguration" in b["Properties"] for b in data.values())  # set by api_web: exact origins
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
    assert len(tls_only) == 4  # studies, models, access logs, audit


def test_log_delivery_only_from_our_buckets_in_our_account(t):
    """S3 server access logs: each delivery statement names its source bucket and this account."""
    delivery = [st for tpl in t.values() for policy in resources(tpl, "AWS::S3::BucketPolicy").values()
                for st in policy["Properties"]["PolicyDocument"]["Statement"]
                if st.get("Principal", {}).get("Service") == "logging.s3.amazonaws.com"]
    assert len(delivery) >= 5  # studies, models, audit; web page, CDN logs
    for st in delivery:
        assert st["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        assert st["Condition"]["ArnLike"]["aws:SourceArn"]


def test_tables_with_pitr_and_index(t):
    s = t["storage"]
    s.has_resource_properties("AWS::DynamoDB::Table", {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": Match.object_like({"SSEEnabled": True, "SSEType": "KMS"}),
        "GlobalSecondaryIndexes": [Match.object_like({"IndexName": "by_created"})]})
    from lambdas.shared.store import LIST_FIELDS

    table = [v for v in resources(s, "AWS::DynamoDB::Table").values() if v["Properties"].get("GlobalSecondaryIndexes")][0]
    projected = table["Properties"]["GlobalSecondaryIndexes"][0]["Projection"]["NonKeyAttributes"]
    assert sorted(projected) == sorted(LIST_FIELDS)  # the worklist reads only what the index projects
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
    out = model_artifact(out_dir=tmp_path / "a", install=False)
    with tarfile.open(out / "model.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"model.pt", "metadata.json", "code/inference.py", "code/vendored.py",
            "code/discscope/__init__.py", "code/discscope/artifact.py"} <= names
    assert "code/requirements.txt" not in names  # the serving container would pip-install it at start
    assert not any("__pycache__" in n for n in names)
    again = model_artifact(out_dir=tmp_path / "b", install=False)
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
                 "ROLLBACK_ALARMS", "DATA_CAPTURE_URI", "DATA_CAPTURE_KMS_KEY", "ENDPOINT_VOLUME_KMS_KEY"):
        assert name in deploy
    assert deploy["ENDPOINT_INSTANCE_TYPE"] == "ml.g5.xlarge"
    assert deploy["ENDPOINT_VOLUME_KMS_KEY"] == ""  # g5 has NVMe instance storage: no volume key, as in the inference stack


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


def flat(value) -> str:
    """A CloudFormation value as text: pseudo parameters, refs and imports in <...>."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return json.dumps([flat(v) for v in value])
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<{value['Fn::GetAtt'][0]}.{value['Fn::GetAtt'][1]}>"
    if "Fn::ImportValue" in value:
        return f"<import:{flat(value['Fn::ImportValue'])}>"
    if "Fn::Join" in value:
        return value["Fn::Join"][0].join(flat(v) for v in value["Fn::Join"][1])
    raise AssertionError(f"unexpected value {value}")


def _actions(statement) -> list[str]:
    a = statement["Action"]
    return [a] if isinstance(a, str) else a


def _resources(statement) -> list[str]:
    r = statement["Resource"]
    return [flat(x) for x in (r if isinstance(r, list) else [r])]


P, A, R = "<AWS::Partition>", "<AWS::AccountId>", "<AWS::Region>"
STUDIES, MODELS = f"arn:{P}:s3:::discscope-studies-{A}-{R}/", f"arn:{P}:s3:::discscope-models-{A}-{R}/"
SM = f"arn:{P}:sagemaker:{R}:{A}:"
TABLE = r"<import:DiscScope-Storage:ExportsOutputFnGetAttStudyTable\w+Arn\w+>"
DATA_KEY = r"<import:DiscScope-Storage:ExportsOutputFnGetAttDataKey\w+Arn\w+>"
OPS_KEY = r"<import:DiscScope-Storage:ExportsOutputFnGetAttOpsKey\w+Arn\w+>"
OWN_LOGS = r"<\w+Logs\w+\.Arn>"
DLC = f"arn:{P}:ecr:{R}:763104351884:repository/pytorch-\\*"
SM_LOGS = f"arn:{P}:logs:{R}:{A}:log-group:/aws/sagemaker/\\*"
# actions AWS gives no resource-level permission: the only ones that may name "*"
NO_RESOURCE = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
FUNCTION_BASE = {"logs:CreateLogStream": [OWN_LOGS], "logs:PutLogEvents": [OWN_LOGS],
                 "xray:PutTraceSegments": [r"\*"], "xray:PutTelemetryRecords": [r"\*"]}
TASK_BASE = FUNCTION_BASE | {"s3:GetObject": [re.escape(STUDIES + "uploads/*")],
                             "dynamodb:GetItem": [TABLE], "dynamodb:UpdateItem": [TABLE],
                             "kms:Decrypt": [DATA_KEY], "kms:DescribeKey": [DATA_KEY], "kms:Encrypt": [DATA_KEY],
                             "kms:GenerateDataKey": [DATA_KEY]}
KMS_WRITE = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey")
CONTAINER = {"ecr:GetAuthorizationToken": [r"\*"], "ecr:BatchCheckLayerAvailability": [DLC], "ecr:BatchGetImage": [DLC],
             "ecr:GetDownloadUrlForLayer": [DLC], "cloudwatch:PutMetricData": [r"\*"],
             **{f"logs:{a}": [SM_LOGS] for a in ("CreateLogGroup", "CreateLogStream", "PutLogEvents", "DescribeLogStreams")}}
# role (logical id prefix) -> action -> allowed resources (regular expressions on the flattened ARN)
EXPECTED_RESOURCES = {
    "ValidateRole": TASK_BASE, "PersistRole": TASK_BASE, "MarkFailedRole": TASK_BASE,
    "InferRole": TASK_BASE | {"s3:PutObject": [re.escape(STUDIES + "results/*")],
                              "sagemaker:InvokeEndpoint": [re.escape(SM + "endpoint/discscope")]},
    "IngestRole": FUNCTION_BASE | {**{f"dynamodb:{a}": [TABLE, r"<import:DiscScope-Storage:ExportsOutputFnGetAttIdempotencyTable\w+Arn\w+>"]
                                      for a in ("GetItem", "PutItem", "UpdateItem", "DeleteItem")},
                                   **{a: [DATA_KEY] for a in KMS_WRITE},
                                   "states:StartExecution": [r"<StudyWorkflow\w+>"], "sqs:SendMessage": [r"<IngestDLQ\w+\.Arn>"]},
    "ApiRole": FUNCTION_BASE | {"s3:PutObject": [re.escape(STUDIES + "feedback/*"), re.escape(STUDIES + "uploads/*")],
                                # results: presigned GETs; uploads: a retry copies the upload onto itself
                                "s3:GetObject": [re.escape(STUDIES + "results/*"), re.escape(STUDIES + "uploads/*")],
                                **{f"dynamodb:{a}": [TABLE, TABLE + "/index/by_created"] for a in ("GetItem", "PutItem", "UpdateItem", "Query")},
                                **{a: [DATA_KEY] for a in KMS_WRITE},
                                "events:PutEvents": [re.escape(f"arn:{P}:events:{R}:{A}:event-bus/default")]},
    "RetrainTriggerRole": FUNCTION_BASE | {**{f"dynamodb:{a}": [TABLE] for a in ("GetItem", "UpdateItem", "PutItem")},
                                           **{a: [DATA_KEY, OPS_KEY] for a in KMS_WRITE},
                                           "sagemaker:StartPipelineExecution": [re.escape(SM + "pipeline/discscope-retrain")],
                                           "sagemaker:ListPipelineExecutions": [re.escape(SM + "pipeline/discscope-retrain")],
                                           "sagemaker:DescribePipelineExecution": [re.escape(SM + "pipeline/discscope-retrain/execution/*")],
                                           "sqs:SendMessage": [r"<RetrainTriggerDLQ\w+\.Arn>"]},
    "DeployModelRole": FUNCTION_BASE | {
        "sagemaker:DescribeModelPackage": [re.escape(SM + "model-package/discscope/*")],
        "sagemaker:CreateModel": [re.escape(SM + "model/discscope-*")], "sagemaker:AddTags": [re.escape(SM + "model/discscope-*")],
        "sagemaker:CreateEndpointConfig": [re.escape(SM + "endpoint-config/discscope-*")],
        "sagemaker:DescribeEndpointConfig": [re.escape(SM + "endpoint-config/discscope-*")],
        # SageMaker authorises UpdateEndpoint on the endpoint and on the config it switches to
        "sagemaker:UpdateEndpoint": [re.escape(SM + "endpoint/discscope"), re.escape(SM + "endpoint-config/discscope-*")],
        "sagemaker:DescribeEndpoint": [re.escape(SM + "endpoint/discscope")],
        "iam:PassRole": [r"<import:DiscScope-Inference:ExportsOutputFnGetAttExecutionRole\w+Arn\w+>"],
        "cloudwatch:DescribeAlarms": [r"<Endpoint(5xx|Latency)\w+\.Arn>"],
        **{f"dynamodb:{a}": [TABLE] for a in ("GetItem", "PutItem", "DeleteItem")},
        **{a: [DATA_KEY, OPS_KEY] for a in KMS_WRITE}, "kms:CreateGrant": [DATA_KEY],
        "sqs:SendMessage": [r"<DeployModelDLQ\w+\.Arn>"]},
    "ExecutionRole": CONTAINER | {
        "s3:GetObject": [re.escape(MODELS + "models/*"), re.escape(STUDIES + "uploads/*")],  # never data-capture/
        "s3:PutObject": [re.escape(STUDIES + "results/*"), re.escape(MODELS + "data-capture/*")],
        **{a: [DATA_KEY] for a in KMS_WRITE}},
    "PipelineRole": CONTAINER | {
        "s3:GetObject": [re.escape(MODELS + f"{p}/*") for p in ("code", "datasets", "models", "pipeline")]
                        + [re.escape(STUDIES + f"{p}/*") for p in ("feedback", "uploads", "results")],
        "s3:PutObject": [re.escape(MODELS + f"{p}/*") for p in ("pipeline", "models/candidates", "models/evaluations")],
        "s3:ListBucket": [re.escape(MODELS[:-1]), re.escape(STUDIES[:-1])],
        **{a: [DATA_KEY] for a in KMS_WRITE + ("kms:CreateGrant",)},
        **{f"sagemaker:{a}": [re.escape(SM + "processing-job/pipelines-*"), re.escape(SM + "training-job/pipelines-*"),
                              re.escape(SM + "model-package/discscope/*"), re.escape(SM + "model-package-group/discscope")]
           + [re.escape(SM + f"{k}/*") for k in ("experiment", "experiment-trial", "experiment-trial-component",
                                                 "action", "artifact", "context")]
           for a in ("CreateProcessingJob", "DescribeProcessingJob", "StopProcessingJob", "CreateTrainingJob",
                     "DescribeTrainingJob", "StopTrainingJob", "AddTags", "CreateModelPackage", "DescribeModelPackage",
                     "DescribeModelPackageGroup", "CreateExperiment", "DescribeExperiment", "CreateTrial", "DescribeTrial",
                     "CreateTrialComponent", "AssociateTrialComponent", "AddAssociation", "CreateAction", "CreateArtifact",
                     "CreateContext", "DescribeAction", "DescribeArtifact", "DescribeContext", "QueryLineage")},
        "iam:PassRole": [r"<PipelineRole\w+\.Arn>"]},
}


def test_every_statement_names_only_the_resources_its_role_needs(t):
    """Each IAM statement of the project's roles, action by action: its resources must be the ones
    that role needs (a bucket prefix, a table, a key, a named SageMaker resource), never more."""
    seen = set()
    for tpl in t.values():
        for policy in resources(tpl, "AWS::IAM::Policy").values():
            for role in policy["Properties"]["Roles"]:
                name = role["Ref"]
                spec = next((v for k, v in EXPECTED_RESOURCES.items() if name.startswith(k)), None)
                if spec is None:
                    continue  # aws-cdk-lib's own handlers (acknowledged one by one in cdk/nag.py)
                seen.add(next(k for k in EXPECTED_RESOURCES if name.startswith(k)))
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    for action in _actions(statement):
                        assert action in spec, f"{name}: unexpected action {action}"
                        for resource in _resources(statement):
                            assert resource != "*" or action in NO_RESOURCE, f"{name}: {action} on *"
                            assert any(re.fullmatch(p, resource) for p in spec[action]), f"{name}: {action} on {resource}"
                    if any(a.startswith("kms:") for a in _actions(statement)):
                        assert statement.get("Condition"), f"{name}: KMS use without a ViaService/grant condition"
    assert seen == set(EXPECTED_RESOURCES)


def test_least_privilege_statements(t):
    def statements(tpl):
        out = []
        for pol in resources(tpl, "AWS::IAM::Policy").values():
            out += pol["Properties"]["PolicyDocument"]["Statement"]
        return out

    everything = [st for tpl in t.values() for st in statements(tpl)]
    for st in everything:
        assert "sagemaker:*" not in _actions(st) and "s3:*" not in _actions(st) and "dynamodb:*" not in _actions(st)
    api = statements(t["api_web"])
    assert any("events:PutEvents" in _actions(st) and st.get("Condition") for st in api)
    ml = statements(t["mlops"])
    pass_role = [st for st in ml if "iam:PassRole" in _actions(st)]
    assert pass_role and all(st["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com"
                             for st in pass_role)
    metrics = [st for tpl in t.values() for st in statements(tpl) if "cloudwatch:PutMetricData" in _actions(st)]
    assert metrics and all(st["Condition"]["StringLike"]["cloudwatch:namespace"] == ["/aws/sagemaker/*"] for st in metrics)


# --- api + web -----------------------------------------------------------------------------------


def test_iam_for_systems_cognito_for_people_validation_logs_throttling(t):
    a = t["api_web"]
    assert len(resources(a, "AWS::ApiGateway::RestApi")) == 2
    for kind in ("AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::UsagePlanKey"):
        a.resource_count_is(kind, 0)  # API keys are not authentication
    a.has_resource_properties("AWS::ApiGateway::Authorizer", {"Type": "COGNITO_USER_POOLS"})
    assert len(resources(a, "AWS::ApiGateway::RequestValidator")) == 2
    methods = [m["Properties"] for m in resources(a, "AWS::ApiGateway::Method").values()
               if m["Properties"]["HttpMethod"] != "OPTIONS"]
    assert len(methods) == 14  # seven routes on each API
    iam = [m for m in methods if m.get("AuthorizationType") == "AWS_IAM"]
    cognito = [m for m in methods if m.get("AuthorizationType") == "COGNITO_USER_POOLS"]
    assert len(iam) == 7 and len(cognito) == 7
    assert not any(m.get("ApiKeyRequired") for m in methods)
    assert all(m.get("RequestValidatorId") for m in methods)
    assert all(m["Integration"]["Type"] == "AWS_PROXY" for m in methods)
    for stage in resources(a, "AWS::ApiGateway::Stage").values():
        p = stage["Properties"]
        assert p["AccessLogSetting"]["DestinationArn"]
        assert p["TracingEnabled"] is True
        assert p["MethodSettings"][0]["ThrottlingRateLimit"] > 0
    paths = {r["Properties"]["PathPart"] for r in resources(a, "AWS::ApiGateway::Resource").values()}
    assert {"studies", "{study_id}", "corrections", "accept", "models", "current"} <= paths
    a.has_resource_properties("AWS::Cognito::UserPoolGroup", {"GroupName": "clinicians"})


def test_clinical_client_policy_invokes_the_clinical_api_only(t):
    a = t["api_web"]
    [policy] = resources(a, "AWS::IAM::ManagedPolicy").values()
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    clinical = [k for k, v in resources(a, "AWS::ApiGateway::RestApi").items() if "IAM" in v["Properties"]["Description"]]
    text = flat(statement["Resource"])
    assert text == f"arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<{clinical[0]}>/v1/*/*"


def test_access_logs_name_the_caller_and_study_and_outlive_the_stack(t):
    a = t["api_web"]
    groups = {k: v for k, v in resources(a, "AWS::Logs::LogGroup").items() if "AccessLogs" in k}
    assert len(groups) == 2
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] >= 2192
        assert group["DeletionPolicy"] == "Retain" and group["Properties"]["KmsKeyId"]
    for stage in resources(a, "AWS::ApiGateway::Stage").values():
        fields = json.loads(stage["Properties"]["AccessLogSetting"]["Format"])
        assert fields["iamPrincipal"] == "$context.identity.userArn"  # clinical systems
        assert fields["cognitoSub"] == "$context.authorizer.claims.sub"  # people
        assert fields["path"] == "$context.path"  # /v1/studies/{study id}/...
        assert {"requestId", "time", "ip", "status"} <= set(fields)


def test_waf_on_both_api_stages_and_cloudfront(t):
    a = t["api_web"]
    acls = {v["Properties"]["Scope"]: v["Properties"] for v in resources(a, "AWS::WAFv2::WebACL").values()}
    assert set(acls) == {"REGIONAL", "CLOUDFRONT"}
    for acl in acls.values():
        groups = {r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in acl["Rules"] if "ManagedRuleGroupStatement" in r["Statement"]}
        assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesAmazonIpReputationList"} <= groups
        [rate] = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
        assert rate["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP" and "Block" in rate["Action"]
    associations = [v["Properties"] for v in resources(a, "AWS::WAFv2::WebACLAssociation").values()]
    stages = {k for k, v in resources(a, "AWS::ApiGateway::Stage").items()}
    assert len(associations) == 2 and all("stages/" in json.dumps(x["ResourceArn"]) for x in associations)
    assert len(stages) == 2
    dist = one(a, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    assert dist["WebACLId"]["Fn::GetAtt"][1] == "Arn"
    rule = a.to_json()["Rules"]["CloudFrontAclRegion"]["Assertions"][0]
    assert rule["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}
    for config in resources(a, "AWS::WAFv2::LoggingConfiguration").values():
        redacted = {f["SingleHeader"]["Name"] for f in config["Properties"]["RedactedFields"]}
        assert {"authorization", "x-amz-security-token"} <= redacted


def test_study_bucket_cors_names_the_page_origin_only(t):
    a = t["api_web"]
    [cors] = [v for v in a.find_resources("Custom::AWS").values()]
    text = json.dumps(cors["Properties"]["Create"])
    assert "putBucketCors" in text and "cloudfront.net" not in text.replace("DomainName", "")
    assert "Cdn" in text  # the distribution's own domain, resolved at deploy time
    assert '"*"' not in text.split("AllowedOrigins")[1].split("]")[0]


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


def test_no_lifecycle_rule_expires_models(t):
    s = t["storage"]
    model_bucket = [b for b in resources(s, "AWS::S3::Bucket").values()
                    if "discscope-models" in json.dumps(b["Properties"].get("BucketName", ""))][0]
    for rule in model_bucket["Properties"]["LifecycleConfiguration"]["Rules"]:
        if "ExpirationInDays" in rule:
            assert rule.get("Prefix") in ("data-capture/", "pipeline/"), rule
    definition = json.loads(one(t["mlops"], "AWS::SageMaker::Pipeline")["Properties"]["PipelineDefinition"][
        "PipelineDefinitionBody"]["Fn::Sub"][0])
    steps = {step["Name"]: step for step in definition["Steps"]}
    assert steps["TrainClassifier"]["Arguments"]["OutputDataConfig"]["S3OutputPath"] == "s3://${ModelBucket}/models/candidates/"
    evaluation = steps["Evaluate"]["Arguments"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert evaluation["Std:Join"]["Values"][0] == "s3://${ModelBucket}/models/evaluations"


def test_sagemaker_jobs_encrypted_and_isolated(t):
    pipeline = one(t["mlops"], "AWS::SageMaker::Pipeline")["Properties"]
    body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    assert variables["DataKeyArn"]["Fn::ImportValue"]  # the storage stack's data key
    steps = {step["Name"]: step["Arguments"] for step in json.loads(body)["Steps"]}
    for name in ("PreprocessFeedback", "Evaluate"):
        args = steps[name]
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == "${DataKeyArn}"
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == "${DataKeyArn}"
        assert args["AppSpecification"]["ContainerEntrypoint"][0] == "python3"  # no pip at start
    assert steps["Evaluate"]["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert steps["PreprocessFeedback"]["NetworkConfig"]["EnableNetworkIsolation"] is False  # reads studies from S3
    train = steps["TrainClassifier"]
    assert train["EnableNetworkIsolation"] is True
    assert train["OutputDataConfig"]["KmsKeyId"] == train["ResourceConfig"]["VolumeKmsKeyId"] == "${DataKeyArn}"
    model = one(t["inference"], "AWS::SageMaker::Model")["Properties"]
    assert not {"SAGEMAKER_MODEL_SERVER_TIMEOUT", "TS_MAX_RESPONSE_SIZE"} & set(model["PrimaryContainer"]["Environment"])
    assert "VpcConfig" not in model


def test_optional_vpc_reaches_every_sagemaker_job_and_model(tmp_path):
    subnets, groups = "subnet-0123456789abcdef0,subnet-0123456789abcdef1", "sg-0123456789abcdef0"
    app = make_app(tmp_path, sagemaker_subnets=subnets, sagemaker_security_groups=groups, nag="false")
    stacks = build(app)
    vpc = {"Subnets": subnets.split(","), "SecurityGroupIds": [groups]}
    model = one(Template.from_stack(stacks["inference"]), "AWS::SageMaker::Model")["Properties"]
    assert model["VpcConfig"] == vpc
    mlops = Template.from_stack(stacks["mlops"])
    body = json.loads(one(mlops, "AWS::SageMaker::Pipeline")["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0])
    for step in body["Steps"]:
        if step["Type"] == "Processing":
            assert step["Arguments"]["NetworkConfig"]["VpcConfig"] == vpc
        elif step["Type"] == "Training":
            assert step["Arguments"]["VpcConfig"] == vpc
    deploy = [f["Properties"] for f in resources(mlops, "AWS::Lambda::Function").values()
              if f["Properties"].get("Handler") == "lambdas.deploy_model.handler"][0]["Environment"]["Variables"]
    assert deploy["VPC_SUBNETS"] == subnets and deploy["VPC_SECURITY_GROUPS"] == groups
    roles = json.dumps([p for p in resources(mlops, "AWS::IAM::Policy").values()])
    assert "ec2:CreateNetworkInterface" in roles and "subnet/subnet-0123456789abcdef0" in roles


def test_custom_domain_gets_tls12_2021(tmp_path):
    app = make_app(tmp_path, domain_name="discscope.example.org", nag="false",
                   certificate_arn="arn:aws:acm:us-east-1:123456789012:certificate/0000")
    stacks = build(app)
    a = Template.from_stack(stacks["api_web"])
    dist = one(a, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    assert dist["Aliases"] == ["discscope.example.org"]
    assert dist["ViewerCertificate"]["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert dist["ViewerCertificate"]["SslSupportMethod"] == "sni-only"
    assert "https://discscope.example.org" in json.dumps(a.find_resources("Custom::AWS"))
    client = one(a, "AWS::Cognito::UserPoolClient")["Properties"]
    assert "https://discscope.example.org/" in client["CallbackURLs"]


def test_audit_trail_records_data_events_for_years(t, tmp_path):
    s = t["storage"]
    trail = one(s, "AWS::CloudTrail::Trail")["Properties"]
    assert trail["EnableLogFileValidation"] and trail["IsMultiRegionTrail"] and trail["KMSKeyId"]
    selectors = {sel["Name"]: {f["Field"]: f for f in sel["FieldSelectors"]} for sel in trail["AdvancedEventSelectors"]}
    assert selectors["Study and model objects"]["resources.type"]["Equals"] == ["AWS::S3::Object"]
    assert len(selectors["Study and model objects"]["resources.ARN"]["StartsWith"]) == 2
    assert selectors["Study table items"]["resources.type"]["Equals"] == ["AWS::DynamoDB::Table"]
    [bucket] = [b for k, b in resources(s, "AWS::S3::Bucket").items() if k.startswith("AuditBucket")]
    assert bucket["DeletionPolicy"] == "Retain"
    [rule] = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == 2192
    # an organisation trail instead: none here; the retention is configurable, never under six years
    app = make_app(tmp_path, audit_trail="organization", audit_retention_days="3000", nag="false")
    stacks = build(app)
    Template.from_stack(stacks["storage"]).resource_count_is("AWS::CloudTrail::Trail", 0)
    with pytest.raises(ValueError, match="six years"):
        Settings.from_app(make_app(tmp_path / "x", audit_retention_days="365").node)


def test_operators_are_alarmed(t):
    topic_refs = set()
    alarms = [a["Properties"] for tpl in t.values() for a in resources(tpl, "AWS::CloudWatch::Alarm").values()]
    for alarm in alarms:
        topic_refs.add(json.dumps(alarm["AlarmActions"]))
    assert len(topic_refs) == 1  # one operators' topic (the storage stack's)
    errors = [a for a in alarms if a.get("MetricName") == "Errors" and a.get("Namespace") == "AWS/Lambda"]
    assert len(errors) == len(HANDLERS)  # every project function
    depth = [a for a in alarms if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"]
    assert len(depth) == 3  # ingest, retrain-trigger and deploy DLQs
    workflow = [a for a in alarms if any(m.get("Expression") == "failed + timedout + aborted" for m in a.get("Metrics", []))]
    assert len(workflow) == 1


def test_dlq_writers_may_use_the_queue_key(t):
    m = t["mlops"]
    queues = {k: v["Properties"]["KmsMasterKeyId"] for k, v in resources(m, "AWS::SQS::Queue").items()}
    assert len(queues) == 2 and len({json.dumps(v) for v in queues.values()}) == 1
    key = json.dumps(next(iter(queues.values())))
    for handler in ("lambdas.retrain_trigger.handler", "lambdas.deploy_model.handler"):
        role = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in resources(m, "AWS::Lambda::Function").values()
                if f["Properties"].get("Handler") == handler][0]
        statements = [st for p in resources(m, "AWS::IAM::Policy").values()
                      if {"Ref": role} in p["Properties"]["Roles"] for st in p["Properties"]["PolicyDocument"]["Statement"]]
        kms = [st for st in statements if "kms:GenerateDataKey" in _actions(st) and json.dumps(st["Resource"]) == key]
        assert kms and kms[0]["Condition"]["StringEquals"]["kms:ViaService"]


def test_rollback_alarms_are_the_deploy_lambdas(t):
    m = t["mlops"]
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in resources(m, "AWS::CloudWatch::Alarm").values()
              if a["Properties"].get("Namespace") == "AWS/SageMaker"}
    deploy = [f["Properties"] for f in resources(m, "AWS::Lambda::Function").values()
              if f["Properties"].get("Handler") == "lambdas.deploy_model.handler"][0]
    names = deploy["Environment"]["Variables"]["ROLLBACK_ALARMS"].split(",")
    assert names and set(names) == set(alarms)
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert {"Name": "EndpointName", "Value": "discscope"} in alarm["Dimensions"]
        assert alarm["AlarmActions"]


# --- bundling ------------------------------------------------------------------------------------




@pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable")
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
