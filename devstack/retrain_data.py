"""The local retraining pipeline's datasets: the original training set and the fixed evaluation set.

In AWS they live under the model bucket's `datasets/train/` and `datasets/eval/` (the pipeline's
TrainDataUri and EvalDataUri). Locally they are phantom folders made once, with a progress bar, on
the first retraining run (seeded, so every machine gets the same sets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from discscope.phantom import generate_dataset
from discscope.progress import Progress


@dataclass
class RetrainData:
    root: Path
    train_cases: int = 40
    eval_cases: int = 30
    train_seed: int = 11
    eval_seed: int = 99  # the held-out phantoms of bench/quality.py
    extra_train: list[Path] = field(default_factory=list)  # e.g. ../shared/data/real-ivd

    def ensure(self) -> tuple[list[Path], Path]:
        train = self._make("train", self.train_cases, self.train_seed)
        evaluation = self._make("eval", self.eval_cases, self.eval_seed)
        return [train, *self.extra_train], evaluation

    def _make(self, name: str, n: int, seed: int) -> Path:
        folder = Path(self.root) / f"{name}-n{n}-s{seed}"
        done = folder / ".complete"
        if not done.is_file():
            progress = Progress(f"phantoms ({name})", n)
            generate_dataset(folder, n, seed=seed, progress=lambda i, total: progress.update(i))
            progress.close()
            done.write_text("ok\n")
        return folder
