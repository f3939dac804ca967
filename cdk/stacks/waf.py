"""AWS WAF web ACLs: AWS managed rule groups and a per-IP rate rule, with logging.

One REGIONAL ACL guards both REST API stages; a CLOUDFRONT ACL guards the page's distribution (it
must live in us-east-1). Rules: the common rule set, known bad inputs, the Amazon IP reputation
list, and a rate-based rule (requests per 5 minutes from one IP). Logs go to a KMS-encrypted log
group kept as long as the audit records, with credentials redacted.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from .common import Settings

MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                       "AWSManagedRulesAmazonIpReputationList")
REDACTED_HEADERS = ("authorization", "x-amz-security-token", "x-api-key")


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(cloud_watch_metrics_enabled=True, metric_name=name,
                                                    sampled_requests_enabled=True)


class WebAcl(Construct):
    def __init__(self, scope: Construct, cid: str, *, waf_scope: str, settings: Settings, logs_key: kms.IKey) -> None:
        super().__init__(scope, cid)
        name = f"{cdk.Stack.of(self).stack_name}-{cid}"
        rules = [wafv2.CfnWebACL.RuleProperty(
            name=group, priority=i, override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                vendor_name="AWS", name=group)),
            visibility_config=_visibility(f"{cid}-{group}")) for i, group in enumerate(MANAGED_RULE_GROUPS)]
        rules.append(wafv2.CfnWebACL.RuleProperty(
            name="RatePerIp", priority=len(rules), action=wafv2.CfnWebACL.RuleActionProperty(block={}),
            statement=wafv2.CfnWebACL.StatementProperty(rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                limit=settings.waf_rate_limit, aggregate_key_type="IP", evaluation_window_sec=300)),
            visibility_config=_visibility(f"{cid}-RatePerIp")))
        self.acl = wafv2.CfnWebACL(self, "Acl", name=name, scope=waf_scope, rules=rules,
                                   default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
                                   visibility_config=_visibility(cid))
        # WAF logs to CloudWatch need a group named aws-waf-logs-*
        self.log_group = logs.LogGroup(self, "Logs", log_group_name=f"aws-waf-logs-{name}", encryption_key=logs_key,
                                       retention=settings.audit_retention, removal_policy=cdk.RemovalPolicy.RETAIN)
        wafv2.CfnLoggingConfiguration(
            self, "Logging", resource_arn=self.acl.attr_arn, log_destination_configs=[cdk.Stack.of(self).format_arn(
                service="logs", resource="log-group", resource_name=self.log_group.log_group_name,
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)],  # WAF wants the ARN without ":*"
            redacted_fields=[wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": h})
                             for h in REDACTED_HEADERS])

    @property
    def arn(self) -> str:
        return self.acl.attr_arn
