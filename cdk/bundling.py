"""Build steps the CDK app runs at synth time, without Docker.

- `lambda_code()`: the Lambda asset. Local bundling copies the `lambdas/` package into the asset
  and pip-installs `lambdas/requirements.txt` beside it for the Lambda platform (manylinux x86_64,
  CPython 3.12, wheels only). The asset hash is of the bundled output (`AssetHashType.OUTPUT`), so a
  dependency change, even a transitive one, reaches the next deploy; pip runs with `--no-compile`
  so the same inputs give the same bytes. Context `bundle=false` skips pip (tests, quick synths):
  the asset then holds only `lambdas/`, which is enough to synthesise but not to run.
- `model_artifact()`: the baseline model as SageMaker's `model.tar.gz` (the layout of
  `discscope.artifact.pack`), built deterministically without importing torch.
- `pipeline_code()`: the SageMaker Pipeline's code: `sourcedir.tar.gz` and `requirements.txt`.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO = Path(__file__).resolve().parents[1]
LAMBDAS = REPO / "lambdas"
SAGEMAKER = REPO / "sagemaker"
BASELINE = REPO / "models" / "baseline"
BUILD = REPO / "cdk.out" / ".discscope-build"  # synth-time build products (ignored by git)

PLATFORM_ARGS = [
    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
    "--implementation", "cp", "--python-version", "3.12", "--only-binary=:all:",
]
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


# --- deterministic archives --------------------------------------------------------------------


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def deterministic_targz(out: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar.gz whose bytes depend only on the members' names and contents."""
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(members):
            _add_bytes(tar, name, data)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    tmp.replace(out)
    return out


def code_requirements() -> str:
    """discscope.artifact.CODE_REQUIREMENTS, read from the source (importing it would import torch)."""
    tree = ast.parse((SAGEMAKER / "discscope" / "artifact.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CODE_REQUIREMENTS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError("CODE_REQUIREMENTS not found in discscope/artifact.py")


def serving_code_members(prefix: str = "code/") -> list[tuple[str, bytes]]:
    members = [(f"{prefix}inference.py", (SAGEMAKER / "inference.py").read_bytes()),
               (f"{prefix}requirements.txt", code_requirements().encode())]
    package = SAGEMAKER / "discscope"
    members += [(f"{prefix}discscope/{p.relative_to(package).as_posix()}", p.read_bytes()) for p in _files(package)]
    return members


def model_artifact(model_dir: Path = BASELINE, out_dir: Path = BUILD / "model") -> Path:
    """out_dir/model.tar.gz: model.pt, metadata.json, code/ — what `discscope.artifact.pack` writes."""
    members = [(name, (model_dir / name).read_bytes()) for name in ("model.pt", "metadata.json")]
    deterministic_targz(out_dir / "model.tar.gz", members + serving_code_members())
    return out_dir


def pipeline_requirements() -> str:
    """What the training/processing containers add to the PyTorch image."""
    own = SAGEMAKER / "requirements.txt"
    if own.is_file():
        return own.read_text()
    keep = []
    for line in (REPO / "requirements" / "runtime.txt").read_text().splitlines():
        name = line.split("==")[0].strip().lower()
        if line.strip() and not line.startswith("#") and name not in ("torch", "boto3"):
            keep.append(line.strip())
    return "\n".join(keep) + "\n"


def pipeline_code(out_dir: Path = BUILD / "pipeline-code") -> Path:
    """out_dir/{sourcedir.tar.gz, requirements.txt}; the scripts themselves are deployed unpacked."""
    requirements = pipeline_requirements().encode()
    members = [(p.relative_to(SAGEMAKER).as_posix(), p.read_bytes()) for p in _files(SAGEMAKER)
               if p.suffix == ".py" or "discscope" in p.relative_to(SAGEMAKER).parts]
    members = [m for m in members if m[0] != "requirements.txt"] + [("requirements.txt", requirements)]
    out_dir.mkdir(parents=True, exist_ok=True)
    deterministic_targz(out_dir / "sourcedir.tar.gz", members)
    (out_dir / "requirements.txt").write_bytes(requirements)
    return out_dir


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
