"""The local pipeline runner decides CheckImprovement with the committed definition's own condition."""

from __future__ import annotations

import pytest

from pathlib import Path

from devstack.pipeline_runner import Expressions, LocalPipelineRunner, parameter_defaults

PLACEHOLDERS = {name: f"local-{name}" for name in ("ModelBucket", "StudyBucket", "PipelineRoleArn", "ModelPackageGroupName",
                                                   "DataKeyArn", "ProcessingImageUri", "TrainingImageUri", "InferenceImageUri")}


def _report(improvement: float, sensitivity: float) -> dict:
    return {"candidate": {"auc": 0.9, "sensitivity": sensitivity, "version": "c"},
            "production": {"auc": 0.9 - improvement, "sensitivity": 0.9, "version": "p"},
            "improvement": {"auc": improvement}}


@pytest.fixture(scope="module")
def runner() -> LocalPipelineRunner:
    """Only the definition is needed to decide; no buckets or datasets."""
    return LocalPipelineRunner(Path("unused"), PLACEHOLDERS)


@pytest.mark.parametrize("improvement, sensitivity, passed", [
    (0.02, 0.85, True),     # better and sensitive enough
    (0.005, 0.80, True),    # exactly on both bars (>=)
    (0.004, 0.95, False),   # not enough better
    (0.10, 0.79, False),    # better but loses sensitivity
    (-0.05, 0.95, False),   # worse
])
def test_check_improvement_follows_the_definition(runner, improvement, sensitivity, passed):
    params = parameter_defaults(runner.definition)
    ok, message = runner.check(params, _report(improvement, sensitivity))
    assert ok is passed
    if not passed:
        assert message == (f"Candidate not registered: AUC improvement {improvement} (required >= 0.005), "
                           f"sensitivity {sensitivity} (required >= 0.8)")


def test_parameters_override_the_definition_defaults(runner):
    params = parameter_defaults(runner.definition) | {"MinImprovement": 0.2}
    assert runner.check(params, _report(0.1, 0.9))[0] is False


def test_unknown_expressions_are_refused():
    with pytest.raises(ValueError, match="unsupported pipeline expression"):
        Expressions({}, {}).value({"Std:Split": {}})
