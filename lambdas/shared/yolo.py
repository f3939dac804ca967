"""YOLO feedback text: one line per disc, `class cx cy w h`, normalised to the key slice.

The class list mirrors `discscope.levels.YOLO_CLASSES` (a test keeps the two equal): Lambdas may
not import the discscope package.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
CLASSES: tuple[str, ...] = tuple(c for lvl in LEVELS for c in (lvl, f"{lvl}_LDH"))


class YoloError(ValueError):
    """A malformed line or box; the message names the line."""


@dataclass(frozen=True)
class Box:
    level: str
    herniated: bool
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def class_index(self) -> int:
        return CLASSES.index(f"{self.level}_LDH" if self.herniated else self.level)


def class_name(level: str, herniated: bool) -> str:
    if level not in LEVELS:
        raise YoloError(f"level {level!r} is not one of {', '.join(LEVELS)}")
    return f"{level}_LDH" if herniated else level


def to_lines(boxes: list[Box], width: int, height: int) -> str:
    """YOLO text for boxes in pixel coordinates of a `width` x `height` key slice."""
    if width <= 0 or height <= 0:
        raise YoloError("image size must be positive")
    lines = []
    for b in boxes:
        class_name(b.level, b.herniated)
        x1, x2 = sorted((min(max(b.x1, 0), width), min(max(b.x2, 0), width)))
        y1, y2 = sorted((min(max(b.y1, 0), height), min(max(b.y2, 0), height)))
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            raise YoloError(f"box for {b.level} has no area inside the {width}x{height} image")
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        lines.append(f"{b.class_index} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def parse(text: str, width: int, height: int) -> list[Box]:
    """Boxes back in pixel coordinates; raises YoloError naming the first bad line."""
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise YoloError(f"line {number}: expected 'class cx cy w h', got {line!r}")
        try:
            cls = int(parts[0])
            cx, cy, w, h = (float(p) for p in parts[1:])
        except ValueError:
            raise YoloError(f"line {number}: not numbers: {line!r}") from None
        if not 0 <= cls < len(CLASSES):
            raise YoloError(f"line {number}: class {cls} is outside 0..{len(CLASSES) - 1}")
        if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)) or w == 0 or h == 0:
            raise YoloError(f"line {number}: coordinates must be in [0, 1] with non-zero size")
        name = CLASSES[cls]
        boxes.append(Box(name.removesuffix("_LDH"), name.endswith("_LDH"),
                         (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height))
    return boxes
