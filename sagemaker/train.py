"""SageMaker training job script; the model goes to SM_MODEL_DIR (SageMaker tars it as model.tar.gz).

`--mode full` (default) trains both networks; every SM_CHANNEL_* folder is training data.
`--mode classifier` is the retraining pipeline's TrainClassifier step: channel `production` holds
the production model (its U-Net is kept), channel `feedback` the output of preprocess_feedback.py,
the other channels the original training data; `--init production|scratch` picks the classifier's
starting weights. Hyperparameters arrive as command-line flags (SageMaker passes them that way) or in SM_HPS.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from discscope.artifact import write_code_dir
from discscope.evaluate import plot_training_curves
from discscope.train import TrainConfig, train, train_classifier

MODEL_CHANNELS = ("SM_CHANNEL_PRODUCTION", "SM_CHANNEL_FEEDBACK")


def channels() -> list[str]:
    """Dataset folders from the data channels (all but production/feedback)."""
    found = sorted((k, v) for k, v in os.environ.items() if k.startswith("SM_CHANNEL_") and k not in MODEL_CHANNELS)
    # nested layouts (a channel holding dataset folders) are searched one level down too
    dirs = []
    for _, path in found:
        p = Path(path)
        subdirs = [d for d in sorted(p.iterdir()) if d.is_dir() and any(d.glob("*_mask.mha"))]
        dirs += [str(d) for d in subdirs] if not any(p.glob("*_mask.mha")) and subdirs else [str(p)]
    return dirs


def model_file(channel: Path) -> Path:
    """A model.tar.gz in the channel, or the channel folder itself when it holds model.pt."""
    tars = sorted(channel.glob("*.tar.gz"))
    return tars[0] if tars else channel


def main() -> None:
    hps = json.loads(os.environ.get("SM_HPS", "{}"))
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=int(hps.get("seed", 0)))
    parser.add_argument("--seg-iters", type=int, default=int(hps.get("seg-iters", 1000)))
    parser.add_argument("--cls-iters", type=int, default=int(hps.get("cls-iters", TrainConfig.cls_iters)))
    parser.add_argument("--init", default=hps.get("init"), help="full: a model to fine-tune from; classifier: production or scratch")
    parser.add_argument("--version", default=hps.get("version"))
    parser.add_argument("--mode", choices=("full", "classifier"), default=hps.get("mode", "full"))
    args, _ = parser.parse_known_args()
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    data = channels()
    if not data:
        raise SystemExit("no SM_CHANNEL_* data folders")
    config = TrainConfig(seed=args.seed, seg_iters=args.seg_iters, cls_iters=args.cls_iters, version=args.version)
    if args.mode == "classifier":
        production = os.environ.get("SM_CHANNEL_PRODUCTION")
        if not production:
            raise SystemExit("--mode classifier needs the 'production' channel (the model to start from)")
        feedback = [os.environ["SM_CHANNEL_FEEDBACK"]] if os.environ.get("SM_CHANNEL_FEEDBACK") else []
        metadata = train_classifier(data, model_file(Path(production)), model_dir, feedback_dirs=feedback,
                                    init=args.init or "production", config=config)
    else:
        config.init_weights = args.init or None
        metadata = train(data, model_dir, config)
    # SageMaker tars SM_MODEL_DIR as model.tar.gz: add the serving code in its expected place.
    write_code_dir(model_dir / "code")
    output = Path(os.environ.get("SM_OUTPUT_DATA_DIR", model_dir.parent / "output"))
    output.mkdir(parents=True, exist_ok=True)
    plot_training_curves(metadata["history"], output / "training_curves.png")


if __name__ == "__main__":
    main()
