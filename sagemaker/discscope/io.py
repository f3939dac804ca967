"""Reading studies into one canonical volume type, and writing masks back on the input grid.

Canonical orientation: ``array[slice, row, col]`` with sagittal slices on axis 0, rows running
superior -> inferior and columns anterior -> posterior (the layout of the real-ivd set and of the
phantom). Every refusal is an :class:`InputError` with a code from :mod:`discscope.errors`, raised
from header information before any large allocation.
"""

from __future__ import annotations

import gzip
import re
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk

from . import errors as E
from .errors import InputError

# Without recorded geometry (a PNG, or an identity direction on a volume with unit spacing) we assume
# the image spans this field of view on its longer side: typical for a lumbar sagittal series.
ASSUMED_FOV_MM = 240.0


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 512 * 1024**2
    max_voxels: int = 128 * 1024**2
    max_archive_entries: int = 4096
    min_side: int = 32


DEFAULT_LIMITS = Limits()


@dataclass
class Volume:
    """A study as sagittal slices, plus what is needed to map results back onto the input grid."""

    array: np.ndarray  # float32 (slices, rows S->I, cols A->P)
    spacing: tuple[float, float, float]  # mm along (slice, row, col)
    source_format: str
    spacing_known: bool = True
    # numpy axes of the input array in canonical order, and which canonical axes were flipped
    axes: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[bool, bool, bool] = (False, False, False)
    reference: sitk.Image | None = field(default=None, repr=False)  # input geometry (no pixels needed)
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
        if self.reference is not None and self.reference.GetDimension() == img.GetDimension():
            img.CopyInformation(self.reference)
        return img


def write_mask(volume: Volume, canonical_mask: np.ndarray, path: str | Path) -> None:
    sitk.WriteImage(volume.mask_image(canonical_mask), str(path), useCompression=True)


# ----------------------------------------------------------------------------------------------
# Entry points


def read_study(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """Read any supported study file from disk."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path.name}: no such file", E.NOT_AN_IMAGE)
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path.name} is empty", E.EMPTY_FILE)
    if size > limits.max_bytes:
        raise InputError(
            f"{path.name} is {size} bytes; the limit is {limits.max_bytes}", E.FILE_TOO_LARGE
        )
    with path.open("rb") as fh:
        head = fh.read(1024)
    kind = sniff(head, path.name)
    if kind == "zip":
        return _read_zip(path, limits)
    if kind in ("png", "jpeg"):
        return _read_2d_stack([path.read_bytes()], [path.name], limits, kind)
    if kind == "mhd":
        return _read_sitk_volume(path, limits, "mhd")
    if kind in ("mha", "nifti", "nifti-gz"):
        return _read_sitk_volume(path, limits, kind)
    raise AssertionError(kind)  # sniff() raises for everything else


def read_study_bytes(data: bytes, filename: str, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """Read a study given as bytes (an upload, an HTTP body). The name only helps tell NIfTI.gz."""
    if len(data) == 0:
        raise InputError(f"{filename or 'the upload'} is empty", E.EMPTY_FILE)
    if len(data) > limits.max_bytes:
        raise InputError(
            f"the upload is {len(data)} bytes; the limit is {limits.max_bytes}", E.FILE_TOO_LARGE
        )
    kind = sniff(data[:1024], filename)
    if kind == "mhd":
        raise InputError(
            "an .mhd header needs its .raw data file: upload both together in a ZIP", E.UNSUPPORTED_FORMAT
        )
    suffix = {"zip": ".zip", "png": ".png", "jpeg": ".jpg", "mha": ".mha", "nifti": ".nii", "nifti-gz": ".nii.gz"}[kind]
    with tempfile.TemporaryDirectory(prefix="discscope-") as tmp:
        path = Path(tmp) / f"study{suffix}"
        path.write_bytes(data)
        return read_study(path, limits)


# ----------------------------------------------------------------------------------------------
# Format sniffing: by content, not by name, so a text file renamed .png is caught.

_TEXT_BYTES = bytes(range(32, 127)) + b"\t\n\r\f"


def sniff(head: bytes, filename: str = "") -> str:
    name = filename.lower()
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x1f\x8b"):
        if name.endswith((".nii.gz", ".nii")) or _gz_head_is_nifti(head):
            return "nifti-gz"
        raise InputError("a gzip file that is not a NIfTI image", E.UNSUPPORTED_FORMAT)
    if len(head) >= 348 and struct.unpack("<i", head[:4])[0] in (348, 540) or (
        len(head) >= 348 and struct.unpack(">i", head[:4])[0] in (348, 540)
    ):
        if head[344:347] in (b"n+1", b"ni1") or head[4:7] in (b"n+2", b"ni2"):
            return "nifti"
    text = head[:512]
    if re.match(rb"\s*(ObjectType|NDims|NDIMS|DimSize|ElementType)\s*=", text):
        m = re.search(rb"ElementDataFile\s*=\s*(\S+)", head)
        if m and m.group(1) != b"LOCAL":
            return "mhd"
        return "mha"
    if len(head) > 132 and head[128:132] == b"DICM":
        raise InputError(
            "a single DICOM file: upload the whole sagittal series as a ZIP", E.UNSUPPORTED_FORMAT
        )
    for magic, what in ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"GIF8", "GIF"), (b"BM", "BMP")):
        if head.startswith(magic):
            raise InputError(
                f"{what} images are not supported: use MHA, NIfTI, a DICOM ZIP, PNG or JPEG",
                E.UNSUPPORTED_FORMAT,
            )
    if head and all(b in _TEXT_BYTES for b in head[:512]):
        raise InputError(f"{filename or 'the file'} is text, not an image", E.NOT_AN_IMAGE)
    raise InputError(f"{filename or 'the file'} is not a recognised image format", E.NOT_AN_IMAGE)


def _gz_head_is_nifti(head: bytes) -> bool:
    try:
        raw = gzip.GzipFile(fileobj=_BytesReader(head)).read(348)
    except (OSError, EOFError, zlib.error):
        return False
    return len(raw) >= 348 and raw[344:347] in (b"n+1", b"ni1")


class _BytesReader:
    """Minimal file object over bytes that tolerates truncation (gzip reads past the head)."""

    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        out = self._data[self._pos : end]
        self._pos += len(out)
        return out


# ----------------------------------------------------------------------------------------------
# Volumes through SimpleITK

_ITK_BYTES = {
    sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2,
    sitk.sitkUInt32: 4, sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8,
    sitk.sitkFloat32: 4, sitk.sitkFloat64: 8,
}


def _read_header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"{path.name}: the image header cannot be read ({_first_line(exc)})", E.TRUNCATED_FILE)
    return reader


def _check_header(reader: sitk.ImageFileReader, name: str, limits: Limits) -> tuple[int, ...]:
    size = tuple(int(s) for s in reader.GetSize())
    extra = [s for s in size[3:] if s != 1]
    if len(size) < 2 or extra:
        raise InputError(
            f"{name} has {len(size)} dimensions {size}; a 2D slice or 3D volume is required",
            E.UNSUPPORTED_DIMENSIONS,
        )
    if reader.GetNumberOfComponents() != 1:
        raise InputError(
            f"{name} has {reader.GetNumberOfComponents()} components per pixel (RGB/vector); "
            "a greyscale MR volume is required",
            E.UNSUPPORTED_PIXEL_TYPE,
        )
    voxels = int(np.prod(size, dtype=np.int64))
    if voxels > limits.max_voxels:
        raise InputError(f"{name} has {voxels} voxels; the limit is {limits.max_voxels}", E.IMAGE_TOO_LARGE)
    return size


def _check_in_plane(volume: "Volume", name: str, limits: Limits) -> "Volume":
    rows, cols = volume.shape[1:]
    if min(rows, cols) < limits.min_side:
        raise InputError(f"{name} is {cols}x{rows} pixels in the sagittal plane; too small to analyse", E.IMAGE_TOO_SMALL)
    return volume


def _expected_pixel_bytes(reader: sitk.ImageFileReader, size: tuple[int, ...]) -> int | None:
    per = _ITK_BYTES.get(reader.GetPixelID())
    return None if per is None else int(np.prod(size, dtype=np.int64)) * per


def _check_complete(path: Path, kind: str, reader: sitk.ImageFileReader, size: tuple[int, ...]) -> None:
    """Catch truncation that SimpleITK would read silently (NIfTI) or only report in a log."""
    expected = _expected_pixel_bytes(reader, size)
    if expected is None:
        return
    if kind == "mha":
        with path.open("rb") as fh:
            head = fh.read(8192)
        m = re.search(rb"ElementDataFile\s*=\s*LOCAL\r?\n", head)
        compressed = re.search(rb"CompressedData\s*=\s*True", head[: m.end()] if m else head)
        if m and not compressed and path.stat().st_size - m.end() < expected:
            raise InputError(f"{path.name} is truncated: pixel data is shorter than its header says", E.TRUNCATED_FILE)
    elif kind in ("nifti", "nifti-gz"):
        opener = gzip.open if kind == "nifti-gz" else open
        try:
            with opener(path, "rb") as fh:
                hdr = fh.read(540)
                endian = "<" if struct.unpack("<i", hdr[:4])[0] in (348, 540) else ">"
                offset = (
                    int(struct.unpack(endian + "f", hdr[108:112])[0])
                    if struct.unpack(endian + "i", hdr[:4])[0] == 348
                    else int(struct.unpack(endian + "q", hdr[168:176])[0])
                )
                need = offset + expected - len(hdr)
                got = 0
                while got < need:
                    chunk = fh.read(min(1 << 20, need - got))
                    if not chunk:
                        break
                    got += len(chunk)
        except (OSError, EOFError, struct.error) as exc:
            raise InputError(f"{path.name} is truncated or corrupt ({_first_line(exc)})", E.TRUNCATED_FILE)
        if got < need:
            raise InputError(f"{path.name} is truncated: pixel data is shorter than its header says", E.TRUNCATED_FILE)


def _read_sitk_volume(path: Path, limits: Limits, kind: str) -> Volume:
    reader = _read_header(path)
    size = _check_header(reader, path.name, limits)
    _check_complete(path, kind, reader, size)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{path.name}: pixel data cannot be read ({_first_line(exc)})", E.TRUNCATED_FILE)
    return _check_in_plane(volume_from_image(image, kind), path.name, limits)


def volume_from_image(image: sitk.Image, source_format: str) -> Volume:
    """Canonical sagittal volume from a SimpleITK image, using its direction cosines."""
    if image.GetDimension() == 4:  # a trailing singleton dimension, checked above
        image = image[:, :, :, 0]
    reference = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    reference.CopyInformation(image)
    array = sitk.GetArrayViewFromImage(image).astype(np.float32)
    itk_spacing = image.GetSpacing()
    if image.GetDimension() == 2:
        array = array[None]
        spacing, known = _in_plane_spacing(itk_spacing[::-1], array.shape[1:])
        return Volume(array, (1.0, *spacing), source_format, known, reference=reference, input_ndim=2)

    direction = np.array(image.GetDirection()).reshape(3, 3)
    np_spacing = tuple(float(s) for s in itk_spacing[::-1])
    if np.allclose(direction, np.eye(3)) and np.allclose(image.GetOrigin(), 0.0):
        # Identity direction at a zero origin means no geometry was recorded (research exports such
        # as real-ivd, the phantom): trust the array order, by convention (sagittal, S->I, A->P).
        # A real scanner series always has a patient-position origin.
        axes, flips = (0, 1, 2), (False, False, False)
    else:
        axes, flips = _canonical_axes(direction)
    canonical = np.transpose(array, axes)
    for axis, flipped in enumerate(flips):
        if flipped:
            canonical = np.flip(canonical, axis=axis)
    spacing = tuple(np_spacing[a] for a in axes)
    return Volume(np.ascontiguousarray(canonical), spacing, source_format, True, axes, flips, reference, 3)


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


def _in_plane_spacing(spacing: tuple[float, ...], shape: tuple[int, ...]) -> tuple[tuple[float, float], bool]:
    if spacing and not np.allclose(spacing[-2:], 1.0):
        return (float(spacing[-2]), float(spacing[-1])), True
    mm = ASSUMED_FOV_MM / max(shape)
    return (mm, mm), False


# ----------------------------------------------------------------------------------------------
# 2D images (PNG/JPEG), alone or as a stack of slices


def _png_jpeg_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(height, width) from the header without decoding pixels."""
    if kind == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return height, width
        pos += 2 + length
    return None


def _decode_2d(data: bytes, name: str, kind: str, limits: Limits) -> np.ndarray:
    hw = _png_jpeg_size(data, kind)
    if hw is None:
        raise InputError(f"{name}: the {kind.upper()} header is truncated or corrupt", E.TRUNCATED_FILE)
    if hw[0] * hw[1] > limits.max_voxels:
        raise InputError(f"{name} is {hw[1]}x{hw[0]} pixels; the limit is {limits.max_voxels}", E.IMAGE_TOO_LARGE)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{name}: the {kind.upper()} data is truncated or corrupt", E.TRUNCATED_FILE)
    if img.ndim == 3:  # screenshots and exports are often RGB(A) of a greyscale image
        code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        img = cv2.cvtColor(img, code)
    if min(img.shape) < limits.min_side:
        raise InputError(f"{name} is {img.shape[1]}x{img.shape[0]} pixels; too small to analyse", E.IMAGE_TOO_SMALL)
    return img.astype(np.float32)


def _read_2d_stack(blobs: list[bytes], names: list[str], limits: Limits, kind: str) -> Volume:
    total = 0
    slices = []
    for data, name in zip(blobs, names):
        img = _decode_2d(data, name, sniff(data[:1024], name), limits)
        if slices and img.shape != slices[0].shape:
            raise InputError(
                f"slice {name} is {img.shape[1]}x{img.shape[0]} but {names[0]} is "
                f"{slices[0].shape[1]}x{slices[0].shape[0]}: all slices must have one size",
                E.INCONSISTENT_SLICES,
            )
        total += img.size
        if total > limits.max_voxels:
            raise InputError(f"the slices hold more than {limits.max_voxels} pixels", E.IMAGE_TOO_LARGE)
        slices.append(img)
    array = np.stack(slices)
    spacing, known = _in_plane_spacing((), array.shape[1:])
    single = len(slices) == 1
    reference = sitk.Image([array.shape[2], array.shape[1]] + ([] if single else [array.shape[0]]), sitk.sitkUInt8)
    return Volume(array, (1.0, *spacing), kind if single else f"{kind}-stack", known,
                  reference=reference, input_ndim=2 if single else 3)


# ----------------------------------------------------------------------------------------------
# ZIP archives: DICOM series, PNG/JPEG stacks, or one volume (MHD+RAW, MHA, NIfTI)

_VOLUME_SUFFIXES = (".mha", ".mhd", ".nii", ".nii.gz")


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _read_zip(path: Path, limits: Limits) -> Volume:
    try:
        archive = zipfile.ZipFile(path)
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path.name} is a truncated or corrupt ZIP ({_first_line(exc)})", E.TRUNCATED_FILE)
    infos = [i for i in infos if not _ignored_member(i.filename)]
    if not infos:
        raise InputError(f"{path.name} holds no files", E.EMPTY_FILE)
    if len(infos) > limits.max_archive_entries:
        raise InputError(f"{path.name} holds {len(infos)} files; the limit is {limits.max_archive_entries}", E.UNSAFE_ARCHIVE)
    total = sum(i.file_size for i in infos)
    if total > limits.max_bytes:
        raise InputError(f"{path.name} expands to {total} bytes; the limit is {limits.max_bytes}", E.FILE_TOO_LARGE)
    with archive, tempfile.TemporaryDirectory(prefix="discscope-zip-") as tmp:
        # Members are written under generated names: member paths (../, absolute, unicode) never
        # reach the filesystem. MHD keeps its base name so it finds its RAW file.
        try:
            members = [(i.filename, archive.read(i)) for i in sorted(infos, key=lambda i: natural_key(i.filename))]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InputError(f"{path.name}: a member cannot be extracted ({_first_line(exc)})", E.TRUNCATED_FILE)
        images = [(n, d) for n, d in members if d[:8].startswith((b"\x89PNG", b"\xff\xd8\xff"))]
        volumes = [(n, d) for n, d in members if n.lower().endswith(_VOLUME_SUFFIXES)]
        dicoms = [(n, d) for n, d in members if len(d) > 132 and d[128:132] == b"DICM" or n.lower().endswith(".dcm")]
        if volumes:
            return _read_zip_volume(volumes, members, Path(tmp), limits)
        if dicoms:
            return _read_dicom_series(dicoms, Path(tmp), limits)
        if images:
            kind = sniff(images[0][1][:1024], images[0][0])
            return _read_2d_stack([d for _, d in images], [n for n, _ in images], limits, kind)
        raise InputError(f"{path.name} holds no DICOM, PNG, JPEG, MHA or NIfTI files", E.NOT_AN_IMAGE)


def _ignored_member(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return name.startswith("__MACOSX/") or base.startswith(".") or base.lower() in ("dicomdir", "thumbs.db")


def _safe_base(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", base) or "member"


def _read_zip_volume(volumes, members, tmp: Path, limits: Limits) -> Volume:
    headers = [(n, d) for n, d in volumes if not n.lower().endswith(".raw")]
    if len(headers) != 1:
        raise InputError(f"the ZIP holds {len(headers)} volumes; upload one study per ZIP", E.UNSUPPORTED_FORMAT)
    name, data = headers[0]
    for member_name, member_data in members:  # flat copy so an MHD finds its RAW by base name
        (tmp / _safe_base(member_name)).write_bytes(member_data)
    inner = tmp / _safe_base(name)
    kind = sniff(data[:1024], inner.name)
    if kind == "mhd":
        datafile = re.search(rb"ElementDataFile\s*=\s*(\S+)", data)
        if datafile and not (tmp / Path(datafile.group(1).decode(errors="replace")).name).is_file():
            raise InputError(f"{name} refers to {datafile.group(1).decode(errors='replace')}, which is not in the ZIP",
                             E.TRUNCATED_FILE)
    return _read_sitk_volume(inner, limits, kind)


def _read_dicom_series(dicoms, tmp: Path, limits: Limits) -> Volume:
    for index, (_, data) in enumerate(dicoms):
        (tmp / f"{index:05d}.dcm").write_bytes(data)
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(tmp))
    if not series_ids:
        raise InputError("the ZIP's DICOM files hold no readable image series", E.NOT_AN_IMAGE)
    # Several series (localisers, other planes): take the one with the most slices.
    files = max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp), sid) for sid in series_ids), key=len)
    sizes = set()
    for f in files:
        header = _read_header(Path(f))
        sizes.add(tuple(header.GetSize()[:2]))
        if header.GetNumberOfComponents() != 1:
            raise InputError("the DICOM series is colour (RGB); a greyscale MR series is required", E.UNSUPPORTED_PIXEL_TYPE)
    if len(sizes) > 1:
        raise InputError(f"the DICOM series mixes slice sizes {sorted(sizes)}", E.INCONSISTENT_SLICES)
    width, height = sizes.pop()
    if width * height * len(files) > limits.max_voxels:
        raise InputError(f"the DICOM series has {width * height * len(files)} voxels; the limit is {limits.max_voxels}",
                         E.IMAGE_TOO_LARGE)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"the DICOM series cannot be read ({_first_line(exc)})", E.TRUNCATED_FILE)
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        image = image[:, :, 0]
    return _check_in_plane(volume_from_image(image, "dicom-zip"), "the DICOM series", limits)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1][:200] if lines else type(exc).__name__
