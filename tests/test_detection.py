"""Naming discs from a binary mask, choosing the key slice, and cropping for the classifier."""

from __future__ import annotations

import numpy as np

from discscope import detection


def _spine(n_discs=5, shape=(9, 200, 120)):
    binary = np.zeros(shape, bool)
    for i in range(n_discs):
        r = 20 + 35 * i
        binary[1:8, r : r + 8, 40:75] = True
    return binary


def test_levels_from_lowest_up_and_noise_dropped():
    binary = _spine()
    binary[4, 5:7, 100:102] = True  # speck: noise
    labels = detection.label_discs(binary, (1.0, 1.0, 1.0))
    values = sorted(int(v) for v in np.unique(labels) if v)
    assert values == [1, 2, 3, 4, 5]
    rows = [np.argwhere(labels == v)[:, 1].mean() for v in values]
    assert rows == sorted(rows, reverse=True)  # 1 = lowest
    assert labels[4, 5, 100] == 0


def test_off_spine_blob_dropped_and_at_most_six():
    binary = _spine(n_discs=7, shape=(9, 270, 200))
    binary[1:8, 100:108, 150:185] = True  # disc-sized, 110 mm off the spine's column
    labels = detection.label_discs(binary, (1.0, 1.0, 1.0))
    assert labels.max() == 6
    assert labels[4, 104, 160] == 0


def test_key_slice_and_boxes():
    binary = _spine()
    binary[4, 20:28, 30:40] = True  # slice 4 shows the most disc
    labels = detection.label_discs(binary, (1.0, 1.0, 1.0))
    k = detection.key_slice(labels)
    assert k == 4
    boxes = detection.boxes_on_slice(labels, k)
    (x1, y1, x2, y2), area = boxes[5]  # top disc (rows 20..27)
    assert (x1, y1, x2, y2) == (30, 20, 75, 28) and area == 8 * 45


def test_crop_channels_follow_slice_spacing():
    norm = np.stack([np.full((100, 100), i, np.float32) for i in range(12)])
    crop = detection.crop_disc(norm, 6, (40, 45, 60, 55), slice_mm=1.0)
    assert crop.shape == (3, 64, 64)
    assert [float(c.mean()) for c in crop] == [3.0, 6.0, 9.0]  # +-3 slices at 1 mm
    crop = detection.crop_disc(norm, 0, (40, 45, 60, 55), slice_mm=4.0)
    assert [float(c.mean()) for c in crop] == [0.0, 0.0, 1.0]  # clamped at the edge
