"""SageMaker training job script; the model goes to SM_MODEL_DIR (SageMaker tars it as model.tar.gz).

`--mode full` (default) trains both networks; every SM_CHANNEL_* folder is training data.
`--mode classifier` is the retraining pipeline's TrainClassifier step: channel `production` holds
the production model (its U-Net is kept), channel `feedback` the output of preprocess_feedback.py,
the other channels the original training data; `--init production|scratch` picks the classifier's
starting weights. Hyperparameters arrive as command-line flags (SageMaker passes them that way) or in SM_HPS.
"""

from __future__ import annotations

import vendored  # noqa: F401  (first: the code's lib/ on sys.path in a container)

import argparse
import json
import os
from pathlib import Path

from discscope.artifact import model_in, write_code_dir
from discscope.dataset import dataset_folders
from discscope.evaluate import plot_training_curves
from discscope.train import TrainConfig, train, train_classifier

MODEL_CHANNELS = ("SM_CHANNEL_PRODUCTION", "SM_CHANNEL_FEEDBACK", "SM_CHANNEL_CODE")


def channels() -> list[str]:
    """Dataset folders from the data channels (all but production, feedback and code)."""
    found = sorted((k, v) for k, v in os.environ.items() if k.startswith("SM_CHANNEL_") and k not in MODEL_CHANNELS)
    # a channel without cases stays in the list, so training names it in its "no cases" error
    return [str(d) for _, path in found for d in dataset_folders(path) or [Path(path)]]


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
        metadata = train_classifier(data, model_in(production), model_dir, feedback_dirs=feedback,
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
