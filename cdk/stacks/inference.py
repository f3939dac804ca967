"""Inference: the SageMaker Model, EndpointConfig and Endpoint serving the baseline model on a GPU.

The baseline `model.tar.gz` (models/baseline + serving code) is built at synth time and copied to
`s3://<model bucket>/models/production/model.tar.gz`. Later models arrive through the Model
Registry: the deploy Lambda (mlops stack) creates a new Model + EndpointConfig and updates this
endpoint in place (blue/green with auto-rollback), so CloudFormation's EndpointConfig only holds
the first deployment.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from cdk.bundling import model_artifact

from .common import DLC_ACCOUNT, Settings, allow, kms_use, log_group, vpc_statements
from .storage import StorageStack

PRODUCTION_PREFIX = "models/production/"
MODELS_PREFIX = "models/"  # the baseline, trained candidates and their evaluations (never expired)
DATA_CAPTURE_PREFIX = "data-capture/"
VARIANT = "AllTraffic"


def execution_role_statements(stack: cdk.Stack, settings: Settings, storage: StorageStack) -> list[iam.PolicyStatement]:
    """What a DiscScope model container needs: its artifact (models/ only: never the captured
    requests), the study it reads by S3 URI, the results it writes, data capture, the Deep Learning
    Container images, its logs, the data key for all of them, and the VPC when there is one."""
    return [
        allow(["s3:GetObject"], [settings.object_arn("models", f"{MODELS_PREFIX}*")]),
        allow(["s3:GetObject"], [settings.object_arn("studies", "uploads/*")]),
        allow(["s3:PutObject"], [settings.object_arn("studies", "results/*")]),
        allow(["s3:PutObject"], [settings.object_arn("models", f"{DATA_CAPTURE_PREFIX}*")]),
        kms_use(storage.data_key, "s3"),
        *container_statements(stack),
        *vpc_statements(settings),
    ]


def container_statements(stack: cdk.Stack) -> list[iam.PolicyStatement]:
    """Any SageMaker job or endpoint of ours: pull the PyTorch Deep Learning Containers, write its
    logs and metrics."""
    region, account, partition = stack.region, stack.account, stack.partition
    return [
        allow(["ecr:GetAuthorizationToken"], ["*"]),
        allow(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
              [f"arn:{partition}:ecr:{region}:{DLC_ACCOUNT}:repository/pytorch-*"]),
        allow(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
              [f"arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/*"]),
        allow(["cloudwatch:PutMetricData"], ["*"], {"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}}),
    ]


class InferenceStack(cdk.Stack):
    def __init__(self, scope: Construct, cid: str, *, settings: Settings, storage: StorageStack, **kwargs) -> None:
        super().__init__(scope, cid, **kwargs)
        self.add_stack_dependency(storage)
        model_bucket: s3.IBucket = settings.bucket_ref(self, "models", storage.data_key)

        # Execution role of the endpoint's models (also passed by the deploy Lambda to new Models).
        self.execution_role = iam.Role(self, "ExecutionRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                                       description="DiscScope SageMaker models (endpoint containers)")
        for statement in execution_role_statements(self, settings, storage):
            self.execution_role.add_to_policy(statement)

        baseline = s3deploy.BucketDeployment(
            self, "BaselineModel", sources=[s3deploy.Source.asset(str(model_artifact(install=settings.bundle)))],
            destination_bucket=model_bucket, destination_key_prefix=PRODUCTION_PREFIX,
            prune=False, retain_on_delete=True, memory_limit=2048, ephemeral_storage_size=cdk.Size.gibibytes(2),
            log_group=log_group(self, "BaselineModelLogs", settings, storage.logs_key))
        self.model_data_url = f"s3://{model_bucket.bucket_name}/{PRODUCTION_PREFIX}model.tar.gz"

        image = settings.image("inference_image_uri", self.region)
        model = sagemaker.CfnModel(
            self, "BaselineModelResource", execution_role_arn=self.execution_role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image, model_data_url=self.model_data_url, mode="SingleModel",
                # code/ has no requirements.txt (nothing is installed at start): its lib/ is vendored
                environment={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                             "SAGEMAKER_CONTAINER_LOG_LEVEL": "20", "SAGEMAKER_REGION": self.region}),
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(
                subnets=list(settings.sagemaker_subnets), security_group_ids=list(settings.sagemaker_security_groups))
            if settings.vpc else None)
        model.node.add_dependency(baseline)
        model.node.add_dependency(self.execution_role)

        self.data_capture_uri = f"s3://{model_bucket.bucket_name}/{DATA_CAPTURE_PREFIX}"
        config = sagemaker.CfnEndpointConfig(
            self, "EndpointConfig",
            production_variants=[sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT, model_name=model.attr_model_name, instance_type=settings.instance_type,
                initial_instance_count=settings.instance_count, initial_variant_weight=1.0,
                container_startup_health_check_timeout_in_seconds=600,
                model_data_download_timeout_in_seconds=600)],
            # KMS for the ML storage volume only where the instance type has no instance store
            kms_key_id=storage.data_key.key_arn if settings.kms_on_endpoint_volume else None,
            data_capture_config=sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True, initial_sampling_percentage=settings.data_capture_percent,
                destination_s3_uri=self.data_capture_uri, kms_key_id=storage.data_key.key_arn,
                capture_options=[sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                                 sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output")],
                capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                    json_content_types=["application/json"])))
        self.endpoint = sagemaker.CfnEndpoint(self, "Endpoint", endpoint_config_name=config.attr_endpoint_config_name,
                                              endpoint_name=settings.endpoint_name)
        self.endpoint_name = settings.endpoint_name
        self.endpoint_arn = f"arn:{self.partition}:sagemaker:{self.region}:{self.account}:endpoint/{settings.endpoint_name}"
        self.instance_type = settings.instance_type

        cdk.CfnOutput(self, "EndpointName", value=settings.endpoint_name)
        cdk.CfnOutput(self, "InstanceType", value=settings.instance_type)
