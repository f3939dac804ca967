"""The synthetic phantom: reproducible, anatomically ordered, labelled, in the dataset layout."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from discscope import phantom
from discscope.dataset import find_cases, load_case
from discscope.levels import MASK_LEVELS


def test_same_seed_same_volume_other_seed_differs():
    a = phantom.generate(5)
    b = phantom.generate(5)
    c = phantom.generate(6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_levels_are_numbered_from_the_lowest_disc_up():
    for seed in range(4):
        image, mask, labels, spacing = phantom.generate(seed)
        values = sorted(int(v) for v in np.unique(mask) if v)
        assert values == list(range(1, len(values) + 1)) and len(values) in (5, 6)
        rows = {v: np.argwhere(mask == v)[:, 1].mean() for v in values}
        # value 1 (L5-S1) is lowest: the largest row index, since rows run superior -> inferior
        assert [rows[v] for v in values] == sorted(rows.values(), reverse=True)
        assert set(labels["herniation"]) == {MASK_LEVELS[v] for v in values}
        assert image.dtype == np.int16 and mask.shape == image.shape


def test_discs_are_brighter_nucleus_than_surrounding_and_csf_is_bright():
    image, mask, _, _ = phantom.generate(3)
    k = np.argmax((mask > 0).sum(axis=(1, 2)))
    disc_core = image[k][mask[k] > 0]
    assert np.percentile(disc_core, 90) > np.median(image[k])  # T2-bright nucleus


def test_herniation_is_posterior_disc_material():
    """A herniated disc's mask reaches further posterior (higher column) than the same disc healthy."""
    found = 0
    for seed in range(8):
        _, mask, labels, _ = phantom.generate(seed, herniation_rate=0.7)
        herniated = [lvl for lvl, h in labels["herniation"].items() if h]
        if not herniated:
            continue
        # compare posterior extent relative to disc centre for herniated vs healthy discs of the case
        def reach(value):
            pts = np.argwhere(mask == value)
            return pts[:, 2].max() - np.median(pts[:, 2])
        inv = {name: v for v, name in MASK_LEVELS.items()}
        h = np.mean([reach(inv[lvl]) for lvl in herniated])
        healthy = [reach(inv[lvl]) for lvl, hh in labels["herniation"].items() if not hh]
        if healthy:
            found += h > np.mean(healthy)
    assert found >= 4


def test_dataset_layout_is_readable(phantom_dir):
    cases = find_cases([phantom_dir])
    assert len(cases) == 6
    volume, mask, labels = load_case(cases[0])
    assert volume.shape == mask.shape
    meta = json.loads(cases[0].labels_path.read_text())
    assert set(meta["herniation"]) == set(labels)
    img = sitk.ReadImage(str(cases[0].image_path))
    assert img.GetSpacing()[2] == volume.spacing[0]  # slice thickness kept
