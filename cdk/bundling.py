"""Build steps the CDK app runs at synth time, without Docker.

- `lambda_code()`: the Lambda asset. Local bundling copies the `lambdas/` package into the asset
  and pip-installs `lambdas/requirements.txt` beside it for the Lambda platform (manylinux x86_64,
  CPython 3.12, wheels only). The asset hash is of the bundled output (`AssetHashType.OUTPUT`), so a
  dependency change, even a transitive one, reaches the next deploy; pip runs with `--no-compile`
  so the same inputs give the same bytes. Context `bundle=false` skips pip (tests, quick synths):
  the asset then holds only `lambdas/`, which is enough to synthesise but not to run.
- `model_artifact()`: the baseline model as SageMaker's `model.tar.gz` (the layout of
  `discscope.artifact.pack`) with the serving dependencies vendored in `code/lib/`, built
  deterministically without importing torch.
- `pipeline_code()`: the SageMaker Pipeline's code (scripts, package, container-requirements.txt, lib/), as
  a folder for the processing jobs and as `sourcedir.tar.gz` for the training job.
The containers never run pip: `lib/` is installed here for their Python (cdk/container_code.py).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from cdk import container_code

REPO = Path(__file__).resolve().parents[1]
LAMBDAS = REPO / "lambdas"
SAGEMAKER = REPO / "sagemaker"
BASELINE = REPO / "models" / "baseline"
BUILD = REPO / "cdk.out" / ".discscope-build"  # synth-time build products (ignored by git)

PLATFORM_ARGS = container_code.PLATFORM_ARGS  # the Lambda runtime is CPython 3.12 too
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def pip_command(requirements: Path, out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--target", str(out_dir), *PLATFORM_ARGS, "-r", str(requirements)]


def bundle_lambdas(out_dir: str | Path, source: Path = LAMBDAS, install: bool = True) -> Path:
    """OUT/lambdas/ (the package) plus the requirements installed at OUT/ (the asset root)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    requirements = source / "requirements.txt"
    if install and requirements.is_file():
        subprocess.run(pip_command(requirements, out), check=True)
    shutil.copytree(source, out / source.name, ignore=IGNORE, dirs_exist_ok=True)
    return out


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """ILocalBundling: runs on this machine (Python + pip), never in Docker."""

    def __init__(self, source: Path = LAMBDAS, install: bool = True):
        self.source, self.install = source, install

    def try_bundle(self, output_dir: str, *_options, **_kw) -> bool:
        bundle_lambdas(output_dir, self.source, self.install)
        return True


def lambda_code(install: bool = True, source: Path = LAMBDAS) -> lambda_.Code:
    """One asset for every function (handlers `lambdas.<module>.<function>`)."""
    return lambda_.Code.from_asset(
        str(source),
        asset_hash_type=AssetHashType.OUTPUT,
        exclude=["__pycache__", "*.pyc"],
        bundling=BundlingOptions(
            # never pulled: local bundling always succeeds; named for the record (same platform)
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.12"),
            local=LocalPipBundling(source, install),
            command=["bash", "-c", "false"],
        ),
    )


# --- the SageMaker containers' code ---------------------------------------------------------------


def container_lib(install: bool) -> Path | None:
    """The vendored dependencies for the containers' Python, built once per requirements file."""
    if not install:
        return None
    lib = BUILD / f"lib-py{container_code.CONTAINER_PYTHON}-{container_code.requirements_digest()}"
    if not (lib / ".complete").is_file():
        shutil.rmtree(lib, ignore_errors=True)
        container_code.install_lib(container_code.REQUIREMENTS, lib, for_container=True)
        (lib / ".complete").write_text("")
    return lib


def _lib_members(lib: Path | None, prefix: str) -> list[tuple[str, bytes]]:
    if lib is None:
        return []
    return [m for m in container_code.lib_members(lib, prefix) if not m[0].endswith("/.complete")]


def model_artifact(model_dir: Path = BASELINE, out_dir: Path = BUILD / "model", install: bool = True) -> Path:
    """out_dir/model.tar.gz: model.pt, metadata.json, code/ (what `discscope.artifact.pack` writes)
    plus code/lib/ with the dependencies for the serving container's Python (`install`)."""
    members = [(name, (model_dir / name).read_bytes()) for name in ("model.pt", "metadata.json")]
    members += container_code.serving_members("code/") + _lib_members(container_lib(install), "code/lib/")
    container_code.deterministic_targz(out_dir / "model.tar.gz", members)
    return out_dir


def pipeline_code(out_dir: Path = BUILD / "pipeline-code", install: bool = True) -> Path:
    """out_dir/: the processing jobs' code input (scripts, discscope/, requirements.txt, lib/) and
    the same as the training job's `sourcedir.tar.gz`."""
    shutil.rmtree(out_dir, ignore_errors=True)
    members = container_code.code_members() + _lib_members(container_lib(install), "lib/")
    container_code.write_members(members, out_dir)
    container_code.deterministic_targz(out_dir / "sourcedir.tar.gz", members)
    return out_dir


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
