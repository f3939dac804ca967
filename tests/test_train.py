"""Training end to end (tiny budgets), the SageMaker training script, and evaluation outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from discscope.evaluate import evaluate
from discscope.predictor import Predictor
from discscope.train import TrainConfig, train

from conftest import REPO


def test_train_writes_loadable_model_with_metadata(tmp_path, phantom_dir):
    config = TrainConfig(seed=3, seg_iters=6, cls_iters=6, eval_every=3, seg_batch=2, cls_batch=8, patch=64)
    lines = []
    meta = train([phantom_dir], tmp_path / "m", config, log=lines.append)
    assert meta["version"] == f"{meta['data_hash'][:8]}-s3"
    assert len(meta["data_hash"]) == 64
    assert meta["data"]["cases"] == 6 and meta["data"]["val_cases"]
    assert meta["calibration"]["temperature"] > 0
    assert meta["history"]["seg_val_dice"] and meta["history"]["cls_val_loss"]
    predictor = Predictor(tmp_path / "m")
    assert predictor.version == meta["version"]
    # same data and seed -> same data hash and version; training is seeded
    meta2 = train([phantom_dir], tmp_path / "m2", config, log=lines.append)
    assert meta2["version"] == meta["version"]


def test_sagemaker_training_script(tmp_path, phantom_dir):
    env = dict(os.environ, SM_CHANNEL_TRAIN=str(phantom_dir), SM_MODEL_DIR=str(tmp_path / "model"),
               SM_OUTPUT_DATA_DIR=str(tmp_path / "output"),
               SM_HPS=json.dumps({"seg-iters": 4, "cls-iters": 4, "seed": 1}))
    subprocess.run([sys.executable, str(REPO / "sagemaker" / "train.py")], env=env, check=True, timeout=600)
    model = tmp_path / "model"
    assert (model / "model.pt").is_file() and (model / "metadata.json").is_file()
    assert (model / "code" / "inference.py").is_file() and (model / "code" / "discscope" / "io" / "registry.py").is_file()
    assert (tmp_path / "output" / "training_curves.png").is_file()


def test_evaluate_writes_metrics_and_plots(tmp_path, baseline_model, phantom_dir):
    result = evaluate(baseline_model, [phantom_dir], tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["cases"] == 6 == result["cases"]
    assert set(saved["dice_per_level"]) >= {"L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2"}
    assert 0 <= saved["detection"]["recall"] <= 1 and 0 <= saved["level_naming_accuracy"] <= 1
    assert saved["herniation"]["n"] > 0 and saved["herniation"]["ece"] is not None
    assert (tmp_path / "eval" / "overlays.png").is_file()
    assert (tmp_path / "eval" / "calibration.png").is_file()
    if saved["herniation"]["auc"] is not None:
        assert (tmp_path / "eval" / "roc.png").is_file()


def test_serving_code_carries_the_vendored_lib(tmp_path):
    """In a training container the code has lib/ (installed at build time): the candidate's code/ gets it."""
    from discscope.artifact import write_code_dir

    lib = tmp_path / "lib" / "SimpleITK"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("# vendored\n")
    code = write_code_dir(tmp_path / "model" / "code", lib=tmp_path / "lib")
    assert (code / "lib" / "SimpleITK" / "__init__.py").read_text() == "# vendored\n"
    assert (code / "inference.py").is_file() and (code / "vendored.py").is_file()
    assert not (code / "requirements.txt").exists()
    bare = write_code_dir(tmp_path / "checkout" / "code")  # a source checkout has no lib/
    assert not (bare / "lib").exists()
