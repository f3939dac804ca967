"""SageMaker training job script: every SM_CHANNEL_* folder is training data; the model goes to SM_MODEL_DIR.

Hyperparameters arrive as command-line flags (SageMaker passes them that way) or in SM_HPS.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from discscope.artifact import write_code_dir
from discscope.evaluate import plot_training_curves
from discscope.train import TrainConfig, train


def channels() -> list[str]:
    found = sorted((k, v) for k, v in os.environ.items() if k.startswith("SM_CHANNEL_"))
    # nested layouts (a channel holding dataset folders) are searched one level down too
    dirs = []
    for _, path in found:
        p = Path(path)
        subdirs = [d for d in sorted(p.iterdir()) if d.is_dir() and any(d.glob("*_mask.mha"))]
        dirs += [str(d) for d in subdirs] if not any(p.glob("*_mask.mha")) and subdirs else [str(p)]
    return dirs


def main() -> None:
    hps = json.loads(os.environ.get("SM_HPS", "{}"))
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=int(hps.get("seed", 0)))
    parser.add_argument("--seg-iters", type=int, default=int(hps.get("seg-iters", 1000)))
    parser.add_argument("--cls-iters", type=int, default=int(hps.get("cls-iters", 900)))
    parser.add_argument("--init", default=hps.get("init"), help="path of production weights to fine-tune from")
    parser.add_argument("--version", default=hps.get("version"))
    args, _ = parser.parse_known_args()
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    data = channels()
    if not data:
        raise SystemExit("no SM_CHANNEL_* data folders")
    config = TrainConfig(seed=args.seed, seg_iters=args.seg_iters, cls_iters=args.cls_iters,
                         init_weights=args.init or None, version=args.version)
    metadata = train(data, model_dir, config)
    # SageMaker tars SM_MODEL_DIR as model.tar.gz: add the serving code in its expected place.
    write_code_dir(model_dir / "code")
    output = Path(os.environ.get("SM_OUTPUT_DATA_DIR", model_dir.parent / "output"))
    output.mkdir(parents=True, exist_ok=True)
    plot_training_curves(metadata["history"], output / "training_curves.png")


if __name__ == "__main__":
    main()
