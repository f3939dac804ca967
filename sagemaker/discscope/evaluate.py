"""Scoring a model on dataset folders: JSON metrics plus ROC, calibration and overlay pictures."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from . import metrics, render
from .dataset import find_cases, load_case
from .levels import MASK_LEVELS
from .predictor import Predictor
from .progress import Progress


def evaluate(model: str | Path | Predictor, data_dirs: list[str | Path], out_dir: str | Path | None = None,
             n_overlays: int = 6) -> dict:
    predictor = model if isinstance(model, Predictor) else Predictor(model)
    cases = find_cases(data_dirs)
    if not cases:
        raise ValueError(f"no cases in {', '.join(map(str, data_dirs))}")
    out = Path(out_dir) if out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    per_level_dice: dict[str, list[float]] = {}
    n_true = n_pred = n_matched = n_named = 0
    labels, probs, levels = [], [], []
    per_case = []
    overlays = []
    progress = Progress("evaluate", len(cases))
    for i, case in enumerate(cases):
        volume, truth, herniation = load_case(case)
        pred = predictor.predict(volume)
        case_dice = {}
        for value in sorted(int(v) for v in np.unique(truth) if v):
            level = MASK_LEVELS[value]
            d = metrics.dice(pred.labels == value, truth == value)
            per_level_dice.setdefault(level, []).append(d)
            case_dice[level] = round(d, 4)
        pairs = metrics.match_discs(pred.labels, truth)
        true_values = [int(v) for v in np.unique(truth) if v]
        n_true += len(true_values)
        n_pred += len([v for v in np.unique(pred.labels) if v])
        n_matched += len(pairs)
        n_named += sum(p == t for p, t in pairs)
        by_value = {d.value: d for d in pred.discs}
        for p, t in pairs:
            level = MASK_LEVELS[t]
            if level in herniation and p in by_value:
                labels.append(int(herniation[level]))
                probs.append(by_value[p].probability)
                levels.append(level)
        per_case.append({"case": case.name, "dice": case_dice, "binary_dice": round(metrics.dice(pred.labels > 0, truth > 0), 4),
                         "named_right": sum(p == t for p, t in pairs), "discs": len(true_values),
                         "detected": len([v for v in np.unique(pred.labels) if v]), "ms": pred.timings_ms["total"]})
        if out and len(overlays) < n_overlays:
            grey = render.to_uint8(pred.norm[pred.key_slice])
            img = render.overlay(grey, pred.labels[pred.key_slice], pred.discs, scale=2)
            cv2.putText(img, case.name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            overlays.append(img)
        progress.update(i + 1)
    progress.close()

    labels_a, probs_a = np.array(labels), np.array(probs)
    result = {
        "model_version": predictor.version,
        "cases": len(cases),
        "dice_per_level": {lvl: round(float(np.mean(v)), 4) for lvl, v in per_level_dice.items()},
        "dice_mean": round(float(np.mean([d for v in per_level_dice.values() for d in v])), 4) if per_level_dice else None,
        "detection": {"recall": round(n_matched / max(n_true, 1), 4), "precision": round(n_matched / max(n_pred, 1), 4),
                      "true_discs": n_true, "predicted_discs": n_pred},
        "level_naming_accuracy": round(n_named / max(n_matched, 1), 4),
        "herniation": metrics.classification_metrics(labels_a, probs_a, predictor.threshold),
        "herniation_per_level": {
            lvl: metrics.classification_metrics(labels_a[np.array(levels) == lvl], probs_a[np.array(levels) == lvl], predictor.threshold)
            for lvl in sorted(set(levels))},
        "per_case": per_case,
    }
    if out:
        (out / "metrics.json").write_text(json.dumps(result, indent=1))
        if len(np.unique(labels_a)) == 2:
            plot_roc(labels_a, probs_a, out / "roc.png")
        if len(labels_a):
            plot_calibration(labels_a, probs_a, out / "calibration.png")
        if overlays:
            save_montage(overlays, out / "overlays.png")
    return result


def score_discs(model: str | Path | Predictor, samples: list) -> np.ndarray:
    """Calibrated herniation probabilities of a model for disc samples (ground-truth boxes)."""
    from .train import crop

    predictor = model if isinstance(model, Predictor) else Predictor(model)
    crops = np.stack([crop(s) for s in samples]) if samples else np.zeros((0, 3, 64, 64), np.float32)
    return np.concatenate([predictor.score_crops(crops[i : i + 256]) for i in range(0, len(crops), 256)] or [np.zeros(0)])


def classifier_report(labels: np.ndarray, probs: np.ndarray, levels: list[str], threshold: float) -> dict:
    """Herniation metrics overall and per level."""
    levels_a = np.array(levels)
    return metrics.classification_metrics(labels, probs, threshold) | {"per_level": {
        lvl: metrics.classification_metrics(labels[levels_a == lvl], probs[levels_a == lvl], threshold)
        for lvl in sorted(set(levels))}}


def compare_models(candidate: str | Path, production: str | Path, data_dirs: list[str | Path],
                   out_dir: str | Path | None = None) -> dict:
    """Candidate vs production herniation scoring on one fixed evaluation set (the pipeline's Evaluate step).

    Both models are scored on the discs' ground-truth boxes on the key slice: retraining changes
    only the classifier, so this isolates what changed; detection is shared and scored elsewhere.
    `improvement` holds candidate minus production. The `binary_classification_metrics` block is
    SageMaker's model-quality format for the Model Registry's ModelMetrics.
    """
    from .artifact import files_hash
    from .train import disc_samples

    cases = find_cases(data_dirs)
    if not cases:
        raise ValueError(f"no evaluation cases in {', '.join(map(str, data_dirs))}")
    samples = disc_samples(cases, Progress("load eval set", len(cases)))
    labels = np.array([s.label for s in samples])
    levels = [s.level for s in samples]
    report: dict = {"eval_set": {"folders": [str(d) for d in data_dirs], "cases": len(cases), "discs": len(samples),
                                 "positives": int(labels.sum()), "hash": files_hash([p for c in cases for p in c.files()])}}
    probs = {}
    for role, path in (("candidate", candidate), ("production", production)):
        predictor = Predictor(path)
        probs[role] = score_discs(predictor, samples)
        report[role] = {"version": predictor.version} | classifier_report(labels, probs[role], levels, predictor.threshold)
    c, p = report["candidate"], report["production"]
    report["improvement"] = {k: round((c[k] or 0.0) - (p[k] or 0.0), 4) for k in ("auc", "sensitivity", "specificity", "ece")}
    report["binary_classification_metrics"] = {
        name: {"value": c[key], "standard_deviation": "NaN"}
        for name, key in (("auc", "auc"), ("recall", "sensitivity"), ("true_negative_rate", "specificity"))}
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(report, indent=1, sort_keys=True))
        if len(np.unique(labels)) == 2:
            plot_roc(labels, probs, out / "roc.png", title="Herniation ROC: candidate vs production")
            plot_calibration(labels, probs["candidate"], out / "calibration.png")
    return report


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(labels: np.ndarray, probs: np.ndarray | dict[str, np.ndarray], path: Path, title: str = "Herniation ROC") -> None:
    """One ROC curve, or one per named model (`probs` as {name: probabilities})."""
    plt = _pyplot()
    curves = probs if isinstance(probs, dict) else {"": probs}
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    for name, p in curves.items():
        fpr, tpr = metrics.roc_curve(labels, p)
        ax.plot(fpr, tpr, lw=2, label=f"{name} AUC {metrics.auc(labels, p):.3f}".strip())
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_calibration(labels: np.ndarray, probs: np.ndarray, path: Path) -> None:
    plt = _pyplot()
    bins = metrics.reliability(labels, probs)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.plot([b[0] for b in bins], [b[1] for b in bins], "o-", lw=2,
            label=f"ECE {metrics.expected_calibration_error(labels, probs):.3f}")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title="Calibration", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_training_curves(history: dict, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    for key in ("seg_loss", "seg_val_dice"):
        if history.get(key):
            axes[0].plot(*zip(*history[key]), label=key)
    for key in ("cls_loss", "cls_val_loss", "cls_val_auc"):
        if history.get(key):
            axes[1].plot(*zip(*history[key]), label=key)
    axes[0].set(title="U-Net", xlabel="iteration")
    axes[1].set(title="herniation classifier", xlabel="iteration")
    for ax in axes:
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_montage(images: list[np.ndarray], path: Path, cols: int = 3) -> None:
    cols = min(cols, len(images))
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    padded = [cv2.copyMakeBorder(i, 0, h - i.shape[0], 0, w - i.shape[1], cv2.BORDER_CONSTANT) for i in images]
    while len(padded) % cols:
        padded.append(np.zeros_like(padded[0]))
    rows = [np.hstack(padded[r : r + cols]) for r in range(0, len(padded), cols)]
    cv2.imwrite(str(path), np.vstack(rows))
