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
SCRIPTS_DIR = PACKAGE_DIR.parent
# code/ of a model.tar.gz: the serving entry point, the sys.path hook of the vendored dependencies
# and the package. No requirements.txt: SageMaker's serving container would pip-install it at start.
SERVING_SCRIPTS = ("inference.py", "vendored.py")
VENDORED_LIB = SCRIPTS_DIR / "lib"  # present in a container's code (installed at build time), not in a checkout


def save_model_dir(out_dir: str | Path, weights: dict, metadata: dict) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(weights, out / WEIGHTS)
    (out / METADATA).write_text(json.dumps(metadata, indent=1, sort_keys=True))
    return out


def write_code_dir(code_dir: str | Path, lib: Path | None = VENDORED_LIB) -> Path:
    """The serving code SageMaker's PyTorch container expects under code/: entry point, package, and
    the vendored dependencies (`lib/`) when this code has them (in a training container it does)."""
    missing = [name for name in SERVING_SCRIPTS if not (SCRIPTS_DIR / name).is_file()]
    if missing:
        raise ModelError(f"{missing} not found beside {PACKAGE_DIR}: package the model from a source checkout")
    code = Path(code_dir)
    code.mkdir(parents=True, exist_ok=True)
    for name in SERVING_SCRIPTS:
        shutil.copy2(SCRIPTS_DIR / name, code / name)
    shutil.copytree(PACKAGE_DIR, code / "discscope", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    if lib is not None and lib.is_symlink():  # the local pipeline's lib is a link into its cache: stays a link
        (code / "lib").symlink_to(lib.resolve(), target_is_directory=True)
    elif lib is not None and lib.is_dir():
        shutil.copytree(lib, code / "lib", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    return code


def pack(model_dir: str | Path, out_tar: str | Path) -> Path:
    """model.tar.gz: model.pt, metadata.json and code/ (inference.py, vendored.py, discscope/)."""
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
