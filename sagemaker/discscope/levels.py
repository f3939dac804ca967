"""The level vocabulary shared by masks, detections and YOLO feedback (DESIGN.md contracts)."""

from __future__ import annotations

# Mask value -> level name. Levels are named from the lowest disc up: value 1 is the lowest disc.
MASK_LEVELS: dict[int, str] = {
    1: "L5-S1",
    2: "L4-L5",
    3: "L3-L4",
    4: "L2-L3",
    5: "L1-L2",
    6: "T12-L1",
}
LEVEL_VALUES: dict[str, int] = {name: value for value, name in MASK_LEVELS.items()}
MAX_LEVELS = len(MASK_LEVELS)

# YOLO class order for feedback files: each lumbar level, then the same level with herniation.
YOLO_LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
YOLO_CLASSES: tuple[str, ...] = tuple(c for lvl in YOLO_LEVELS for c in (lvl, f"{lvl}_LDH"))


def level_for_rank(rank: int) -> str:
    """Name of the disc that is `rank`-th from the bottom (0 = lowest)."""
    return MASK_LEVELS[rank + 1]


def yolo_class(level: str, herniated: bool) -> int:
    return YOLO_CLASSES.index(f"{level}_LDH" if herniated else level)


def parse_yolo_class(index: int) -> tuple[str, bool]:
    name = YOLO_CLASSES[index]
    return name.removesuffix("_LDH"), name.endswith("_LDH")
