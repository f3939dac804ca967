"""The canonical volume every reader produces, the limits every reader enforces, and the checks on
geometry and voxel values that do not depend on the format.

Canonical orientation: ``array[slice, row, col]`` with sagittal slices on axis 0, rows running
superior -> inferior and columns anterior -> posterior (the layout of the real-ivd set and of the
phantom). Readers check a header with :func:`plan` before they read any pixel data, so a refusal
costs no more than the header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .. import errors as E
from ..errors import InputError
from ..preprocess import MODEL_SPACING_MM

# Without recorded geometry (a PNG, or a 2D image with unit spacing) we assume the image spans this
# field of view on its longer side: typical for a lumbar sagittal series.
ASSUMED_FOV_MM = 240.0


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 512 * 1024**2  # the upload, and all that is decompressed from it together
    max_voxels: int = 128 * 1024**2  # the input grid
    max_slice_pixels: int = 4096 * 4096  # one 2D image or slice (PNG, JPEG, DICOM frame)
    max_field_of_view_mm: float = 1024.0  # physical extent of a slice's rows and of its columns
    max_model_voxels: int = 32 * 1024**2  # slices x rows x cols on the model's 1 mm grid
    max_archive_entries: int = 4096
    min_side: int = 32
    # What an MR scanner records: in-plane pixels and sagittal slice spacing, in mm.
    in_plane_spacing_mm: tuple[float, float] = (0.05, 10.0)
    slice_spacing_mm: tuple[float, float] = (0.05, 30.0)
    max_non_finite_fraction: float = 0.01  # NaN/Inf voxels ignored up to this share, refused above


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Geometry:
    """Where the input's voxels are, in ITK's convention (x first; direction row-major)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def ndim(self) -> int:
        return len(self.size)

    @classmethod
    def plain(cls, size: tuple[int, ...], spacing: tuple[float, ...] | None = None) -> "Geometry":
        n = len(size)
        return cls(tuple(size), tuple(spacing or (1.0,) * n), (0.0,) * n, tuple(np.eye(n).ravel()))


@dataclass(frozen=True)
class Plan:
    """How an input array becomes canonical, decided from the header alone."""

    geometry: Geometry
    axes: tuple[int, int, int]  # numpy axes of the input (as 3D) in canonical order
    flips: tuple[bool, bool, bool]
    spacing: tuple[float, float, float]  # canonical (slice, row, col) in mm
    spacing_known: bool

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        np_shape = _numpy_shape_3d(self.geometry.size)
        return tuple(np_shape[a] for a in self.axes)  # type: ignore[return-value]


@dataclass
class Volume:
    """A study as sagittal slices, plus what is needed to map results back onto the input grid."""

    array: np.ndarray  # float32 (slices, rows S->I, cols A->P)
    spacing: tuple[float, float, float]  # mm along (slice, row, col)
    source_format: str
    spacing_known: bool = True
    axes: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[bool, bool, bool] = (False, False, False)
    geometry: Geometry | None = None
    input_ndim: int = 3

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    def to_input_grid(self, canonical: np.ndarray) -> np.ndarray:
        """Undo flips and axis permutation: an array aligned with `array` -> the input's numpy grid."""
        out = canonical
        for axis, flipped in enumerate(self.flips):
            if flipped:
                out = np.flip(out, axis=axis)
        out = np.transpose(out, np.argsort(self.axes))
        if self.input_ndim == 2:
            out = out[0]
        return np.ascontiguousarray(out)

    def mask_image(self, canonical_mask: np.ndarray) -> sitk.Image:
        """The mask as a uint8 SimpleITK image carrying the input's origin, spacing and direction."""
        img = sitk.GetImageFromArray(self.to_input_grid(canonical_mask.astype(np.uint8)))
        geo = self.geometry
        if geo is not None and geo.ndim == img.GetDimension():
            img.SetSpacing(geo.spacing)
            img.SetOrigin(geo.origin)
            img.SetDirection(geo.direction)
        return img


def write_mask(volume: Volume, canonical_mask: np.ndarray, path) -> None:
    sitk.WriteImage(volume.mask_image(canonical_mask), str(path), useCompression=True)


# ----------------------------------------------------------------------------------------------
# Header checks: dimensions, geometry, the size of what will be allocated


def check_size(size: tuple[int, ...], name: str, limits: Limits) -> tuple[int, ...]:
    """Dimensions as a 2D or 3D size (trailing singleton dimensions dropped), within the voxel limit."""
    size = tuple(int(s) for s in size)
    while len(size) > 3 and size[-1] == 1:
        size = size[:-1]
    if len(size) not in (2, 3):
        raise InputError(f"{name} has {len(size)} dimensions {size}; a 2D slice or 3D volume is required",
                         E.UNSUPPORTED_DIMENSIONS)
    if min(size) < 1:
        raise InputError(f"{name} has a dimension of size {min(size)}", E.TRUNCATED_FILE)
    voxels = math.prod(size)
    if voxels > limits.max_voxels:
        raise InputError(f"{name} has {voxels} voxels; the limit is {limits.max_voxels}", E.IMAGE_TOO_LARGE)
    return size


def plan(geometry: Geometry, name: str, limits: Limits, spacing_recorded: bool = True) -> Plan:
    """Check a header's geometry and decide the canonical orientation, before any pixel is read.

    `spacing_recorded=False` (PNG, JPEG) assumes a typical lumbar field of view instead.
    """
    ndim = geometry.ndim
    spacing = np.asarray(geometry.spacing, float)
    origin = np.asarray(geometry.origin, float)
    direction = np.asarray(geometry.direction, float).reshape(ndim, ndim)
    if not np.all(np.isfinite(origin)) or not np.all(np.isfinite(direction)):
        raise InputError(f"{name}: the origin or direction in its header is not a finite number", E.INVALID_GEOMETRY)
    if not np.allclose(direction.T @ direction, np.eye(ndim), atol=1e-3):
        raise InputError(f"{name}: the direction cosines in its header are not orthonormal", E.INVALID_GEOMETRY)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"{name}: pixel spacing {_mm(spacing)} mm is not a positive number", E.INVALID_SPACING)

    if ndim == 2:
        axes, flips = (0, 1, 2), (False, False, False)
        np_spacing = (1.0, *(float(s) for s in spacing[::-1]))
        known = spacing_recorded and not np.allclose(np_spacing[1:], 1.0)  # 2D unit spacing: not recorded
    else:
        if np.allclose(direction, np.eye(3)) and np.allclose(origin, 0.0):
            # Identity direction at a zero origin means no geometry was recorded (research exports
            # such as real-ivd, the phantom): trust the array order, by convention (sagittal, S->I,
            # A->P). A real scanner series always has a patient-position origin.
            axes, flips = (0, 1, 2), (False, False, False)
        else:
            axes, flips = _canonical_axes(direction)
        np_spacing = tuple(float(s) for s in spacing[::-1])
        known = spacing_recorded
    canonical_spacing = tuple(np_spacing[a] for a in axes)
    result = Plan(geometry, axes, flips, canonical_spacing, known)  # type: ignore[arg-type]
    if not known:  # no spacing recorded: assume a lumbar field of view on the longer side
        mm = ASSUMED_FOV_MM / max(result.canonical_shape[1:])
        result = Plan(geometry, axes, flips, (1.0, mm, mm), False)
    _check_extent(result, name, limits)
    return result


def _check_extent(p: Plan, name: str, limits: Limits) -> None:
    slices, rows, cols = p.canonical_shape
    slice_mm, row_mm, col_mm = p.spacing
    if p.spacing_known:
        lo, hi = limits.in_plane_spacing_mm
        if not (lo <= row_mm <= hi and lo <= col_mm <= hi):
            raise InputError(f"{name}: in-plane pixel spacing {_mm((row_mm, col_mm))} mm is outside what an MR "
                             f"scanner records ({lo}-{hi} mm)", E.INVALID_SPACING)
        lo, hi = limits.slice_spacing_mm
        if slices > 1 and not lo <= slice_mm <= hi:
            raise InputError(f"{name}: slice spacing {slice_mm:g} mm is outside what an MR scanner records "
                             f"({lo}-{hi} mm)", E.INVALID_SPACING)
    if min(rows, cols) < limits.min_side:
        raise InputError(f"{name} is {cols}x{rows} pixels in the sagittal plane; too small to analyse", E.IMAGE_TOO_SMALL)
    if rows * cols > limits.max_slice_pixels:
        raise InputError(f"{name} has {cols}x{rows} pixels per slice; the limit is {limits.max_slice_pixels}",
                         E.IMAGE_TOO_LARGE)
    fov = (rows * row_mm, cols * col_mm)
    if max(fov) > limits.max_field_of_view_mm:
        raise InputError(f"{name} spans {fov[1]:.0f} x {fov[0]:.0f} mm; at most {limits.max_field_of_view_mm:.0f} mm "
                         "per side is analysed", E.IMAGE_TOO_LARGE)
    model = slices * round(fov[0] / MODEL_SPACING_MM) * round(fov[1] / MODEL_SPACING_MM)
    if model > limits.max_model_voxels:
        raise InputError(f"{name} becomes {model} voxels on the model's {MODEL_SPACING_MM:g} mm grid; the limit is "
                         f"{limits.max_model_voxels}", E.IMAGE_TOO_LARGE)


def _canonical_axes(direction: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """Map ITK index axes to (R-wards slices, S->I rows, A->P cols) from direction cosines in LPS."""
    # direction[:, i] is the physical (L, P, S) direction of ITK index axis i = numpy axis 2 - i.
    cols = direction.T  # row i: direction of ITK axis i
    free = [0, 1, 2]
    slice_itk = max(free, key=lambda i: abs(cols[i][0]))
    free.remove(slice_itk)
    row_itk = max(free, key=lambda i: abs(cols[i][2]))
    free.remove(row_itk)
    col_itk = free[0]
    axes = (2 - slice_itk, 2 - row_itk, 2 - col_itk)
    # slices run towards the patient's right, rows inferior, columns posterior
    flips = (bool(cols[slice_itk][0] > 0), bool(cols[row_itk][2] > 0), bool(cols[col_itk][1] < 0))
    return axes, flips


def _numpy_shape_3d(size: tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in size[::-1])
    return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]


def _mm(values) -> str:
    return " x ".join(f"{float(v):g}" for v in values)


# ----------------------------------------------------------------------------------------------
# From pixels to the canonical volume


def build(array: np.ndarray, p: Plan, source_format: str, name: str, limits: Limits) -> Volume:
    """The canonical float32 volume from the input's numpy array (shape = reversed ITK size)."""
    expected = tuple(int(s) for s in p.geometry.size[::-1])
    if array.shape != expected:
        raise InputError(f"{name}: pixel data has shape {array.shape}, the header says {expected}", E.TRUNCATED_FILE)
    input_ndim = array.ndim
    data = array[None] if input_ndim == 2 else array
    canonical = np.transpose(data, p.axes)
    for axis, flipped in enumerate(p.flips):
        if flipped:
            canonical = np.flip(canonical, axis=axis)
    canonical = np.ascontiguousarray(canonical, dtype=np.float32)
    check_finite(canonical, name, limits)
    return Volume(canonical, p.spacing, source_format, p.spacing_known, p.axes, p.flips, p.geometry, input_ndim)


def check_finite(array: np.ndarray, name: str, limits: Limits) -> None:
    """A few NaN/Inf voxels are ignored (normalisation skips them); more mean the data is broken."""
    if array.dtype.kind != "f":
        return
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad > limits.max_non_finite_fraction * array.size:
        raise InputError(f"{name}: {bad} of {array.size} voxels are NaN or infinite", E.NON_FINITE_VOXELS)
