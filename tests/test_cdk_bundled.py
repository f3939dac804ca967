"""`cdk synth` with real bundling, once: the Lambda asset with its wheels for the Lambda platform,
the baseline model.tar.gz and the pipeline code with their dependencies vendored for the
containers' Python, all through cdk-nag. Needs PyPI (skipped offline); pip's cache makes reruns fast.

Also: the containers' requirements file installs on its own, for the containers' platform, from a
folder that holds nothing else (a relative `-r ../x.txt` in it would fail here, as in a job)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from online import pypi_reachable

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
cdk = pytest.importorskip("aws_cdk")

from cdk import container_code  # noqa: E402
from cdk.app import build  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]




pytestmark = pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable")


def test_container_requirements_install_on_their_own_for_the_containers(tmp_path):
    alone = tmp_path / "job"
    alone.mkdir()
    shutil.copy(container_code.REQUIREMENTS, alone / "requirements.txt")
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                    "--target", str(tmp_path / "t"), *container_code.PLATFORM_ARGS, "--report", str(report),
                    "-r", "requirements.txt"], cwd=alone, check=True)
    installed = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}
    pins = dict(line.split("==") for line in container_code.REQUIREMENTS.read_text().splitlines()
                if line and not line.startswith("#"))
    for name, version in pins.items():
        assert installed[name.lower()] == version
    assert "torch" not in installed and "boto3" not in installed  # the image brings those


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    from cdk.nag import ACKNOWLEDGED

    ACKNOWLEDGED.clear()
    out = tmp_path_factory.mktemp("cdk.out.bundled")
    app = cdk.App(context={**CONTEXT, "bundle": "true"}, outdir=str(out))
    stacks = build(app)
    assembly = app.synth()  # raises on any unacknowledged cdk-nag finding
    return out, stacks, assembly


def _asset(out: Path, stack: str, predicate) -> Path:
    """The staged asset of `stack` whose folder satisfies `predicate`."""
    manifest = json.loads((out / f"{stack}.assets.json").read_text())
    for entry in manifest["files"].values():
        path = out / entry["source"]["path"]
        if path.is_dir() and predicate(path):
            return path
    raise AssertionError(f"no such asset in {stack}")


def test_lambda_asset_carries_its_wheels_for_the_lambda_platform(bundled):
    out, _, _ = bundled
    asset = _asset(out, "DiscScope-Workflow", lambda p: (p / "lambdas").is_dir())
    assert (asset / "lambdas" / "workflow.py").is_file() and (asset / "aws_lambda_powertools").is_dir()
    assert not list(asset.rglob("*.pyc"))


def test_baseline_model_serves_without_installing_anything(bundled):
    out, _, _ = bundled
    asset = _asset(out, "DiscScope-Inference", lambda p: (p / "model.tar.gz").is_file())
    with tarfile.open(asset / "model.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"code/inference.py", "code/vendored.py", "code/discscope/predictor.py"} <= names
    assert "code/requirements.txt" not in names
    for package in ("SimpleITK", "cv2", "numpy"):
        assert f"code/lib/{package}/__init__.py" in names, package
    assert any(n.startswith("code/lib/numpy/_core/_multiarray_umath.cpython-312-x86_64-linux-gnu") for n in names)


def test_pipeline_code_is_complete_for_isolated_jobs(bundled):
    out, _, _ = bundled
    asset = _asset(out, "DiscScope-MLOps", lambda p: (p / "sourcedir.tar.gz").is_file())
    for name in ("train.py", "evaluate.py", "preprocess_feedback.py", "vendored.py", "container-requirements.txt",
                 "lib/SimpleITK/__init__.py", "lib/matplotlib/__init__.py"):
        assert (asset / name).is_file(), name
    assert not (asset / "requirements.txt").exists()  # the training toolkit would pip-install it at start
    with tarfile.open(asset / "sourcedir.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"train.py", "vendored.py", "discscope/train.py", "lib/SimpleITK/__init__.py"} <= names
