"""Running a model on a study: batched slice segmentation, disc naming, herniation scoring, artifacts."""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from . import detection, render
from .artifact import load_weights, resolve_model_dir
from .errors import NoSpineFound
from .io import Volume
from .levels import MASK_LEVELS
from .models import HerniationNet, UNet2D, fuse_for_inference, pick_device
from .preprocess import Grid, normalize


@dataclass
class Prediction:
    labels: np.ndarray  # canonical (slice, row, col) instance mask in the level convention
    key_slice: int
    discs: list[detection.Disc]
    norm: np.ndarray = field(repr=False)
    timings_ms: dict[str, float] = field(default_factory=dict)


def segmentation_batch_size(device: torch.device) -> int:
    # Measured with bench/inference.py: on CPU small batches stay in cache (2 beat 16 by ~1.5x);
    # a GPU wants many slices per launch.
    return 64 if device.type == "cuda" else 2


class Predictor:
    """Both networks of one model version, ready on one device."""

    def __init__(self, model_path: str | Path, device: str | None = None):
        model_dir, self._tmp = resolve_model_dir(model_path)
        weights, self.metadata = load_weights(model_dir)
        self.device = pick_device(device)
        unet = UNet2D(**weights["unet_config"])
        unet.load_state_dict(weights["unet"])
        classifier = HerniationNet(**weights["classifier_config"])
        classifier.load_state_dict(weights["classifier"])
        # Inference only: BatchNorm folded into the convolutions, NHWC layout (faster on CPU and GPU).
        self.unet = fuse_for_inference(unet).to(self.device, memory_format=torch.channels_last)
        self.classifier = fuse_for_inference(classifier).to(self.device, memory_format=torch.channels_last)
        self.temperature = float(weights.get("temperature", 1.0))
        self.threshold = float(weights.get("threshold", 0.5))
        self.seg_threshold = float(weights.get("seg_threshold", 0.5))
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unknown"))

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def segment(self, slices: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Disc probabilities for (S, H, W) model-grid slices, `batch_size` slices per forward pass."""
        batch_size = batch_size or segmentation_batch_size(self.device)
        out = np.empty(slices.shape, np.float32)
        for start in range(0, len(slices), batch_size):
            x = torch.from_numpy(slices[start : start + batch_size, None]).to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits = self.unet(x)
            out[start : start + batch_size] = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        return out

    @torch.inference_mode()
    def score_crops(self, crops: np.ndarray) -> np.ndarray:
        """Calibrated herniation probabilities for (N, 3, 64, 64) crops."""
        if len(crops) == 0:
            return np.zeros(0, np.float32)
        with self._autocast():
            logits = self.classifier(torch.from_numpy(crops).to(self.device).contiguous(memory_format=torch.channels_last))
        return torch.sigmoid(logits.float() / self.temperature).cpu().numpy()

    def predict(self, volume: Volume, batch_size: int | None = None) -> Prediction:
        t0 = time.perf_counter()
        norm = normalize(volume.array)
        grid = Grid.for_slices(volume.shape[1:], volume.spacing[1], volume.spacing[2])
        model_in = grid.to_model(norm)
        t1 = time.perf_counter()
        probs = grid.to_input(self.segment(model_in, batch_size))
        t2 = time.perf_counter()
        labels = detection.label_discs(probs > self.seg_threshold, volume.spacing)
        k = detection.key_slice(labels)
        boxes = detection.boxes_on_slice(labels, k)
        discs = [detection.Disc(MASK_LEVELS[v], v, box, area) for v, (box, area) in sorted(boxes.items())]
        t3 = time.perf_counter()
        crops = np.stack([detection.crop_disc(norm, k, d.box, volume.spacing[0]) for d in discs]) if discs else np.zeros((0, 3, 64, 64), np.float32)
        for d, p in zip(discs, self.score_crops(crops)):
            d.probability = float(p)
            d.herniated = bool(p >= self.threshold)
        t4 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1e3, "segment": (t2 - t1) * 1e3, "label": (t3 - t2) * 1e3,
                   "classify": (t4 - t3) * 1e3, "total": (t4 - t0) * 1e3}
        return Prediction(labels, k, discs, norm, {k_: round(v, 1) for k_, v in timings.items()})

    def result(self, volume: Volume, prediction: Prediction | None = None) -> dict:
        """The endpoint's JSON response (DESIGN.md contract) with base64 PNGs and the mask volume."""
        pred = prediction or self.predict(volume)
        if not pred.discs:
            raise NoSpineFound()
        t0 = time.perf_counter()
        k = pred.key_slice
        grey = render.to_uint8(pred.norm[k])
        key_labels = pred.labels[k]
        sprite, sprite_mask, sprite_layout = render.slice_sprites(pred.norm, pred.labels)
        body = {
            "model_version": self.version,
            "slice_index": int(k),
            "image_size": [int(grey.shape[0]), int(grey.shape[1])],
            "num_slices": int(volume.shape[0]),
            "spacing_mm": [round(float(s), 4) for s in volume.spacing],
            "discs": [d.to_dict() for d in pred.discs],
            "preview_png": _b64(render.png_bytes(grey)),
            "mask_png": _b64(render.png_bytes(render.colour_mask(key_labels))),
            "overlay_png": _b64(render.png_bytes(render.overlay(grey, key_labels, pred.discs))),
            "mask_mha": _b64(mask_mha_bytes(volume, pred.labels)),
            "slices_jpg": _b64(render.jpeg_bytes(sprite)),
            "slices_mask_png": _b64(render.png_bytes(sprite_mask)),
            "slices": sprite_layout,
        }
        pred.timings_ms["render"] = round((time.perf_counter() - t0) * 1e3, 1)
        body["timings_ms"] = pred.timings_ms
        return body


def mask_mha_bytes(volume: Volume, labels: np.ndarray) -> bytes:
    fd, name = tempfile.mkstemp(suffix=".mha")
    os.close(fd)
    try:
        sitk.WriteImage(volume.mask_image(labels), name, useCompression=True)
        return Path(name).read_bytes()
    finally:
        os.unlink(name)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
