"""Workflow: the ingest Lambda (S3 uploads/ trigger), the StudyWorkflow state machine and its four
task Lambdas, with DLQs for the asynchronous invocations, and the alarms that tell the operators
when a function fails, an upload event lands in the DLQ, or a study's workflow fails."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .common import (Functions, Settings, alarm_on, allow, dead_letter_queue, function_errors_alarm, kms_use,
                     queue_depth_alarm)
from .inference import InferenceStack
from .storage import LIST_INDEX, StorageStack

ASL = Path(__file__).resolve().parents[2] / "step_functions" / "study_workflow.asl.json"

# handler -> (construct id, ASL substitution, service name, timeout s, memory MB)
TASKS = {
    "lambdas.workflow.validate_handler": ("Validate", "ValidateFunctionArn", "validate", 60, 512),
    # the endpoint answers within 60 s (SageMaker's limit) or fails: two minutes cover the call and S3
    "lambdas.workflow.infer_handler": ("Infer", "InferFunctionArn", "infer", 120, 512),
    "lambdas.workflow.persist_handler": ("Persist", "PersistFunctionArn", "persist", 60, 512),
    "lambdas.workflow.mark_failed_handler": ("MarkFailed", "MarkFailedFunctionArn", "mark-failed", 60, 512),
}


def common_environment(settings: Settings, storage: StorageStack, endpoint_name: str) -> dict[str, str]:
    """lambdas/shared/settings.py reads these (the same names the local stack sets)."""
    return {
        "STUDY_BUCKET": settings.bucket_name("studies"), "STUDY_TABLE": storage.table.table_name,
        "IDEMPOTENCY_TABLE": storage.idempotency_table.table_name, "ENDPOINT_NAME": endpoint_name,
        "EVENT_BUS": "default", "MAX_UPLOAD_BYTES": str(settings.max_upload_bytes), "PRESIGN_EXPIRY_S": "900",
        "RETRAIN_MIN_FEEDBACK": str(settings.retrain_min_feedback), "PIPELINE_NAME": settings.pipeline_name,
    }


def table_statement(storage: StorageStack, actions: list[str], index: bool = False):
    resources = [storage.table.table_arn] + ([f"{storage.table.table_arn}/index/{LIST_INDEX}"] if index else [])
    return allow([f"dynamodb:{a}" for a in actions], resources)


class WorkflowStack(cdk.Stack):
    def __init__(self, scope: Construct, cid: str, *, settings: Settings, storage: StorageStack,
                 inference: InferenceStack, **kwargs) -> None:
        super().__init__(scope, cid, **kwargs)
        self.add_stack_dependency(storage)
        study_bucket = settings.bucket_ref(self, "studies", storage.data_key)
        env = common_environment(settings, storage, inference.endpoint_name)
        functions = Functions(self, settings, storage.logs_key, env)
        self.functions: dict[str, lambda_.Function] = {}

        # --- the four tasks (invoked synchronously by the state machine) ---------------------
        arns = {}
        for handler, (cid_, substitution, service, timeout_s, memory) in TASKS.items():
            fn = functions.create(cid_, handler, service=service, timeout_s=timeout_s, memory=memory)
            fn.add_to_role_policy(allow(["s3:GetObject"], [study_bucket.arn_for_objects("uploads/*")]))
            fn.add_to_role_policy(table_statement(storage, ["GetItem", "UpdateItem"]))
            fn.add_to_role_policy(kms_use(storage.data_key, "s3", "dynamodb"))
            self.functions[handler] = fn
            arns[substitution] = fn.function_arn
        infer = self.functions["lambdas.workflow.infer_handler"]
        infer.add_to_role_policy(allow(["s3:PutObject"], [study_bucket.arn_for_objects("results/*")]))
        infer.add_to_role_policy(allow(["sagemaker:InvokeEndpoint"], [inference.endpoint_arn]))

        # --- the state machine, from the one ASL file (embedded; ${...} filled by CloudFormation) --
        sm_logs = logs.LogGroup(self, "StudyWorkflowLogs", retention=settings.retention,
                                encryption_key=storage.logs_key, removal_policy=cdk.RemovalPolicy.DESTROY,
                                log_group_name=f"/aws/vendedlogs/states/{self.stack_name}-StudyWorkflow")
        self.state_machine = sfn.StateMachine(
            self, "StudyWorkflow", definition_body=sfn.DefinitionBody.from_string(ASL.read_text()),
            definition_substitutions=arns, tracing_enabled=True,
            logs=sfn.LogOptions(destination=sm_logs, level=sfn.LogLevel.ALL, include_execution_data=False),
            timeout=cdk.Duration.hours(1))
        for fn in self.functions.values():
            fn.grant_invoke(self.state_machine)
        # CDK's built-in template check sees the ASL's ${...}; they are DefinitionSubstitutions
        cdk.Validations.of(self.state_machine).acknowledge(cdk.Acknowledgment(
            id="CloudFormation-Validate::E1029",
            reason="${ValidateFunctionArn} etc. are filled by the state machine's DefinitionSubstitutions, "
                   "and the ASL Comment mentions ${...} in prose; neither is an Fn::Sub"))

        # --- ingest: S3 ObjectCreated uploads/ -> one execution per object --------------------
        self.ingest_dlq = dead_letter_queue(self, "IngestDLQ", storage.data_key)
        ingest = functions.create("Ingest", "lambdas.ingest.handler", service="ingest", timeout_s=60,
                                  dlq=self.ingest_dlq, env={"STATE_MACHINE_ARN": self.state_machine.state_machine_arn})
        ingest.add_to_role_policy(allow(
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            [storage.idempotency_table.table_arn]))
        ingest.add_to_role_policy(table_statement(storage, ["GetItem", "PutItem", "UpdateItem"]))
        ingest.add_to_role_policy(kms_use(storage.data_key, "dynamodb", "sqs"))
        ingest.add_to_role_policy(allow(["states:StartExecution"], [self.state_machine.state_machine_arn]))
        self.functions["lambdas.ingest.handler"] = ingest
        # The bucket lives in the storage stack; the notification is added here to an imported
        # reference (no dependency cycle): CloudFormation merges it into the bucket's configuration.
        study_bucket.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(ingest),
                                       s3.NotificationKeyFilter(prefix="uploads/"))

        # --- alarms: every function's errors, the ingest DLQ, studies whose workflow failed ---------
        topic = storage.alarm_topic
        self.alarms = [function_errors_alarm(self, fn, topic) for fn in self.functions.values()]
        self.alarms.append(queue_depth_alarm(self, self.ingest_dlq, "upload events the ingest function could not start", topic))
        failed = cloudwatch.MathExpression(
            expression="failed + timedout + aborted", period=cdk.Duration.minutes(5), label="StudyWorkflow failures",
            using_metrics={name: self.state_machine.metric(f"Executions{kind}", statistic="Sum", period=cdk.Duration.minutes(5))
                           for name, kind in (("failed", "Failed"), ("timedout", "TimedOut"), ("aborted", "Aborted"))})
        self.alarms.append(alarm_on(self, "WorkflowFailures", failed, "a study's workflow failed (the study is FAILED "
                                    "with its error_code: a bad upload, or the endpoint or AWS failing)", topic))

        cdk.CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
