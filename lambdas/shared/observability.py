"""Powertools Logger, Tracer and Metrics, set up alike for every function."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer


def tools(service: str) -> tuple[Logger, Tracer, Metrics]:
    name = f"discscope-{service}"
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "DiscScope")
    return Logger(service=name), Tracer(service=name), Metrics(namespace=namespace, service=service)
