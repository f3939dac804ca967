"""Pictures of a result: greyscale key slice, colour mask, and the overlay people look at."""

from __future__ import annotations

import cv2
import numpy as np

from .levels import MASK_LEVELS

# BGR colour per mask value; herniated boxes are drawn in red, others in the level colour.
LEVEL_COLOURS = {1: (255, 128, 0), 2: (0, 200, 255), 3: (80, 220, 80), 4: (255, 0, 200), 5: (0, 140, 255), 6: (200, 200, 0)}
HERNIATED = (40, 40, 255)


def to_uint8(slice_: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(slice_, [0.5, 99.5])
    return np.clip((slice_ - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def colour_mask(labels: np.ndarray) -> np.ndarray:
    """RGBA-in-BGRA: level colours, opaque on discs, transparent elsewhere (the page sets opacity)."""
    out = np.zeros((*labels.shape, 4), np.uint8)
    for value, colour in LEVEL_COLOURS.items():
        sel = labels == value
        out[sel, :3] = colour
        out[sel, 3] = 255
    return out


def overlay(grey: np.ndarray, labels: np.ndarray, discs: list, scale: int | None = None) -> np.ndarray:
    scale = scale or max(1, int(np.ceil(512 / max(grey.shape))))
    base = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    tint = colour_mask(labels)[..., :3]
    sel = labels > 0
    base[sel] = (0.55 * base[sel] + 0.45 * tint[sel]).astype(np.uint8)
    big = cv2.resize(base, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for d in discs:
        x1, y1, x2, y2 = (int(v * scale) for v in d.box)
        colour = HERNIATED if d.herniated else LEVEL_COLOURS.get(d.value, (255, 255, 255))
        cv2.rectangle(big, (x1, y1), (x2, y2), colour, 2 if d.herniated else 1)
        text = f"{d.level} {d.probability:.2f}" + (" LDH" if d.herniated else "")
        cv2.putText(big, text, (x2 + 4, (y1 + y2) // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(big, text, (x2 + 4, (y1 + y2) // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return big


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


__all__ = ["MASK_LEVELS", "colour_mask", "overlay", "png_bytes", "to_uint8"]
