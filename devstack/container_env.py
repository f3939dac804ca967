"""The local stand-in for a SageMaker container's Python: the image's packages and the code's lib/.

A PyTorch Deep Learning Container brings Python, torch and boto3; everything else the code needs
travels with it in `lib/` (`sagemaker/vendored.py` puts it on sys.path). Locally a step runs on:

- an "image" interpreter: a fresh venv that sees only torch, boto3 and what they depend on (linked
  from this interpreter's site-packages, nothing copied), so a dependency missing from the
  requirements file fails here as it would in the container;
- `lib/` installed by pip from the code's own `container-requirements.txt`, read on its own (as
  the CDK does for the containers' Python at synth time), for this interpreter.

Both are cached under `.cache/containers/` by content (package versions, requirements bytes): the
first run builds them, later runs reuse them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from importlib import metadata
from pathlib import Path

from cdk import container_code

CACHE = Path(os.environ.get("DISCSCOPE_CACHE", container_code.REPO / ".cache")) / "containers"
IMAGE_PACKAGES = ("torch", "boto3")  # what the images bring besides Python
PY = f"py{sys.version_info.major}{sys.version_info.minor}"


def _name(requirement: str) -> str | None:
    """The distribution a Requires-Dist line names, if it applies without extras on this platform."""
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return None
    return req.name


def closure(names: tuple[str, ...] = IMAGE_PACKAGES) -> list[metadata.Distribution]:
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        key = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if key in seen:
            continue
        dist = metadata.distribution(key)
        seen[key] = dist
        todo += [n for n in map(_name, dist.requires or []) if n]
    return [seen[k] for k in sorted(seen)]


def _top_level(dist: metadata.Distribution, site: Path) -> set[str]:
    tops = set()
    for file in dist.files or []:
        first = Path(file).parts[0]
        if first != ".." and (site / first).exists():
            tops.add(first)
    return tops


def image_python(cache: Path = CACHE) -> Path:
    """The interpreter of the local "image": a venv seeing only IMAGE_PACKAGES and their needs."""
    dists = closure()
    key = hashlib.sha256(f"{sys.version}|{[(d.name, d.version) for d in dists]}".encode()).hexdigest()[:12]
    env = cache / f"image-{PY}-{key}"
    python = env / "bin" / "python"
    if (env / ".complete").is_file():
        return python
    shutil.rmtree(env, ignore_errors=True)
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
    site = Path(sysconfig.get_paths()["purelib"])
    linked = env / "image-site"
    linked.mkdir()
    for dist in dists:
        for top in _top_level(dist, site):
            if not (linked / top).exists():
                (linked / top).symlink_to(site / top)
    env_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    (env_site / "image.pth").write_text(f"{linked}\n")
    (env / ".complete").write_text("")
    return python


def provide_lib(code_dir: Path, cache: Path = CACHE) -> Path | None:
    """code_dir/lib as the container would have it: installed from code_dir's requirements file
    (cached by its bytes); None when the code carries no requirements file."""
    requirements = code_dir / container_code.REQUIREMENTS.name
    if (code_dir / "lib").exists() or not requirements.is_file():
        return None
    lib = cache / f"lib-{PY}-{container_code.requirements_digest(requirements, sys.version)}"
    if not (lib / ".complete").is_file():
        shutil.rmtree(lib, ignore_errors=True)
        container_code.install_lib(requirements, lib, for_container=False)
        (lib / ".complete").write_text("")
    (code_dir / "lib").symlink_to(lib, target_is_directory=True)
    return lib
