"""MLOps: the retraining pipeline and the road from an approved model to the endpoint.

- The SageMaker Pipeline `discscope-retrain`, from `sagemaker/pipeline_definition.json` (generated
  offline by `sagemaker/pipeline.py` with the SageMaker SDK; the CDK app only fills its
  placeholders with Fn::Sub), its execution role, and its code in `s3://<model bucket>/code/`.
- The model package group `discscope`.
- retrain_trigger Lambda: on FeedbackSaved, on a schedule, on operator requests, and on the
  pipeline's status changes (to free its one-run-at-a-time lock).
- deploy_model Lambda: on "Model Package State Change" to Approved (and on the endpoint settling),
  blue/green UpdateEndpoint with automatic rollback on the CloudWatch alarms defined here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.bundling import SAGEMAKER, pipeline_code

from .common import Functions, Settings, allow, function_errors_alarm, kms_use, log_group, queue_depth_alarm, vpc_statements
from .inference import VARIANT, InferenceStack, container_statements
from .storage import StorageStack
from .workflow import common_environment, table_statement

PIPELINE_DEFINITION = SAGEMAKER / "pipeline_definition.json"
PLACEHOLDERS = ("ModelBucket", "StudyBucket", "PipelineRoleArn", "ProcessingImageUri", "TrainingImageUri",
                "InferenceImageUri", "ModelPackageGroupName", "DataKeyArn")
PIPELINE_STATUS = "SageMaker Model Building Pipeline Execution Status Change"
PACKAGE_STATE = "SageMaker Model Package State Change"
ENDPOINT_STATE = "SageMaker Endpoint State Change"


def read_pipeline_definition(path: Path = PIPELINE_DEFINITION, settings: Settings | None = None) -> str | None:
    """The committed definition (compact JSON), or None while it has not been generated; with a VPC
    configured, every job gets the subnets and security groups (lists: no place in ${...} text)."""
    if not path.is_file():
        return None
    definition = json.loads(path.read_text())
    if settings is not None and settings.vpc:
        definition = with_vpc(definition, list(settings.sagemaker_subnets), list(settings.sagemaker_security_groups))
    return json.dumps(definition, separators=(",", ":"), sort_keys=True)


def with_vpc(definition: dict, subnets: list[str], security_groups: list[str]) -> dict:
    vpc = {"Subnets": subnets, "SecurityGroupIds": security_groups}
    for step in definition["Steps"]:
        args = step["Arguments"]
        if step["Type"] == "Processing":
            args.setdefault("NetworkConfig", {})["VpcConfig"] = vpc
        elif step["Type"] == "Training":
            args["VpcConfig"] = vpc
    return definition


class MlopsStack(cdk.Stack):
    def __init__(self, scope: Construct, cid: str, *, settings: Settings, storage: StorageStack,
                 inference: InferenceStack, **kwargs) -> None:
        super().__init__(scope, cid, **kwargs)
        self.settings = settings
        region, account, partition = self.region, self.account, self.partition
        group = settings.model_package_group
        sm_arn = f"arn:{partition}:sagemaker:{region}:{account}"
        self.pipeline_arn = f"{sm_arn}:pipeline/{settings.pipeline_name}"
        self.add_stack_dependency(storage)
        model_bucket = settings.bucket_ref(self, "models", storage.data_key)
        study_bucket = settings.bucket_ref(self, "studies", storage.data_key)
        self.buckets = (model_bucket, study_bucket)

        ops_key = storage.ops_key  # DLQs: EventBridge may use it (storage stack key policy)

        # --- code and model registry -----------------------------------------------------------
        # scripts, package and lib/ (the dependencies vendored for the containers' Python) for the
        # processing jobs, and the same as sourcedir.tar.gz for the training job
        s3deploy.BucketDeployment(
            self, "PipelineCode", destination_bucket=model_bucket, destination_key_prefix="code/", memory_limit=2048,
            ephemeral_storage_size=cdk.Size.gibibytes(4),
            log_group=log_group(self, "PipelineCodeLogs", settings, storage.logs_key),
            sources=[s3deploy.Source.asset(str(pipeline_code(install=settings.bundle)))])
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self, "ModelPackageGroup", model_package_group_name=group,
            model_package_group_description="DiscScope disc detection + herniation models")

        # --- the pipeline and its role ---------------------------------------------------------------
        self.pipeline_role = iam.Role(self, "PipelineRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                                      description="DiscScope retraining pipeline and its jobs")
        for statement in self._pipeline_statements(storage, sm_arn, group):
            self.pipeline_role.add_to_policy(statement)

        definition = read_pipeline_definition(settings=settings)
        self.pipeline = None
        if definition is None:
            print(f"warning: {PIPELINE_DEFINITION} is missing: no SageMaker Pipeline in this synth", file=sys.stderr)
        else:
            values = {
                "ModelBucket": model_bucket.bucket_name, "StudyBucket": study_bucket.bucket_name,
                "PipelineRoleArn": self.pipeline_role.role_arn,
                "ProcessingImageUri": settings.image("processing_image_uri", region),
                "TrainingImageUri": settings.image("training_image_uri", region),
                "InferenceImageUri": settings.image("inference_image_uri", region),
                "ModelPackageGroupName": group, "DataKeyArn": storage.data_key.key_arn,
            }
            self.pipeline = sagemaker.CfnPipeline(
                self, "RetrainPipeline", pipeline_name=settings.pipeline_name, role_arn=self.pipeline_role.role_arn,
                pipeline_display_name=settings.pipeline_name,
                pipeline_description="PreprocessFeedback -> TrainClassifier -> Evaluate -> CheckImprovement -> RegisterModel",
                pipeline_definition={"PipelineDefinitionBody": cdk.Fn.sub(definition, values)})
            self.pipeline.node.add_dependency(self.pipeline_role)
            self.pipeline.node.add_dependency(self.model_package_group)

        # --- rollback alarms (the deploy Lambda passes their names to UpdateEndpoint) ---------------
        self.alarm_topic = storage.alarm_topic
        dims = {"EndpointName": inference.endpoint_name, "VariantName": VARIANT}
        errors = cloudwatch.Alarm(
            self, "Endpoint5xx", alarm_name=f"{inference.endpoint_name}-invocation-5xx",  # = rollback_alarm_names
            alarm_description="Endpoint returns 5xx: a bad model; rolls back an update in progress",
            metric=cloudwatch.Metric(namespace="AWS/SageMaker", metric_name="Invocation5XXErrors", dimensions_map=dims,
                                     statistic="Sum", period=cdk.Duration.minutes(1)),
            threshold=1, evaluation_periods=2, datapoints_to_alarm=2,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        latency = cloudwatch.Alarm(
            self, "EndpointLatency", alarm_name=f"{inference.endpoint_name}-model-latency",
            alarm_description="p90 model latency over 60 s: a slow model; rolls back an update in progress",
            metric=cloudwatch.Metric(namespace="AWS/SageMaker", metric_name="ModelLatency", dimensions_map=dims,
                                     statistic="p90", period=cdk.Duration.minutes(1)),
            threshold=60_000_000, evaluation_periods=3, datapoints_to_alarm=3,  # microseconds
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        self.rollback_alarms = [errors, latency]
        self.rollback_alarm_names = [f"{inference.endpoint_name}-invocation-5xx", f"{inference.endpoint_name}-model-latency"]
        for alarm in self.rollback_alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(self.alarm_topic))
            alarm.add_ok_action(cw_actions.SnsAction(self.alarm_topic))

        # --- the two Lambdas ------------------------------------------------------------------------
        env = common_environment(settings, storage, inference.endpoint_name)
        env.update({"MODEL_BUCKET": model_bucket.bucket_name, "MODEL_PACKAGE_GROUP": group,
                    "RETRAIN_APPROVAL": settings.retrain_approval})
        functions = Functions(self, settings, storage.logs_key, env)

        self.trigger_dlq = self._dlq("RetrainTriggerDLQ", ops_key)
        self.retrain_trigger = functions.create("RetrainTrigger", "lambdas.retrain_trigger.handler",
                                                service="retrain-trigger", timeout_s=60, dlq=self.trigger_dlq)
        for statement in (
            table_statement(storage, ["GetItem", "UpdateItem", "PutItem"]),
            kms_use(storage.data_key, "dynamodb"),
            kms_use(ops_key, "sqs"),  # its own DLQ (failed asynchronous invocations)
            allow(["sagemaker:StartPipelineExecution", "sagemaker:ListPipelineExecutions"], [self.pipeline_arn]),
            allow(["sagemaker:DescribePipelineExecution"], [f"{self.pipeline_arn}/execution/*"]),
        ):
            self.retrain_trigger.add_to_role_policy(statement)

        self.deploy_dlq = self._dlq("DeployModelDLQ", ops_key)
        self.deploy_model = functions.create(
            "DeployModel", "lambdas.deploy_model.handler", service="deploy-model", timeout_s=120, dlq=self.deploy_dlq,
            env={"SAGEMAKER_ROLE_ARN": inference.execution_role.role_arn,
                 "ENDPOINT_INSTANCE_TYPE": inference.instance_type,
                 "ENDPOINT_INSTANCE_COUNT": str(settings.instance_count),
                 "ROLLBACK_ALARMS": ",".join(self.rollback_alarm_names),
                 "DATA_CAPTURE_URI": inference.data_capture_uri,
                 "DATA_CAPTURE_KMS_KEY": storage.data_key.key_arn,
                 # as the inference stack's EndpointConfig: a volume key unless the instance has NVMe storage
                 "ENDPOINT_VOLUME_KMS_KEY": storage.data_key.key_arn if settings.kms_on_endpoint_volume else "",
                 "VPC_SUBNETS": ",".join(settings.sagemaker_subnets),
                 "VPC_SECURITY_GROUPS": ",".join(settings.sagemaker_security_groups)})
        for statement in (
            allow(["sagemaker:DescribeModelPackage"], [f"{sm_arn}:model-package/{group}/*"]),
            allow(["sagemaker:CreateModel", "sagemaker:AddTags"], [f"{sm_arn}:model/discscope-*"]),
            allow(["sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig"],
                  [f"{sm_arn}:endpoint-config/discscope-*"]),
            # UpdateEndpoint is authorised on the endpoint and on the config it switches to
            allow(["sagemaker:UpdateEndpoint"], [inference.endpoint_arn, f"{sm_arn}:endpoint-config/discscope-*"]),
            allow(["sagemaker:DescribeEndpoint"], [inference.endpoint_arn]),
            allow(["iam:PassRole"], [inference.execution_role.role_arn],
                  {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
            allow(["cloudwatch:DescribeAlarms"], [a.alarm_arn for a in self.rollback_alarms]),
            # no S3: CreateModel hands the package's artifact to the model's execution role, which reads it
            table_statement(storage, ["GetItem", "PutItem", "DeleteItem"]),
            kms_use(storage.data_key, "dynamodb"),
            kms_use(ops_key, "sqs"),  # its own DLQ (failed asynchronous invocations)
            # data capture encrypted with the data key: SageMaker creates a grant for the endpoint
            allow(["kms:CreateGrant", "kms:DescribeKey"], [storage.data_key.key_arn],
                  {"Bool": {"kms:GrantIsForAWSResource": "true"}}),
        ):
            self.deploy_model.add_to_role_policy(statement)

        # --- EventBridge rules --------------------------------------------------------------------------
        trigger = targets.LambdaFunction(self.retrain_trigger, dead_letter_queue=self.trigger_dlq, retry_attempts=4,
                                         max_event_age=cdk.Duration.hours(6))
        deploy = targets.LambdaFunction(self.deploy_model, dead_letter_queue=self.deploy_dlq, retry_attempts=4,
                                        max_event_age=cdk.Duration.hours(6))
        self.rules = {
            "FeedbackSaved": events.Rule(self, "FeedbackSavedRule", description="feedback counts towards retraining",
                                         event_pattern=events.EventPattern(source=["discscope.api"],
                                                                           detail_type=["FeedbackSaved"]),
                                         targets=[trigger]),
            "Schedule": events.Rule(self, "RetrainSchedule", description="retrain if any feedback is pending",
                                    schedule=events.Schedule.expression(settings.retrain_schedule), targets=[trigger]),
            "RetrainRequested": events.Rule(
                self, "RetrainRequestedRule", description="an operator asks for a run now",
                event_pattern=events.EventPattern(source=events.Match.prefix("discscope."),
                                                  detail_type=["Retrain Requested"]), targets=[trigger]),
            "PipelineStatus": events.Rule(
                self, "PipelineStatusRule", description="a retraining run changed state (frees the lock)",
                event_pattern=events.EventPattern(source=["aws.sagemaker"], detail_type=[PIPELINE_STATUS],
                                                  detail={"pipelineArn": [self.pipeline_arn]}), targets=[trigger]),
            "ModelApproved": events.Rule(
                self, "ModelApprovedRule", description="an approved model package goes to the endpoint",
                event_pattern=events.EventPattern(source=["aws.sagemaker"], detail_type=[PACKAGE_STATE],
                                                  detail={"ModelPackageGroupName": [group],
                                                          "ModelApprovalStatus": ["Approved"]}), targets=[deploy]),
            "EndpointSettled": events.Rule(
                self, "EndpointSettledRule", description="the endpoint finished (or rolled back) an update",
                event_pattern=events.EventPattern(source=["aws.sagemaker"], detail_type=[ENDPOINT_STATE],
                                                  detail={"EndpointName": [inference.endpoint_name],
                                                          "EndpointStatus": ["InService"]}), targets=[deploy]),
        }

        # --- operators' alarms: the two functions' errors, events stuck in their DLQs ----------------
        self.alarms = [function_errors_alarm(self, fn, self.alarm_topic) for fn in (self.retrain_trigger, self.deploy_model)]
        self.alarms += [queue_depth_alarm(self, self.trigger_dlq, "retraining events", self.alarm_topic),
                        queue_depth_alarm(self, self.deploy_dlq, "model approvals and endpoint changes", self.alarm_topic)]

        cdk.CfnOutput(self, "PipelineName", value=settings.pipeline_name)
        cdk.CfnOutput(self, "ModelPackageGroupName", value=group)
        cdk.CfnOutput(self, "RollbackAlarms", value=",".join(self.rollback_alarm_names))

    def _dlq(self, cid: str, key: kms.IKey) -> sqs.Queue:
        return sqs.Queue(self, cid, encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True,
                         retention_period=cdk.Duration.days(14))

    def _pipeline_statements(self, storage: StorageStack, sm_arn: str, group: str) -> list[iam.PolicyStatement]:
        model_bucket, study_bucket = self.buckets
        jobs = [f"{sm_arn}:processing-job/pipelines-*", f"{sm_arn}:training-job/pipelines-*"]
        return [
            # code, datasets, the models (production, candidates, evaluations); the run's working data
            allow(["s3:GetObject"], [model_bucket.arn_for_objects(p) for p in
                                     ("code/*", "datasets/*", "models/*", "pipeline/*")]),
            allow(["s3:PutObject"], [model_bucket.arn_for_objects(p) for p in
                                     ("pipeline/*", "models/candidates/*", "models/evaluations/*")]),
            allow(["s3:GetObject"], [study_bucket.arn_for_objects(p) for p in ("feedback/*", "uploads/*", "results/*")]),
            allow(["s3:ListBucket"], [model_bucket.bucket_arn, study_bucket.bucket_arn]),
            kms_use(storage.data_key, "s3"),
            # the jobs' ML storage volumes are encrypted with the data key: SageMaker makes a grant for them
            allow(["kms:CreateGrant", "kms:DescribeKey"], [storage.data_key.key_arn],
                  {"Bool": {"kms:GrantIsForAWSResource": "true"}}),
            allow(["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
                   "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                   "sagemaker:AddTags"], jobs),
            allow(["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:AddTags"],
                  [f"{sm_arn}:model-package/{group}/*", f"{sm_arn}:model-package-group/{group}"]),
            allow(["sagemaker:DescribeModelPackageGroup"], [f"{sm_arn}:model-package-group/{group}"]),
            # experiment tracking and lineage that pipeline executions record
            allow(["sagemaker:CreateExperiment", "sagemaker:DescribeExperiment", "sagemaker:CreateTrial",
                   "sagemaker:DescribeTrial", "sagemaker:CreateTrialComponent", "sagemaker:AssociateTrialComponent",
                   "sagemaker:AddAssociation", "sagemaker:CreateAction", "sagemaker:CreateArtifact",
                   "sagemaker:CreateContext", "sagemaker:DescribeAction", "sagemaker:DescribeArtifact",
                   "sagemaker:DescribeContext", "sagemaker:QueryLineage", "sagemaker:AddTags"],
                  [f"{sm_arn}:{kind}/*" for kind in ("experiment", "experiment-trial", "experiment-trial-component",
                                                     "action", "artifact", "context")]),
            # the pipeline passes its own role to the jobs it starts
            allow(["iam:PassRole"], [self.pipeline_role.role_arn],
                  {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
            *container_statements(self),
            *vpc_statements(self.settings),
        ]
