"""Quality targets, measured: leave-one-out on the real volumes, herniation AUC on held-out phantoms.

For each real volume V in shared/data/real-ivd: train on the other real volumes plus the training
phantoms, then score V (disc Dice per level, detection, level naming). Each fold model is also
scored on held-out phantoms (other seeds) for herniation AUC, sensitivity, specificity and ECE.
Results on the real volumes come from the FastCleverSeg IVD set (Ramos et al., MRI 2024,
doi 10.1016/j.mri.2024.03.021; Menezes-Reis et al., QIMS 2016, doi 10.21037/qims.2016.08.01).

    python bench/quality.py [--work out/quality] [--phantoms 80] [--test-phantoms 60]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "sagemaker"))

from discscope.evaluate import evaluate  # noqa: E402
from discscope.phantom import generate_dataset  # noqa: E402
from discscope.progress import Progress  # noqa: E402
from discscope.train import TrainConfig, train  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real-ivd"


def phantoms(folder: Path, n: int, seed: int) -> Path:
    if len(list(folder.glob("*_mask.mha"))) < n:
        progress = Progress(f"phantoms seed {seed}", n)
        generate_dataset(folder, n, seed=seed, progress=lambda i, _: progress.update(i))
        progress.close()
    return folder


def link_cases(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        for suffix in (".mha", "_mask.mha", "_labels.json"):
            target = folder / f"{name}{suffix}"
            if not target.exists():
                target.symlink_to(REAL / f"{name}{suffix}")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(REPO / "out" / "quality"))
    parser.add_argument("--phantoms", type=int, default=120)
    parser.add_argument("--test-phantoms", type=int, default=60)
    parser.add_argument("--seg-iters", type=int, default=TrainConfig.seg_iters)
    parser.add_argument("--cls-iters", type=int, default=TrainConfig.cls_iters)
    args = parser.parse_args()
    work = Path(args.work)
    real = sorted(p.name[: -len("_mask.mha")] for p in REAL.glob("*_mask.mha"))
    if len(real) < 2:
        sys.exit(f"need the real volumes in {REAL}")
    train_ph = phantoms(work / "phantoms-train", args.phantoms, seed=1)
    test_ph = phantoms(work / "phantoms-test", args.test_phantoms, seed=99)

    folds = []
    for held in real:
        fold = work / f"fold-{held}"
        model = fold / "model"
        if not (model / "model.pt").is_file():
            train([train_ph, link_cases(fold / "train-real", [n for n in real if n != held])], model,
                  TrainConfig(seg_iters=args.seg_iters, cls_iters=args.cls_iters))
        on_real = evaluate(model, [link_cases(fold / "test-real", [held])], fold / "eval-real")
        on_ph = evaluate(model, [test_ph], fold / "eval-phantoms")
        folds.append({"held_out": held, "real": on_real, "phantoms": on_ph})

    print("\nleave-one-out on real volumes (train: other real volumes + phantoms)")
    print(f"{'held out':<9} {'mean Dice':>9} " + " ".join(f"{lvl:>7}" for lvl in ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"))
          + f" {'recall':>7} {'precision':>9} {'naming':>7}")
    for f in folds:
        r = f["real"]
        print(f"{f['held_out']:<9} {r['dice_mean']:>9.3f} " + " ".join(f"{r['dice_per_level'].get(lvl, 0):>7.3f}"
              for lvl in ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"))
              + f" {r['detection']['recall']:>7.3f} {r['detection']['precision']:>9.3f} {r['level_naming_accuracy']:>7.3f}")
        print(f"{'':<9} false herniation calls on these healthy discs: "
              f"{1 - (r['herniation']['specificity'] or 0):.2f} of {r['herniation']['n']}")
    print("\nherniation on held-out phantoms (fold models)")
    print(f"{'model':<14} {'AUC':>6} {'sens':>6} {'spec':>6} {'ECE':>6} {'n':>5} {'pos':>5}")
    for f in folds:
        h = f["phantoms"]["herniation"]
        print(f"{'w/o ' + f['held_out']:<14} {h['auc']:>6.3f} {h['sensitivity']:>6.3f} {h['specificity']:>6.3f} "
              f"{h['ece']:>6.3f} {h['n']:>5} {h['positives']:>5}")
    summary = {
        "real_dice_mean": float(np.mean([f["real"]["dice_mean"] for f in folds])),
        "real_min_level_dice": float(min(min(f["real"]["dice_per_level"].values()) for f in folds)),
        "real_naming_accuracy": float(np.mean([f["real"]["level_naming_accuracy"] for f in folds])),
        "phantom_auc_mean": float(np.mean([f["phantoms"]["herniation"]["auc"] for f in folds])),
        "folds": [{"held_out": f["held_out"], "real": {k: v for k, v in f["real"].items() if k != "per_case"},
                   "phantoms": {k: v for k, v in f["phantoms"].items() if k != "per_case"}} for f in folds],
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nmean Dice {summary['real_dice_mean']:.3f} (lowest level {summary['real_min_level_dice']:.3f}), "
          f"naming accuracy {summary['real_naming_accuracy']:.3f}, phantom AUC {summary['phantom_auc_mean']:.3f}")
    print(f"details: {work}/summary.json, fold-*/eval-*/ (roc.png, calibration.png, overlays.png)")


if __name__ == "__main__":
    main()
