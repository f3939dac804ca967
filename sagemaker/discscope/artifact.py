"""Model artifacts: weights + metadata in a folder, packed in SageMaker's model.tar.gz layout."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import torch

from .errors import ModelError

WEIGHTS = "model.pt"
METADATA = "metadata.json"
PACKAGE_DIR = Path(__file__).resolve().parent
INFERENCE_SCRIPT = PACKAGE_DIR.parent / "inference.py"
# What the SageMaker PyTorch serving container must add to run code/inference.py.
CODE_REQUIREMENTS = "SimpleITK==2.5.7\nopencv-python-headless==5.0.0.93\n"


def save_model_dir(out_dir: str | Path, weights: dict, metadata: dict) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(weights, out / WEIGHTS)
    (out / METADATA).write_text(json.dumps(metadata, indent=1, sort_keys=True))
    return out


def write_code_dir(code_dir: str | Path) -> Path:
    """The serving code SageMaker's PyTorch container expects under code/: script, package, requirements."""
    if not INFERENCE_SCRIPT.is_file():
        raise ModelError(f"{INFERENCE_SCRIPT} not found: package the model from a source checkout")
    code = Path(code_dir)
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy2(INFERENCE_SCRIPT, code / "inference.py")
    shutil.copytree(PACKAGE_DIR, code / "discscope", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    (code / "requirements.txt").write_text(CODE_REQUIREMENTS)
    return code


def pack(model_dir: str | Path, out_tar: str | Path) -> Path:
    """model.tar.gz: model.pt, metadata.json and code/ (inference.py, discscope/, requirements.txt)."""
    model_dir, out_tar = Path(model_dir), Path(out_tar)
    out_tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(out_tar, "w:gz") as tar:
        for name in (WEIGHTS, METADATA):
            tar.add(model_dir / name, arcname=name)
        tar.add(write_code_dir(Path(tmp) / "code"), arcname="code")
    return out_tar


def model_in(folder: str | Path) -> Path:
    """The model in a SageMaker input folder: a model.tar.gz there, or the folder itself (model.pt)."""
    tars = sorted(Path(folder).glob("*.tar.gz"))
    return tars[0] if tars else Path(folder)


def resolve_model_dir(path: str | Path) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """A folder with model.pt, or a model.tar.gz unpacked to a temporary folder (kept by the caller)."""
    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS).is_file():
            raise ModelError(f"{path} has no {WEIGHTS}")
        return path, None
    if path.is_file() and tarfile.is_tarfile(path):
        tmp = tempfile.TemporaryDirectory(prefix="discscope-model-")
        with tarfile.open(path) as tar:
            members = [m for m in tar.getmembers() if m.name in (WEIGHTS, METADATA) and m.isfile()]
            tar.extractall(tmp.name, members=members, filter="data")
        if not (Path(tmp.name) / WEIGHTS).is_file():
            raise ModelError(f"{path} holds no {WEIGHTS}")
        return Path(tmp.name), tmp
    raise ModelError(f"model not found: {path}")


def load_weights(model_dir: Path) -> tuple[dict, dict]:
    try:
        weights = torch.load(model_dir / WEIGHTS, map_location="cpu", weights_only=True)
        metadata = json.loads((model_dir / METADATA).read_text()) if (model_dir / METADATA).is_file() else {}
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"cannot load the model in {model_dir}: {exc}") from exc
    return weights, metadata


def files_hash(paths: list[Path]) -> str:
    """sha256 over names and bytes of the files, in sorted order: the training data's identity."""
    digest = hashlib.sha256()
    for p in sorted(paths, key=lambda p: p.name):
        digest.update(p.name.encode())
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
