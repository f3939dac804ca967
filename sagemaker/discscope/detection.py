"""From a disc probability map to named discs: components, level naming, key slice, boxes, crops."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import SimpleITK as sitk

from .levels import MAX_LEVELS

MIN_DISC_MM3 = 120.0  # smaller blobs are noise, not discs
CROP_SIZE = 64
CROP_SCALE = 1.8  # crop side / longer box side: keeps the canal behind the disc in view
NEIGHBOUR_MM = 3.0  # the 2.5D channels are about this far from the key slice


@dataclass
class Disc:
    level: str
    value: int  # mask value (1 = L5-S1)
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 on the key slice (x = column, y = row), inclusive-exclusive
    area_px: int
    probability: float = 0.0
    herniated: bool = False

    def to_dict(self) -> dict:
        return {"level": self.level, "box": list(self.box), "probability": round(float(self.probability), 4),
                "herniated": bool(self.herniated), "area_px": int(self.area_px)}


def label_discs(binary: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Instance mask in the level convention from a binary disc mask (slice, row, col).

    3D components are discs; tiny ones and ones far off the spine's column are dropped; the rest are
    named from the lowest (largest row centroid) up, at most six.
    """
    if not binary.any():
        return np.zeros(binary.shape, np.uint8)
    image = sitk.GetImageFromArray(binary.astype(np.uint8))
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(image, False))
    voxel_mm3 = float(np.prod(spacing))
    counts = np.bincount(components.ravel())
    ids = [i for i in range(1, len(counts)) if counts[i] * voxel_mm3 >= MIN_DISC_MM3]
    if not ids:
        return np.zeros(binary.shape, np.uint8)
    # Discs of one spine are of similar size: drop blobs far smaller than the typical disc.
    typical = np.median(sorted((counts[i] for i in ids), reverse=True)[:5])
    ids = [i for i in ids if counts[i] >= 0.2 * typical]
    centroids = {i: np.argwhere(components == i).mean(axis=0) for i in ids}
    # Off-spine blobs: column centroid far from the median disc column.
    median_col = np.median([c[2] for c in centroids.values()])
    ids = [i for i in ids if abs(centroids[i][2] - median_col) * spacing[2] <= 45.0]
    ids.sort(key=lambda i: -centroids[i][1])  # lowest (largest row) first
    out = np.zeros(binary.shape, np.uint8)
    for rank, comp in enumerate(ids[:MAX_LEVELS]):
        out[components == comp] = rank + 1
    return out


def key_slice(labels: np.ndarray) -> int:
    """The sagittal slice that shows the most disc: the mid-sagittal plane in practice."""
    if not labels.any():
        return labels.shape[0] // 2
    area = (labels > 0).reshape(labels.shape[0], -1).sum(axis=1)
    return int(np.argmax(area))


def boxes_on_slice(labels: np.ndarray, k: int) -> dict[int, tuple[tuple[int, int, int, int], int]]:
    """Mask value -> (box, area) on slice k; a disc missing on k falls back to its nearest slice."""
    out = {}
    for value in np.unique(labels[labels > 0]):
        present = np.flatnonzero((labels == value).reshape(labels.shape[0], -1).any(axis=1))
        s = k if k in present else int(present[np.argmin(np.abs(present - k))])
        rows, cols = np.nonzero(labels[s] == value)
        out[int(value)] = ((int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1), int(rows.size))
    return out


def neighbour_offset(slice_mm: float) -> int:
    return max(1, int(round(NEIGHBOUR_MM / max(slice_mm, 1e-3))))


def crop_disc(norm: np.ndarray, k: int, box: tuple[int, int, int, int], slice_mm: float,
              jitter: np.ndarray | None = None) -> np.ndarray:
    """(3, 64, 64) float32 crop around a box on slice k, with neighbours at about +-3 mm as channels.

    `jitter` (dx, dy, dscale) perturbs the crop during training to mimic imperfect boxes.
    """
    off = neighbour_offset(slice_mm)
    n = norm.shape[0]
    idx = [min(max(k + d, 0), n - 1) for d in (-off, 0, off)]
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = CROP_SCALE * max(x2 - x1, y2 - y1, 8)
    if jitter is not None:
        cx += jitter[0] * side
        cy += jitter[1] * side
        side *= jitter[2]
    scale = CROP_SIZE / side
    # Affine map from the crop to the slice, sampled with border replication.
    m = np.array([[scale, 0, CROP_SIZE / 2 - scale * cx], [0, scale, CROP_SIZE / 2 - scale * cy]], np.float32)
    stack = np.ascontiguousarray(norm[idx].transpose(1, 2, 0))
    crop = cv2.warpAffine(stack, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop.transpose(2, 0, 1).astype(np.float32)
