"""Intensity normalisation and in-plane resampling shared by training and inference."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MODEL_SPACING_MM = 1.0  # the U-Net sees every slice at this in-plane pixel size
PAD_MULTIPLE = 16  # four 2x poolings


def normalize(array: np.ndarray) -> np.ndarray:
    """Robust per-volume scaling to about [0, 1]: MR intensities have no absolute unit.

    NaN/Inf voxels (a few are allowed through by the readers) are left out of the percentiles and
    become background (0), so they change nothing else.
    """
    sample = array[:, ::2, ::2] if array.size > 4_000_000 else array
    finite = np.isfinite(sample)
    if not finite.all():
        sample = sample[finite]
    lo, hi = np.percentile(sample, [1.0, 99.5]) if sample.size else (0.0, 0.0)
    scale = hi - lo if hi > lo else 1.0
    out = (array.astype(np.float32) - np.float32(lo)) / np.float32(scale)
    broken = ~np.isfinite(out)
    if broken.any():
        out[broken] = 0.0
    return np.clip(out, 0.0, 2.0, out=out)


# OpenCV 5 takes at most 128 channels per image (CV_CN_MAX; OpenCV 4 took 512)
MAX_CHANNELS = 128


def resize_stack(stack: np.ndarray, height: int, width: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resize every slice of (S, H, W) at once: OpenCV treats slices as channels (MAX_CHANNELS at a time)."""
    if stack.shape[1:] == (height, width):
        return stack
    out = np.empty((stack.shape[0], height, width), stack.dtype)
    for start in range(0, stack.shape[0], MAX_CHANNELS):
        chunk = np.ascontiguousarray(stack[start : start + MAX_CHANNELS].transpose(1, 2, 0))
        resized = cv2.resize(chunk, (width, height), interpolation=interpolation)
        out[start : start + MAX_CHANNELS] = resized.reshape(height, width, -1).transpose(2, 0, 1)
    return out


@dataclass(frozen=True)
class Grid:
    """How a study's slices map to the model grid and back."""

    in_shape: tuple[int, int]
    model_shape: tuple[int, int]  # after resampling, before padding
    padded_shape: tuple[int, int]

    @classmethod
    def for_slices(cls, in_shape: tuple[int, int], row_mm: float, col_mm: float) -> "Grid":
        h = max(PAD_MULTIPLE, int(round(in_shape[0] * row_mm / MODEL_SPACING_MM)))
        w = max(PAD_MULTIPLE, int(round(in_shape[1] * col_mm / MODEL_SPACING_MM)))
        ph = -(-h // PAD_MULTIPLE) * PAD_MULTIPLE
        pw = -(-w // PAD_MULTIPLE) * PAD_MULTIPLE
        return cls(tuple(in_shape), (h, w), (ph, pw))

    def to_model(self, stack: np.ndarray) -> np.ndarray:
        h, w = self.model_shape
        resized = resize_stack(stack, h, w)  # INTER_AREA is limited to 4 channels in OpenCV
        ph, pw = self.padded_shape
        return np.pad(resized, ((0, 0), (0, ph - h), (0, pw - w)))

    def to_input(self, stack: np.ndarray) -> np.ndarray:
        h, w = self.model_shape
        return resize_stack(np.ascontiguousarray(stack[:, :h, :w]), *self.in_shape)
