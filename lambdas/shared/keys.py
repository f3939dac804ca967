"""S3 keys and study ids (DESIGN.md contracts), and the sanitising of user-supplied file names."""

from __future__ import annotations

import re
import unicodedata
import uuid
from urllib.parse import unquote_plus

UPLOADS = "uploads/"
RESULTS = "results/"
CORRECTED = "feedback/user_corrected_labels/"
INITIAL = "feedback/initial_model_predictions/"
RESULT_FILES = ("result.json", "preview.png", "mask.png", "overlay.png", "mask.mha", "slices.jpg", "slices_mask.png")

_STUDY_ID = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def new_study_id() -> str:
    return uuid.uuid4().hex


def is_study_id(value: str) -> bool:
    return bool(_STUDY_ID.match(value or ""))


def safe_filename(name: str, max_length: int = 100) -> str:
    """A file name that is safe as one S3 key segment: no directories, no traversal, ASCII only.

    Keeps the extension (`.nii.gz` included) because the format sniffing may use it.
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    stem, _, ext = _UNSAFE.sub("_", base).partition(".")
    stem, ext = stem.strip("._")[:max_length] or "study", ext.strip("._")[:16]
    return f"{stem}.{ext}" if ext else stem


def upload_key(study_id: str, filename: str) -> str:
    return f"{UPLOADS}{study_id}/{safe_filename(filename)}"


def parse_upload_key(raw_key: str) -> tuple[str, str] | None:
    """(study_id, filename) from an S3 event key (URL-encoded), or None if it is not a study upload."""
    key = unquote_plus(raw_key)
    if not key.startswith(UPLOADS):
        return None
    parts = key[len(UPLOADS):].split("/")
    if len(parts) != 2 or not is_study_id(parts[0]) or not parts[1]:
        return None
    return parts[0], parts[1]


def results_prefix(study_id: str) -> str:
    """Where a study's artifacts live (the endpoint writes there, the Infer step names it)."""
    return f"{RESULTS}{study_id}/"


def result_key(study_id: str, name: str) -> str:
    if name not in RESULT_FILES:
        raise ValueError(f"unknown result file {name}")
    return f"{results_prefix(study_id)}{name}"


def corrected_key(study_id: str) -> str:
    return f"{CORRECTED}overlay_{study_id}.txt"


def initial_key(study_id: str) -> str:
    return f"{INITIAL}initial_{study_id}.txt"
