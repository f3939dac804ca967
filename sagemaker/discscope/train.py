"""Training both networks on any mix of dataset folders; writes a model folder with metadata."""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import __version__, detection, metrics
from .artifact import files_hash, load_weights, resolve_model_dir, save_model_dir
from .dataset import Case, find_cases, load_case
from .feedback import DiscSample, disc_window, load_samples
from .levels import MASK_LEVELS
from .models import HerniationNet, UNet2D, pick_device
from .preprocess import Grid, normalize, resize_stack
from .progress import Progress


@dataclass
class TrainConfig:
    seed: int = 0
    seg_iters: int = 1000
    cls_iters: int = 3000
    seg_batch: int = 12
    cls_batch: int = 48
    patch: int = 128
    unet_base: int = 12
    cls_width: int = 16
    lr: float = 2e-3
    val_fraction: float = 0.15
    eval_every: int = 100
    patience: int = 4  # U-Net evaluations without improvement before stopping
    cls_eval_every: int = 150
    cls_patience: int = 8  # classifier AUC is noisier on a small validation set: wait longer
    init_weights: str | None = None  # start from an existing model folder/tar (fine-tuning)
    version: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class SegSlice:
    image: np.ndarray  # float16 model-grid slice
    mask: np.ndarray  # uint8 binary


class EarlyStopping:
    """Keeps the best weights seen at validation; says when `patience` validations brought nothing."""

    def __init__(self, model: torch.nn.Module, patience: int, higher_is_better: bool):
        self.model, self.patience = model, patience
        self.sign = 1.0 if higher_is_better else -1.0
        self.best, self.best_value, self.state, self.stale = -math.inf, None, None, 0

    def update(self, value: float) -> bool:
        """Record a validation value; True when training should stop."""
        if self.sign * value > self.best:
            self.best, self.best_value, self.stale = self.sign * value, value, 0
            self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.stale += 1
        return self.stale >= self.patience

    def restore(self) -> None:
        if self.state:
            self.model.load_state_dict(self.state)
        self.model.eval()


def _split(cases: list[Case], fraction: float, rng: np.random.Generator) -> tuple[list[Case], list[Case]]:
    """Per source folder, hold out a fraction (at least one case where a folder has three or more)."""
    train, val = [], []
    for source in sorted({c.source for c in cases}):
        group = [c for c in cases if c.source == source]
        order = rng.permutation(len(group))
        n_val = max(1, int(round(len(group) * fraction))) if len(group) >= 3 else 0
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    return train, val


def _prepare(cases: list[Case], progress: Progress | None, segmentation: bool = True
             ) -> tuple[dict[int, list[SegSlice]], list[DiscSample], dict[int, list[DiscSample]]]:
    """Segmentation slices (unless `segmentation` is off) and labelled disc samples of the cases."""
    seg: dict[int, list[SegSlice]] = {}
    discs_by_source: dict[int, list[DiscSample]] = {}
    all_discs: list[DiscSample] = []
    for i, case in enumerate(cases):
        volume, mask, labels = load_case(case)
        norm = normalize(volume.array)
        if segmentation:
            grid = Grid.for_slices(volume.shape[1:], volume.spacing[1], volume.spacing[2])
            img = grid.to_model(norm).astype(np.float16)
            h, w = grid.model_shape
            ph, pw = grid.padded_shape
            m = resize_stack((mask > 0).astype(np.uint8), h, w, cv2.INTER_NEAREST)
            m = np.pad(m, ((0, 0), (0, ph - h), (0, pw - w)))
            has = m.reshape(len(m), -1).any(axis=1)
            for s in range(len(img)):
                # every slice with disc, and the disc-free ones too (fewer): the net must learn "no disc"
                if has[s] or s % 3 == 0:
                    seg.setdefault(case.source, []).append(SegSlice(img[s], m[s]))
        k = detection.key_slice(mask)
        for value, (box, _area) in detection.boxes_on_slice(mask, k).items():
            level = MASK_LEVELS[value]
            if level not in labels:
                continue
            stack, window_box = disc_window(norm, k, box, volume.spacing[0])
            sample = DiscSample(stack, window_box, int(labels[level]), volume.spacing[0], level)
            discs_by_source.setdefault(case.source, []).append(sample)
            all_discs.append(sample)
        if progress:
            progress.update(i + 1)
    if progress:
        progress.close()
    return seg, all_discs, discs_by_source


def disc_samples(cases: list[Case], progress: Progress | None = None) -> list[DiscSample]:
    """The labelled discs (key slice, ground-truth boxes) of dataset cases: the classifier's view of them."""
    return _prepare(cases, progress, segmentation=False)[1]


def crop(sample: DiscSample) -> np.ndarray:
    """The classifier's (3, 64, 64) input for a sample, as at inference (no augmentation)."""
    return _crop(sample, None)


def _augment_slice(img: np.ndarray, mask: np.ndarray, patch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation/scale/shift into a patch centred near a disc most of the time, plus intensity."""
    h, w = img.shape
    if mask.any() and rng.random() < 0.8:
        ys, xs = np.nonzero(mask)
        j = rng.integers(len(ys))
        cy, cx = ys[j] + rng.normal(0, 20), xs[j] + rng.normal(0, 20)
    else:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    angle = rng.uniform(-15, 15)
    scale = rng.uniform(0.8, 1.25)
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, scale)
    m[:, 2] += (patch / 2 - cx, patch / 2 - cy)
    out = cv2.warpAffine(img.astype(np.float32), m, (patch, patch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    out_m = cv2.warpAffine(mask, m, (patch, patch), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return _augment_intensity(out, rng), out_m


def _augment_intensity(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = np.clip(x, 0, None) ** rng.uniform(0.7, 1.4)
    x = x * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.0))
    x = x + rng.normal(0, rng.uniform(0, 0.05), x.shape).astype(np.float32)
    return x.astype(np.float32)


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    denom = p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    return (1 - (2 * inter + 1) / (denom + 1)).mean()


def _sample_source(sources: list[int], rng: np.random.Generator) -> int:
    return sources[rng.integers(len(sources))]


def _seg_val_dice(unet: UNet2D, val: list[SegSlice], device: torch.device) -> float:
    unet.eval()
    inter = total = 0.0
    with torch.inference_mode():
        for start in range(0, len(val), 16):
            batch = val[start : start + 16]
            shape = tuple(max(s.image.shape[d] for s in batch) for d in (0, 1))
            x = np.zeros((len(batch), 1, *shape), np.float32)
            y = np.zeros((len(batch), *shape), bool)
            for i, s in enumerate(batch):
                x[i, 0, : s.image.shape[0], : s.image.shape[1]] = s.image
                y[i, : s.mask.shape[0], : s.mask.shape[1]] = s.mask > 0
            p = torch.sigmoid(unet(torch.from_numpy(x).to(device)))[:, 0].cpu().numpy() > 0.5
            inter += (p & y).sum()
            total += p.sum() + y.sum()
    unet.train()
    return float(2 * inter / total) if total else 1.0


def _crop(sample: DiscSample, rng: np.random.Generator | None) -> np.ndarray:
    jitter = None
    if rng is not None:
        jitter = np.array([rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06), rng.uniform(0.85, 1.15)])
    # The stored window is already (k - off, k, k + off): crop with offset 1 around its middle.
    crop = detection.crop_disc(sample.stack.astype(np.float32), 1, sample.box, slice_mm=detection.NEIGHBOUR_MM, jitter=jitter)
    if rng is not None:
        crop = np.stack([_augment_intensity(c, rng) for c in crop]) if rng.random() < 0.8 else crop
        if rng.random() < 0.5:
            crop = crop[:, ::-1].copy()  # superior/inferior mirror keeps posterior posterior
        if rng.random() < 0.5:
            crop = crop[::-1].copy()  # left/right neighbour swap
    return crop.astype(np.float32)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising validation NLL (grid search in log space: robust on small sets)."""
    if len(np.unique(labels)) < 2:
        return 1.0
    best_t, best_nll = 1.0, math.inf
    for t in np.exp(np.linspace(np.log(0.05), np.log(20), 400)):
        z = logits / t
        nll = float(np.mean(np.logaddexp(0, z) - labels * z))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def _train_unet(unet: UNet2D, seg_train: dict[int, list[SegSlice]], seg_val: list[SegSlice], config: TrainConfig,
                rng: np.random.Generator, device: torch.device, history: dict, log) -> float | None:
    """Segmentation training with validation Dice early stopping; returns the best validation Dice."""
    seg_sources = sorted(seg_train)
    opt = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(config.seg_iters, 1), pct_start=0.1)
    seg_stop = EarlyStopping(unet, config.patience, higher_is_better=True)
    progress = Progress("train U-Net", config.seg_iters)
    running = 0.0
    for it in range(1, config.seg_iters + 1):
        xs, ys = [], []
        for _ in range(config.seg_batch):
            pool = seg_train[_sample_source(seg_sources, rng)]
            s = pool[rng.integers(len(pool))]
            x, y = _augment_slice(s.image.astype(np.float32), s.mask, config.patch, rng)
            xs.append(x)
            ys.append(y)
        x = torch.from_numpy(np.stack(xs)[:, None]).to(device)
        y = torch.from_numpy(np.stack(ys)[:, None].astype(np.float32)).to(device)
        logits = unet(x)
        loss = F.binary_cross_entropy_with_logits(logits, y) + _dice_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running = 0.9 * running + 0.1 * loss.item() if it > 1 else loss.item()
        if it % config.eval_every == 0 or it == config.seg_iters:
            dice = _seg_val_dice(unet, seg_val, device) if seg_val else 1 - running
            history["seg_loss"].append([it, round(running, 4)])
            history["seg_val_dice"].append([it, round(dice, 4)])
            progress.update(it, f"loss {running:.3f} val dice {dice:.3f}")
            if seg_stop.update(dice):
                log(f"U-Net: early stop at iteration {it} (best validation Dice {seg_stop.best_value:.3f})")
                break
        elif it % 10 == 0:
            progress.update(it, f"loss {running:.3f}")
    progress.close()
    seg_stop.restore()
    return seg_stop.best_value


def _classifier_score(val_y: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    """(selection score, validation loss): AUC first (the target), loss only to break ties."""
    val_loss = float(np.mean(np.logaddexp(0, logits) - val_y * logits))
    auc = metrics.auc(val_y, logits)
    return (auc if auc is not None else 0.0) - 1e-3 * val_loss, val_loss


def _train_classifier(classifier: HerniationNet, disc_train: list[DiscSample], disc_by_source: dict[int, list[DiscSample]],
                      disc_val: list[DiscSample], config: TrainConfig, rng: np.random.Generator, device: torch.device,
                      history: dict, log, lr: float | None = None) -> tuple[torch.Tensor | None, np.ndarray]:
    """Balanced classifier training; keeps the weights with the best validation AUC. Returns the validation crops and labels."""
    lr = lr or config.lr
    disc_sources = sorted(disc_by_source)
    positives = [d for d in disc_train if d.label == 1]
    negatives = [d for d in disc_train if d.label == 0]
    opt = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(config.cls_iters, 1), pct_start=0.1)
    val_x = torch.from_numpy(np.stack([_crop(d, None) for d in disc_val])).to(device) if disc_val else None
    val_y = np.array([d.label for d in disc_val], np.float32)
    cls_stop = EarlyStopping(classifier, config.cls_patience, higher_is_better=True)
    progress = Progress("train classifier", config.cls_iters)
    for it in range(1, config.cls_iters + 1 if positives and negatives else 1):
        batch = []
        for j in range(config.cls_batch):
            # half positives, half negatives drawn across source folders
            pool = positives if j % 2 == 0 else [d for d in disc_by_source[_sample_source(disc_sources, rng)] if d.label == 0] or negatives
            batch.append(pool[rng.integers(len(pool))])
        x = torch.from_numpy(np.stack([_crop(d, rng) for d in batch])).to(device)
        y = torch.tensor([float(d.label) for d in batch], device=device)
        classifier.train()
        loss = F.binary_cross_entropy_with_logits(classifier(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (it % config.cls_eval_every == 0 or it == config.cls_iters) and val_x is not None:
            classifier.eval()
            with torch.inference_mode():
                vl = classifier(val_x).cpu().numpy()
            score, val_loss = _classifier_score(val_y, vl)
            history["cls_loss"].append([it, round(loss.item(), 4)])
            history["cls_val_loss"].append([it, round(val_loss, 4)])
            history.setdefault("cls_val_auc", []).append([it, round(score + 1e-3 * val_loss, 4)])
            progress.update(it, f"loss {loss.item():.3f} val loss {val_loss:.3f} val AUC {score + 1e-3 * val_loss:.3f}")
            if cls_stop.update(score):
                log(f"classifier: early stop at iteration {it}")
                break
        elif it % 10 == 0:
            progress.update(it, f"loss {loss.item():.3f}")
    progress.close()
    cls_stop.restore()
    return val_x, val_y


def _calibrate(classifier: HerniationNet, val_x: torch.Tensor | None, val_y: np.ndarray) -> tuple[float, dict]:
    """Temperature on the validation crops, and the calibrated validation metrics."""
    if val_x is None:
        return 1.0, {}
    with torch.inference_mode():
        vl = classifier(val_x).cpu().numpy()
    temperature = fit_temperature(vl, val_y)
    probs = 0.5 * (1 + np.tanh(vl / (2 * temperature)))  # the logistic function, without exp overflow
    return temperature, metrics.classification_metrics(val_y, probs, threshold=0.5)


def _setup(config: TrainConfig, data_dirs: list[str | Path], log) -> tuple[np.random.Generator, torch.device, list[Case], str]:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    device = pick_device()
    cases = find_cases(data_dirs)
    if not cases:
        raise ValueError(f"no cases (NAME.mha + NAME_mask.mha) in {', '.join(map(str, data_dirs))}")
    return rng, device, cases, files_hash([p for c in cases for p in c.files()])


def train(data_dirs: list[str | Path], out_dir: str | Path, config: TrainConfig | None = None, log=print) -> dict:
    """Train the U-Net and the classifier; write model.pt + metadata.json into out_dir. Returns metadata."""
    config = config or TrainConfig()
    t_start = time.time()
    rng, device, cases, data_hash = _setup(config, data_dirs, log)
    train_cases, val_cases = _split(cases, config.val_fraction, rng)
    log(f"{len(cases)} cases from {len(data_dirs)} folder(s): {len(train_cases)} train, {len(val_cases)} validation; device {device}")

    seg_train, disc_train, disc_by_source = _prepare(train_cases, Progress("load train", len(train_cases)))
    seg_val_map, disc_val, _ = _prepare(val_cases, Progress("load validation", len(val_cases))) if val_cases else ({}, [], {})
    seg_val = [s for slices in seg_val_map.values() for s in slices if s.mask.any()][:256]

    unet = UNet2D(base=config.unet_base).to(device)
    classifier = HerniationNet(width=config.cls_width).to(device)
    if config.init_weights:
        unet, classifier, _ = _load_networks(config.init_weights, device)

    history: dict[str, list] = {"seg_loss": [], "seg_val_dice": [], "cls_loss": [], "cls_val_loss": []}
    best_dice = _train_unet(unet, seg_train, seg_val, config, rng, device, history, log)
    val_x, val_y = _train_classifier(classifier, disc_train, disc_by_source, disc_val, config, rng, device, history, log)
    temperature, val_metrics = _calibrate(classifier, val_x, val_y)
    val_metrics["seg_dice"] = None if best_dice is None else round(best_dice, 4)

    version = config.version or f"{data_hash[:8]}-s{config.seed}"
    metadata = {
        "version": version,
        "data_hash": data_hash,
        "data": {"folders": [str(d) for d in data_dirs], "cases": len(cases),
                 "train_cases": [c.name for c in train_cases], "val_cases": [c.name for c in val_cases]},
        "metrics": {"validation": val_metrics},
        "history": history,
        "train_seconds": round(time.time() - t_start, 1),
    }
    return _save(out_dir, unet, classifier, temperature, config, device, metadata, log)


def train_classifier(data_dirs: list[str | Path], base_model: str | Path, out_dir: str | Path,
                     feedback_dirs: list[str | Path] = (), init: str = "production",
                     config: TrainConfig | None = None, log=print) -> dict:
    """Retrain only the herniation classifier (the retraining pipeline's TrainClassifier step).

    The U-Net is taken unchanged from `base_model` (the production model). The classifier starts
    from the production weights (`init="production"`, fine-tuned at a quarter of the learning
    rate) or anew (`init="scratch"`), and learns from the dataset folders' discs plus the feedback
    samples, which are drawn as one more source folder: feedback weighs as much as each data set.
    Validation (early stopping, temperature) uses held-out cases of the dataset folders only.
    """
    if init not in ("production", "scratch"):
        raise ValueError(f"init must be 'production' or 'scratch', not {init!r}")
    config = config or TrainConfig()
    t_start = time.time()
    rng, device, cases, data_hash = _setup(config, data_dirs, log)
    unet, classifier, parent = _load_networks(base_model, device)
    if init == "scratch":
        classifier = HerniationNet(width=config.cls_width).to(device)
    feedback = [s for d in feedback_dirs for s in load_samples(d)]
    feedback_hash = files_hash([p for d in feedback_dirs for p in Path(d).rglob("*") if p.is_file()]) if feedback else None
    train_cases, val_cases = _split(cases, config.val_fraction, rng)
    log(f"{len(cases)} cases ({len(train_cases)} train, {len(val_cases)} validation) + {len(feedback)} feedback discs; "
        f"classifier from {init}; device {device}")
    _, disc_train, disc_by_source = _prepare(train_cases, Progress("load train", len(train_cases)), segmentation=False)
    _, disc_val, _ = _prepare(val_cases, Progress("load validation", len(val_cases)), segmentation=False) if val_cases else ({}, [], {})
    if feedback:
        disc_by_source[max(disc_by_source, default=-1) + 1] = feedback
        disc_train = disc_train + feedback

    history: dict[str, list] = {"cls_loss": [], "cls_val_loss": []}
    lr = config.lr / 4 if init == "production" else config.lr
    val_x, val_y = _train_classifier(classifier, disc_train, disc_by_source, disc_val, config, rng, device, history, log, lr=lr)
    temperature, val_metrics = _calibrate(classifier, val_x, val_y)
    data_hash = hashlib.sha256(f"{parent.get('version')}|{data_hash}|{feedback_hash}|{init}".encode()).hexdigest()
    metadata = {
        "version": config.version or f"{data_hash[:8]}-s{config.seed}",
        "data_hash": data_hash,
        "parent_version": parent.get("version"),
        "retrain": {"init": init, "feedback_discs": len(feedback),
                    "feedback_positives": sum(s.label for s in feedback), "feedback_hash": feedback_hash},
        "data": {"folders": [str(d) for d in data_dirs], "cases": len(cases), "feedback_folders": [str(d) for d in feedback_dirs],
                 "train_cases": [c.name for c in train_cases], "val_cases": [c.name for c in val_cases]},
        "metrics": {"validation": val_metrics | {"seg_dice": parent.get("metrics", {}).get("validation", {}).get("seg_dice")}},
        "history": history,
        "train_seconds": round(time.time() - t_start, 1),
    }
    return _save(out_dir, unet, classifier, temperature, config, device, metadata, log)


def _load_networks(model: str | Path, device: torch.device) -> tuple[UNet2D, HerniationNet, dict]:
    model_dir, tmp = resolve_model_dir(model)
    try:
        weights, metadata = load_weights(model_dir)
    finally:
        if tmp:
            tmp.cleanup()
    unet = UNet2D(**weights["unet_config"]).to(device)
    unet.load_state_dict(weights["unet"])
    classifier = HerniationNet(**weights["classifier_config"]).to(device)
    classifier.load_state_dict(weights["classifier"])
    return unet, classifier, metadata


def _save(out_dir: str | Path, unet: UNet2D, classifier: HerniationNet, temperature: float, config: TrainConfig,
          device: torch.device, metadata: dict, log) -> dict:
    weights = {
        "unet": unet.state_dict(), "unet_config": {"base": unet.encoders[0][0].out_channels},
        "classifier": classifier.state_dict(), "classifier_config": {"width": classifier.features[0].out_channels},
        "temperature": temperature, "threshold": 0.5, "seg_threshold": 0.5,
    }
    metadata = metadata | {
        "discscope_version": __version__,
        "config": {k: v for k, v in asdict(config).items() if k != "extra"} | config.extra,
        "calibration": {"method": "temperature", "temperature": round(temperature, 4)},
        "threshold": 0.5,
        "torch": torch.__version__,
        "device": str(device),
    }
    save_model_dir(out_dir, weights, metadata)
    log(f"wrote {out_dir} (version {metadata['version']}) in {metadata['train_seconds']} s: {metadata['metrics']['validation']}")
    return metadata
