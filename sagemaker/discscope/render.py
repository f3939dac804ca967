"""Pictures of a result: greyscale key slice, colour mask, and the overlay people look at."""

from __future__ import annotations

import cv2
import numpy as np

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




def slice_sprites(norm: np.ndarray, labels: np.ndarray, max_side: int = 256) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every slice in one grid image (greyscale) and the colour mask in a matching grid (BGRA).

    The web page's slice scroller shows cell i; one request instead of one per slice, and small
    enough (cells at most `max_side` pixels) to stay well inside the endpoint's response limit.
    """
    n, h, w = norm.shape
    scale = min(1.0, max_side / max(h, w))
    ch, cw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    lo, hi = np.percentile(norm[:, ::2, ::2], [0.5, 99.5])
    grey = np.zeros((rows * ch, cols * cw), np.uint8)
    mask = np.zeros((rows * ch, cols * cw, 4), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        cell = np.clip((norm[i] - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
        grey[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = cv2.resize(cell, (cw, ch), interpolation=cv2.INTER_AREA)
        mask[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = cv2.resize(colour_mask(labels[i]), (cw, ch), interpolation=cv2.INTER_NEAREST)
    return grey, mask, {"count": n, "columns": cols, "cell": [ch, cw]}


def jpeg_bytes(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
