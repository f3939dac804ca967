"""What the SageMaker containers run: the code, and its dependencies vendored into `lib/`.

One definition for the CDK (which builds it for the containers' Python at synth time) and the
local pipeline runner (which builds `lib/` for this machine's Python from the same requirements
file). No AWS CDK import here, so the local stack can use it.

- `code_members()`: the scripts SageMaker runs, `vendored.py`, the `discscope` package and
  `container-requirements.txt` (the processing jobs' code input and the training job's source dir).
- `serving_members()`: `code/` of a `model.tar.gz` (inference.py, vendored.py, discscope/).
- `install_lib()`: `pip install --target lib -r container-requirements.txt`, for the containers' platform
  (manylinux x86_64, CPython `CONTAINER_PYTHON`, wheels only) or for this interpreter.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAGEMAKER = REPO / "sagemaker"
REQUIREMENTS = SAGEMAKER / "container-requirements.txt"
# The default PyTorch Deep Learning Container images (cdk/stacks/common.py) run CPython 3.12.
CONTAINER_PYTHON = "3.12"
PLATFORM_ARGS = [
    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
    "--implementation", "cp", "--python-version", CONTAINER_PYTHON, "--only-binary=:all:",
]
SCRIPTS = ("train.py", "evaluate.py", "preprocess_feedback.py", "inference.py", "vendored.py")
SERVING = ("inference.py", "vendored.py")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def package_members(prefix: str = "") -> list[tuple[str, bytes]]:
    package = SAGEMAKER / "discscope"
    return [(f"{prefix}discscope/{p.relative_to(package).as_posix()}", p.read_bytes()) for p in _files(package)]


def code_members() -> list[tuple[str, bytes]]:
    """The pipeline jobs' code, as (relative path, bytes); `lib/` is added by whoever builds it."""
    return ([(name, (SAGEMAKER / name).read_bytes()) for name in SCRIPTS]
            + package_members() + [(REQUIREMENTS.name, REQUIREMENTS.read_bytes())])


def serving_members(prefix: str = "code/") -> list[tuple[str, bytes]]:
    return [(f"{prefix}{name}", (SAGEMAKER / name).read_bytes()) for name in SERVING] + package_members(prefix)


def write_members(members: list[tuple[str, bytes]], out_dir: Path) -> Path:
    for name, data in members:
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return out_dir


def requirements_digest(requirements: Path = REQUIREMENTS, *extra: str) -> str:
    return hashlib.sha256(requirements.read_bytes() + "\0".join(extra).encode()).hexdigest()[:16]


def install_lib(requirements: Path, target: Path, for_container: bool = True, python: str | None = None) -> Path:
    """`pip install --target` the requirements file, for the containers or for `python` (this
    interpreter by default). The requirements file is read on its own, as a container would."""
    target.mkdir(parents=True, exist_ok=True)
    command = [python or sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-compile", "--target", str(target)]
    if for_container:
        command += PLATFORM_ARGS
    # run from an empty folder: a relative `-r` or path in the file must not resolve against the repository
    subprocess.run([*command, "-r", str(requirements.resolve())], check=True, cwd=target,
                   env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_TARGET")})
    return target


def lib_members(lib: Path, prefix: str) -> list[tuple[str, bytes]]:
    return [(f"{prefix}{p.relative_to(lib).as_posix()}", p.read_bytes()) for p in _files(lib)]


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def deterministic_targz(out: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar.gz whose bytes depend only on the members' names and contents."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    # level 1: the vendored libraries make these archives hundreds of MB; speed matters more than size
    with open(tmp, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(members):
            _add_bytes(tar, name, data)
    tmp.replace(out)
    return out
