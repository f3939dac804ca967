#!/usr/bin/env python3
"""DiscScope on AWS: `npx aws-cdk@2.1148.1 deploy --all` (see the README, "Deploying to AWS").

Stacks: DiscScope-Storage, DiscScope-Inference, DiscScope-Workflow, DiscScope-ApiWeb,
DiscScope-MLOps. Context parameters (`-c key=value`) are read by cdk/stacks/common.py:Settings;
`-c bundle=false` skips pip (quick synths and tests), `-c nag=false` skips cdk-nag.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as core  # noqa: E402

from cdk.nag import apply_nag  # noqa: E402
from cdk.stacks.api_web import ApiWebStack  # noqa: E402
from cdk.stacks.common import Settings  # noqa: E402
from cdk.stacks.inference import InferenceStack  # noqa: E402
from cdk.stacks.mlops import MlopsStack  # noqa: E402
from cdk.stacks.storage import StorageStack  # noqa: E402
from cdk.stacks.workflow import WorkflowStack  # noqa: E402

PREFIX = "DiscScope"


def build(app: core.App) -> dict[str, core.Stack]:
    """All five stacks on `app`, with cdk-nag unless context nag=false."""
    settings = Settings.from_app(app.node)
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    env = core.Environment(account=account, region=region) if account and region else None
    common = {"env": env}
    storage = StorageStack(app, f"{PREFIX}-Storage", settings=settings, description="DiscScope buckets, tables, keys", **common)
    inference = InferenceStack(app, f"{PREFIX}-Inference", settings=settings, storage=storage,
                               description="DiscScope SageMaker endpoint (GPU)", **common)
    workflow = WorkflowStack(app, f"{PREFIX}-Workflow", settings=settings, storage=storage, inference=inference,
                             description="DiscScope ingest + StudyWorkflow", **common)
    api_web = ApiWebStack(app, f"{PREFIX}-ApiWeb", settings=settings, storage=storage, inference=inference,
                          description="DiscScope REST APIs, Cognito, web page on CloudFront", **common)
    mlops = MlopsStack(app, f"{PREFIX}-MLOps", settings=settings, storage=storage, inference=inference,
                       description="DiscScope retraining pipeline, registry, deployment", **common)
    stacks = {"storage": storage, "inference": inference, "workflow": workflow, "api_web": api_web, "mlops": mlops}
    for stack in stacks.values():
        core.Tags.of(stack).add("project", "discscope")
    if settings.nag:
        apply_nag(app, stacks)
    return stacks


if __name__ == "__main__":
    app = core.App()
    build(app)
    app.synth()
