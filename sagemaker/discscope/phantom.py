"""Seeded synthetic sagittal T2-like lumbar MRI with disc masks and herniation labels.

The spine is a chain of vertebral bodies and discs laid along a lordotic curve in the sagittal
plane. Each structure is an elliptic cylinder in its own frame (u along the spine, v towards
posterior, w lateral), so a sagittal slice at lateral offset w cuts it as the 2D region
``f(u, v) <= 1 - (w / half_width)^2``. Herniation is a posterior protrusion of disc material into
the CSF-filled canal; a mild broad bulge is drawn on some healthy discs so that "posterior tissue"
alone does not give the label away.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk

from .levels import MASK_LEVELS

CHAIN_DISCS = 7  # L5-S1 .. T11-T12: more than can be labelled, so the field of view decides


@dataclass(eq=False)
class Segment:
    kind: str  # "body" | "disc" | "sacrum"
    center: np.ndarray  # (y, z) mm: y superior->inferior, z anterior->posterior
    phi: float  # tilt: the spine's upward tangent is (-cos phi, sin phi)
    height: float
    depth: float
    half_width: float
    level_rank: int = -1  # discs: 0 = L5-S1


@dataclass
class Herniation:
    rank: int
    depth: float  # mm beyond the posterior disc margin
    height: float
    half_width: float
    lateral: float
    migration: float
    intensity: float


def _frame(phi: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.array([-np.cos(phi), np.sin(phi)])  # towards superior
    n = np.array([np.sin(phi), np.cos(phi)])  # towards posterior
    return t, n


def _build_spine(rng: np.random.Generator) -> list[Segment]:
    scale = rng.uniform(0.85, 1.15)
    phi0 = np.deg2rad(rng.uniform(-26, -10))
    dphi = np.deg2rad(rng.uniform(1.2, 3.5))
    depth0 = rng.uniform(33, 42) * scale
    width0 = rng.uniform(19, 25) * scale
    segments: list[Segment] = []
    # Sacrum first (below L5-S1), then alternate disc / body going up.
    sac_phi = phi0 - np.deg2rad(rng.uniform(8, 20))
    sac_h = rng.uniform(40, 55) * scale
    pos = np.zeros(2)
    t, _ = _frame(sac_phi)
    segments.append(Segment("sacrum", pos.copy(), sac_phi, sac_h, depth0 * 0.95, width0 * 1.2))
    prev_h, prev_phi = sac_h, sac_phi
    for k in range(2 * CHAIN_DISCS):
        rank = k // 2
        phi = phi0 + k * dphi
        if k % 2 == 0:
            h = rng.uniform(7.5, 11.5) * scale * (0.85 if rank == 0 else 1.0) * (0.9 if rank >= 5 else 1.0)
            kind = "disc"
        else:
            h = rng.uniform(23, 29) * scale * (0.92 if rank >= 4 else 1.0)
            kind = "body"
        t, _ = _frame((phi + prev_phi) / 2)
        pos = pos + t * (prev_h / 2 + h / 2)
        depth = depth0 * (1 - 0.015 * rank) * rng.uniform(0.97, 1.03)
        segments.append(Segment(kind, pos.copy(), phi, h, depth, width0 * (1 - 0.02 * rank), rank if kind == "disc" else -1))
        prev_h, prev_phi = h, phi
    return segments


def _uv(seg: Segment, yy: np.ndarray, zz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, n = _frame(seg.phi)
    dy, dz = yy - seg.center[0], zz - seg.center[1]
    return dy * t[0] + dz * t[1], dy * n[0] + dz * n[1]


def generate(seed: int, herniation_rate: float = 0.3) -> tuple[np.ndarray, np.ndarray, dict, tuple[float, float, float]]:
    """Return (image int16, mask uint8, labels dict, spacing) in canonical (slice, row, col) order."""
    rng = np.random.default_rng(seed)
    segments = _build_spine(rng)
    discs = [s for s in segments if s.kind == "disc"]
    bodies = [s for s in segments if s.kind == "body"]

    # Field of view: bottom below the sacral promontory; top cut mid-body so no disc is partial.
    n_discs = int(rng.choice([5, 5, 6]))
    top_body = bodies[n_discs - 1]
    top_y = top_body.center[0] + rng.uniform(-0.3, 0.3) * top_body.height
    bottom_y = discs[0].center[0] + rng.uniform(25, 50)
    in_plane = float(rng.uniform(0.8, 1.25))
    thickness = float(rng.choice([1.0, 1.0, 1.5, 2.0, 3.0, 4.0]))
    fov_z = rng.uniform(190, 240)
    spine_z = rng.uniform(0.38, 0.5) * fov_z  # where the disc centres sit across the image
    z0 = np.mean([d.center[1] for d in discs[:5]]) - spine_z
    rows = int(round((bottom_y - top_y) / in_plane))
    cols = int(round(fov_z / in_plane))
    n_slices = int(round(rng.uniform(54, 70) / thickness))
    ys = top_y + np.arange(rows) * in_plane
    zs = z0 + np.arange(cols) * in_plane
    yy, zz = np.meshgrid(ys, zs, indexing="ij")
    xs = (np.arange(n_slices) - (n_slices - 1) / 2) * thickness + rng.uniform(-3, 3)

    # Herniations and degeneration per labelled disc.
    herniations: list[Herniation] = []
    labels: dict[str, bool] = {}
    degeneration = {}
    for rank in range(n_discs):
        level = MASK_LEVELS[rank + 1]
        base = herniation_rate * (1.4 if rank < 2 else 0.6)
        herniated = bool(rng.random() < base)
        labels[level] = herniated
        degeneration[rank] = rng.random() < (0.6 if herniated else 0.2)
        disc = discs[rank]
        if herniated:
            herniations.append(Herniation(
                rank, depth=rng.uniform(2.5, 8.0), height=disc.height * rng.uniform(0.35, 0.75),
                half_width=rng.uniform(4, 10), lateral=rng.choice([0.0, rng.uniform(-9, 9)]),
                migration=rng.uniform(-3, 3), intensity=rng.uniform(0.18, 0.5)))
        elif rng.random() < 0.4:  # a physiological bulge: broad and shallow, not a herniation
            herniations.append(Herniation(
                rank, depth=rng.uniform(0.3, 1.3), height=disc.height * 0.7, half_width=rng.uniform(12, 18),
                lateral=0.0, migration=0.0, intensity=rng.uniform(0.25, 0.4)))

    # Tissue intensities (T2-like, before scaling).
    muscle = rng.uniform(0.18, 0.3)
    fat = rng.uniform(0.6, 0.85)
    marrow = rng.uniform(0.35, 0.55)
    csf = rng.uniform(0.85, 1.0)
    annulus = rng.uniform(0.15, 0.3)
    canal_ap = rng.uniform(12, 17)
    canal_hw = rng.uniform(9, 12)

    image = np.empty((n_slices, rows, cols), np.float32)
    mask = np.zeros((n_slices, rows, cols), np.uint8)
    seg_uv = [_uv(s, yy, zz) for s in segments]
    texture = cv2.GaussianBlur(rng.standard_normal((rows, cols)).astype(np.float32), (0, 0), 3.0)
    # Posterior skin line follows the spine roughly: fat, then air.
    fat_start = spine_z + rng.uniform(55, 75) + 6 * np.sin(ys / 60 + rng.uniform(0, 6))[:, None]
    skin = fat_start + rng.uniform(10, 25)
    zrel = (zz - z0)

    for i, x in enumerate(xs):
        sl = np.full((rows, cols), muscle, np.float32) + 0.05 * texture
        sl[zrel < 12] = rng.uniform(0.25, 0.4) if i == 0 else sl[zrel < 12]  # anterior abdominal wall region
        sl[(zrel > fat_start)] = fat
        sl[(zrel > skin)] = 0.02
        # canal (CSF) along every body and disc
        for seg, (u, v) in zip(segments, seg_uv):
            if seg.kind == "sacrum" or abs(x) > canal_hw:
                continue
            lat = 1 - (x / canal_hw) ** 2
            inside = (np.abs(u) <= seg.height / 2 + 0.6) & (v > seg.depth / 2 + 0.5) & (v < seg.depth / 2 + 0.5 + canal_ap * np.sqrt(lat))
            sl[inside] = csf
            roots = inside & (np.abs(v - seg.depth / 2 - canal_ap * 0.6) < 1.2) & (abs(x) < 4)
            sl[roots] = 0.55
        # posterior elements behind the canal
        for seg, (u, v) in zip(segments, seg_uv):
            if seg.kind != "body":
                continue
            v0 = seg.depth / 2 + 0.5 + canal_ap + 1.0
            if abs(x) < 5:  # spinous process near the midline
                el = (u > -seg.height * 0.45) & (u < seg.height * 0.4) & (v > v0) & (v < v0 + 28 - 0.3 * np.abs(u))
            else:  # laminae / facets further out
                el = (np.abs(u) < seg.height * 0.5) & (v > v0 - 4) & (v < v0 + 12)
            sl[el] = 0.32 + 0.05 * texture[el]
            sl[el & ((v - v0 < 1.2) | (v0 + 28 - 0.3 * np.abs(u) - v < 1.2))] = 0.08
        # bodies, sacrum and discs (elliptic cross-section laterally)
        for seg, (u, v) in zip(segments, seg_uv):
            lat = 1 - (x / seg.half_width) ** 2
            if lat <= 0.02:
                continue
            half_d = seg.depth / 2 * np.sqrt(lat)
            if seg.kind in ("body", "sacrum"):
                shape = (np.abs(u) / (seg.height / 2)) ** 6 + (np.abs(v) / half_d) ** 4
                sl[shape <= 1] = 0.06  # cortex
                sl[shape <= 0.8] = marrow + 0.06 * texture[shape <= 0.8]
            else:
                rank = seg.level_rank
                degen = degeneration.get(rank, False)
                h = seg.height * (0.8 if degen else 1.0) * (1 - 0.35 * (v / max(half_d, 1e-3)) ** 2)
                shape = (np.abs(u) / np.maximum(h / 2, 0.3)) ** 4 + (np.abs(v) / half_d) ** 4
                disc = shape <= 1
                nucleus = (u / np.maximum(h * 0.33, 0.3)) ** 2 + (v / (half_d * 0.62)) ** 2 <= 1
                sl[disc] = annulus
                nuc_val = rng.uniform(0.3, 0.45) if degen else rng.uniform(0.7, 0.95)
                sl[disc & nucleus] = nuc_val
                if 0 <= rank < n_discs:
                    mask[i][disc] = rank + 1
        # herniation / bulge material into the canal
        for hn in herniations:
            seg = discs[hn.rank]
            u, v = seg_uv[next(j for j, s in enumerate(segments) if s is seg)]
            dw = (x - hn.lateral) / hn.half_width
            if abs(dw) >= 1:
                continue
            lat = 1 - dw**2
            v_post = seg.depth / 2 * np.sqrt(max(1 - (x / seg.half_width) ** 2, 0)) - 1.0
            blob = (((v - v_post) / hn.depth) ** 2 + ((u - hn.migration) / (hn.height / 2)) ** 2 <= lat) & (v >= v_post - 1.5)
            sl[blob] = hn.intensity
            mask[i][blob] = hn.rank + 1
        image[i] = sl

    image = _acquire(image, rng, thickness, in_plane)
    spacing = (thickness, in_plane, in_plane)
    return image, mask, {"mask_values": {str(k + 1): MASK_LEVELS[k + 1] for k in range(n_discs)},
                         "herniation": labels, "seed": seed}, spacing


def _acquire(tissue: np.ndarray, rng: np.random.Generator, thickness: float, in_plane: float) -> np.ndarray:
    """Partial volume blur, smooth bias field, contrast curve and Rician noise; int16 output."""
    n, rows, cols = tissue.shape
    out = np.empty_like(tissue)
    sigma = rng.uniform(0.4, 0.9)
    for i in range(n):
        out[i] = cv2.GaussianBlur(tissue[i], (0, 0), sigma)
    # bias: a low-order smooth field, varying across slices too
    yy, zz = np.mgrid[0:rows, 0:cols].astype(np.float32)
    yy, zz = yy / rows - 0.5, zz / cols - 0.5
    coeffs = rng.uniform(-0.35, 0.35, size=5)
    field2d = 1 + coeffs[0] * yy + coeffs[1] * zz + coeffs[2] * yy * zz + coeffs[3] * yy**2 + coeffs[4] * zz**2
    slope = rng.uniform(-0.15, 0.15)
    xs = np.linspace(-0.5, 0.5, n)[:, None, None]
    out *= np.clip(field2d[None] * (1 + slope * xs), 0.3, 2.0)
    out = np.clip(out, 0, None) ** rng.uniform(0.8, 1.25)
    noise = rng.uniform(0.015, 0.06)
    re = out + noise * rng.standard_normal(out.shape, dtype=np.float32)
    im = noise * rng.standard_normal(out.shape, dtype=np.float32)
    out = np.sqrt(re**2 + im**2)
    gain = rng.uniform(600, 1600)
    return np.clip(out * gain, 0, 32767).astype(np.int16)


def write_case(out_dir: Path, name: str, seed: int, herniation_rate: float = 0.3) -> dict:
    image, mask, labels, spacing = generate(seed, herniation_rate)
    out_dir.mkdir(parents=True, exist_ok=True)
    for arr, suffix in ((image, ""), (mask, "_mask")):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing[::-1])
        sitk.WriteImage(img, str(out_dir / f"{name}{suffix}.mha"), useCompression=True)
    (out_dir / f"{name}_labels.json").write_text(json.dumps(labels, indent=1))
    return labels


def generate_dataset(out_dir: str | Path, n: int, seed: int = 0, herniation_rate: float = 0.3, progress=None) -> list[str]:
    """Write `n` cases named phantom_XXXX; case i uses seed `seed * 100003 + i` (reproducible)."""
    out = Path(out_dir)
    names = []
    for i in range(n):
        name = f"phantom_{i:04d}"
        write_case(out, name, seed * 100003 + i, herniation_rate)
        names.append(name)
        if progress:
            progress(i + 1, n)
    return names
