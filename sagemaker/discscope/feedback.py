"""Clinician feedback as training data: YOLO files -> labelled disc samples (+ a labels CSV).

Feedback lives in two S3 folders (DESIGN.md): `user_corrected_labels/overlay_{id}.txt` (a person
drew or fixed the boxes) and `initial_model_predictions/initial_{id}.txt` (a person accepted the
model's result). A correction outranks an acceptance for the same study.

Each disc becomes one sample: the key slice and its +-3 mm neighbours cut to a window around the
box (twice the classifier's crop, so training can still jitter the crop) and the herniation label.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import detection
from .levels import YOLO_CLASSES, parse_yolo_class

CORRECTED_DIR, INITIAL_DIR = "user_corrected_labels", "initial_model_predictions"
_NAME = {CORRECTED_DIR: re.compile(r"^overlay_([0-9a-f]{32})\.txt$"), INITIAL_DIR: re.compile(r"^initial_([0-9a-f]{32})\.txt$")}
KIND = {CORRECTED_DIR: "correction", INITIAL_DIR: "accept"}
LABELS_CSV = "labels.csv"
REPORT_JSON = "report.json"
CSV_FIELDS = ("file", "study_id", "level", "herniated", "kind", "x1", "y1", "x2", "y2")
WINDOW_SCALE = 2.0  # window side / classifier crop side


class FeedbackError(ValueError):
    """One feedback file (or its study) cannot be used; the message says why."""


@dataclass(frozen=True)
class FeedbackFile:
    study_id: str
    kind: str  # "correction" or "accept"
    path: Path


@dataclass(frozen=True)
class YoloBox:
    level: str
    herniated: bool
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in key-slice pixels


@dataclass
class DiscSample:
    """A labelled disc: 3 slices (key slice in the middle) and its box on them."""
    stack: np.ndarray  # float16 (3, H, W), normalised intensities
    box: tuple[int, int, int, int]
    label: int
    slice_mm: float
    level: str = ""


def find_feedback(root: str | Path) -> tuple[list[FeedbackFile], list[dict]]:
    """One file per study (correction over acceptance) and the files that were not used, with why."""
    root = Path(root)
    chosen: dict[str, FeedbackFile] = {}
    skipped: list[dict] = []
    for folder in (CORRECTED_DIR, INITIAL_DIR):  # corrections first: they win
        for path in sorted((root / folder).glob("*")) if (root / folder).is_dir() else []:
            match = _NAME[folder].match(path.name)
            if not match or not path.is_file():
                skipped.append({"file": f"{folder}/{path.name}", "reason": "UNEXPECTED_FILE_NAME"})
                continue
            study = match.group(1)
            if study in chosen:
                skipped.append({"file": f"{folder}/{path.name}", "study_id": study, "reason": "SUPERSEDED_BY_CORRECTION"})
                continue
            chosen[study] = FeedbackFile(study, KIND[folder], path)
    return [chosen[s] for s in sorted(chosen)], skipped


def parse_yolo(text: str, width: int, height: int) -> list[YoloBox]:
    """Boxes in pixels of a `width` x `height` key slice; FeedbackError names the first bad line."""
    boxes, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 5:
                raise ValueError
            cls = int(parts[0])
            cx, cy, w, h = (float(p) for p in parts[1:])
        except ValueError:
            raise FeedbackError(f"line {number}: expected 'class cx cy w h', got {line.strip()[:80]!r}") from None
        if not 0 <= cls < len(YOLO_CLASSES):
            raise FeedbackError(f"line {number}: class {cls} is outside 0..{len(YOLO_CLASSES) - 1}")
        if not all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            raise FeedbackError(f"line {number}: coordinates must lie in [0, 1] with a non-zero size")
        level, herniated = parse_yolo_class(cls)
        if level in seen:
            raise FeedbackError(f"line {number}: level {level} appears twice")
        seen.add(level)
        boxes.append(YoloBox(level, herniated, ((cx - w / 2) * width, (cy - h / 2) * height,
                                                (cx + w / 2) * width, (cy + h / 2) * height)))
    if not boxes:
        raise FeedbackError("the file holds no boxes")
    return boxes


def disc_window(norm: np.ndarray, k: int, box: tuple[float, float, float, float], slice_mm: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The (3, h, w) window around a box on slice k (neighbours at about +-3 mm) and the box inside it."""
    off = detection.neighbour_offset(slice_mm)
    n, height, width = norm.shape
    idx = [min(max(k + d, 0), n - 1) for d in (-off, 0, off)]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    half = WINDOW_SCALE * detection.CROP_SCALE * max(x2 - x1, y2 - y1, 8) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    wx1, wy1 = max(int(cx - half), 0), max(int(cy - half), 0)
    wx2, wy2 = min(int(np.ceil(cx + half)), width), min(int(np.ceil(cy + half)), height)
    stack = norm[idx, wy1:wy2, wx1:wx2].astype(np.float16)
    return stack, (x1 - wx1, y1 - wy1, x2 - wx1, y2 - wy1)


def study_samples(norm: np.ndarray, key_slice: int, slice_mm: float, boxes: list[YoloBox]) -> list[tuple[YoloBox, DiscSample]]:
    if not 0 <= key_slice < norm.shape[0]:
        raise FeedbackError(f"key slice {key_slice} is outside the study's {norm.shape[0]} slices")
    out = []
    for b in boxes:
        stack, box = disc_window(norm, key_slice, b.box, slice_mm)
        out.append((b, DiscSample(stack, box, int(b.herniated), slice_mm, b.level)))
    return out


def save_samples(out_dir: str | Path, rows: list[tuple[str, str, YoloBox, DiscSample]], report: dict) -> Path:
    """rows: (study_id, kind, box, sample). Writes crops/*.npz, labels.csv and report.json."""
    out = Path(out_dir)
    (out / "crops").mkdir(parents=True, exist_ok=True)
    with (out / LABELS_CSV).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for study_id, kind, b, s in rows:
            name = f"crops/{study_id}_{b.level}.npz"
            np.savez_compressed(out / name, stack=s.stack, box=np.array(s.box), slice_mm=np.float32(s.slice_mm))
            writer.writerow({"file": name, "study_id": study_id, "level": b.level, "herniated": int(b.herniated), "kind": kind,
                             **{k: round(v, 1) for k, v in zip(("x1", "y1", "x2", "y2"), b.box)}})
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1, sort_keys=True))
    return out


def load_samples(folder: str | Path) -> list[DiscSample]:
    """The samples written by save_samples (an empty list when the folder has no labels.csv)."""
    folder = Path(folder)
    if not (folder / LABELS_CSV).is_file():
        return []
    samples = []
    with (folder / LABELS_CSV).open(newline="") as fh:
        for row in csv.DictReader(fh):
            data = np.load(folder / row["file"])
            samples.append(DiscSample(data["stack"], tuple(int(v) for v in data["box"]), int(row["herniated"]),
                                      float(data["slice_mm"]), row["level"]))
    return samples
