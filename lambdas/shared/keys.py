"""S3 keys and study ids: uploads are keyed by study id and a known extension, never by the user's file name."""

from __future__ import annotations

import re
import uuid
from urllib.parse import unquote_plus

UPLOADS = "uploads/"
RESULTS = "results/"
CORRECTED = "feedback/user_corrected_labels/"
INITIAL = "feedback/initial_model_predictions/"
RESULT_FILES = ("result.json", "preview.png", "mask.png", "overlay.png", "mask.mha", "slices.jpg", "slices_mask.png")

# Extensions the study readers know, longest match first (.nii.gz before .gz)
UPLOAD_EXTENSIONS = (".nii.gz", ".mha", ".mhd", ".nii", ".zip", ".png", ".jpeg", ".jpg", ".dcm", ".gz")

_STUDY_ID = re.compile(r"^[0-9a-f]{32}$")


def new_study_id() -> str:
    return uuid.uuid4().hex


def is_study_id(value: str) -> bool:
    return bool(_STUDY_ID.match(value or ""))


def upload_extension(filename: str) -> str:
    """The one part of a user's file name an S3 key may carry: a known extension (`.nii.gz` whole).

    The name itself can hold a patient's name, so it stays in the study record only.
    """
    lower = (filename or "").strip().lower()
    return next((ext for ext in UPLOAD_EXTENSIONS if lower.endswith(ext)), "")


def upload_key(study_id: str, filename: str) -> str:
    return f"{UPLOADS}{study_id}/upload{upload_extension(filename)}"


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
