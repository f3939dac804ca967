"""SageMaker Processing script (pipeline step Evaluate): candidate vs production on the fixed evaluation set.

Inputs under /opt/ml/processing/input: candidate/ and production/ (each a model.tar.gz or an
unpacked model folder) and eval/ (dataset folders: NAME.mha, NAME_mask.mha, NAME_labels.json).
Output: /opt/ml/processing/evaluation/{evaluation.json, roc.png, calibration.png}. The pipeline's
CheckImprovement step reads `improvement.auc` and `candidate.sensitivity` from evaluation.json.
"""

from __future__ import annotations

import vendored  # noqa: F401  (first: the code's lib/ on sys.path in a container)

import argparse
import json
import sys
from pathlib import Path

from discscope.artifact import model_in
from discscope.dataset import dataset_folders
from discscope.evaluate import compare_models


def main(argv: list[str] | None = None) -> int:
    base = Path("/opt/ml/processing")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", type=Path, default=base / "input" / "candidate")
    parser.add_argument("--production", type=Path, default=base / "input" / "production")
    parser.add_argument("--eval", type=Path, default=base / "input" / "eval")
    parser.add_argument("--output-dir", type=Path, default=base / "evaluation")
    args = parser.parse_args(argv)
    data = dataset_folders(args.eval)
    if not data:
        print(f"no evaluation cases under {args.eval}", file=sys.stderr)
        return 1
    report = compare_models(model_in(args.candidate), model_in(args.production), data, args.output_dir)
    for role in ("production", "candidate"):
        r = report[role]
        print(f"{role:<11} {r['version']}: AUC {r['auc']} sensitivity {r['sensitivity']} specificity {r['specificity']} ECE {r['ece']}")
    print(f"improvement {json.dumps(report['improvement'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
