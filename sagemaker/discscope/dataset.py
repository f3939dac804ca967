"""Dataset folders (phantom and real alike): NAME.mha, NAME_mask.mha, NAME_labels.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import Volume, read_study


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    source: int  # index of the --data folder it came from (folders are sampled equally)

    @property
    def image_path(self) -> Path:
        return self.folder / f"{self.name}.mha"

    @property
    def mask_path(self) -> Path:
        return self.folder / f"{self.name}_mask.mha"

    @property
    def labels_path(self) -> Path:
        return self.folder / f"{self.name}_labels.json"

    def files(self) -> list[Path]:
        return [p for p in (self.image_path, self.mask_path, self.labels_path) if p.is_file()]


def find_cases(folders: list[str | Path]) -> list[Case]:
    cases = []
    for source, folder in enumerate(folders):
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"data folder not found: {folder}")
        for mask in sorted(folder.glob("*_mask.mha")):
            name = mask.name[: -len("_mask.mha")]
            if (folder / f"{name}.mha").is_file():
                cases.append(Case(name, folder, source))
    return cases


def dataset_folders(folder: str | Path) -> list[Path]:
    """The folder itself when it holds cases, else its subfolders that do (a SageMaker channel or
    processing input may hold one dataset or several)."""
    folder = Path(folder)
    if any(folder.glob("*_mask.mha")):
        return [folder]
    return [d for d in sorted(folder.iterdir()) if d.is_dir() and any(d.glob("*_mask.mha"))] if folder.is_dir() else []


def load_case(case: Case) -> tuple[Volume, np.ndarray, dict[str, bool]]:
    """(volume, canonical mask uint8, herniation label per level)."""
    volume = read_study(case.image_path)
    mask = read_study(case.mask_path).array.astype(np.uint8)
    labels = {}
    if case.labels_path.is_file():
        labels = {k: bool(v) for k, v in json.loads(case.labels_path.read_text()).get("herniation", {}).items()}
    return volume, mask, labels
