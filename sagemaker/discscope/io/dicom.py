"""A DICOM series, from the members of a ZIP.

Each file must be DICOM Part 10 with a transfer syntax on the list below (no deflated datasets, no
JPIP pixel references, no video). The series' slices must share one size, one orientation and one
pixel type, and lie at evenly spaced, distinct positions along their normal; otherwise the volume
would be built with a made-up spacing. GDCM decodes the pixels, with ITK's DICOM reader named
explicitly; the files are written under generated names in a private folder.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import errors as E
from ..errors import InputError
from .base import Source
from .volume import Geometry, Limits, Volume, build, plan

TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "implicit VR little endian",
    "1.2.840.10008.1.2.1": "explicit VR little endian",
    "1.2.840.10008.1.2.2": "explicit VR big endian",
    "1.2.840.10008.1.2.5": "RLE",
    "1.2.840.10008.1.2.4.50": "JPEG baseline", "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.57": "JPEG lossless", "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless", "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless", "1.2.840.10008.1.2.4.91": "JPEG 2000",
}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
SPACING_TOLERANCE = 0.05  # share of the slice spacing two gaps may differ by (scanner rounding)


def is_dicom(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def transfer_syntax(data: bytes, name: str) -> str:
    """(0002,0010) from the Part 10 file meta information (always explicit VR little endian)."""
    if not is_dicom(data):
        raise InputError(f"{name} is not a DICOM Part 10 file (no DICM preamble)", E.UNSUPPORTED_FORMAT)
    pos = 132
    while pos + 8 <= len(data):
        group, element = struct.unpack("<HH", data[pos : pos + 4])
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            length, start = struct.unpack("<I", data[pos + 8 : pos + 12])[0], pos + 12
        else:
            length, start = struct.unpack("<H", data[pos + 6 : pos + 8])[0], pos + 8
        if start + length > len(data):
            break
        if element == 0x0010:
            return data[start : start + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos = start + length
    raise InputError(f"{name}: the DICOM file meta information has no transfer syntax", E.CORRUPT_FILE)


def read_series(sources: list[Source], limits: Limits) -> Volume:
    for s in sources:
        syntax = transfer_syntax(s.data, s.name)
        if syntax not in TRANSFER_SYNTAXES:
            raise InputError(f"{s.name}: DICOM transfer syntax {syntax} is not supported (uncompressed, RLE, JPEG, "
                             "JPEG-LS or JPEG 2000)", E.UNSUPPORTED_FORMAT)
    with tempfile.TemporaryDirectory(prefix="discscope-dicom-") as tmp:
        folder = Path(tmp)
        for index, s in enumerate(sources):
            (folder / f"{index:05d}.dcm").write_bytes(s.data)
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        if not series_ids:
            raise InputError("the ZIP's DICOM files hold no readable image series", E.NOT_AN_IMAGE)
        # Several series (localisers, other planes): take the one with the most slices.
        files = max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids), key=len)
        names = {str(folder / f"{i:05d}.dcm"): s.name for i, s in enumerate(sources)}
        geometry = _series_geometry([_slice_header(f, names[f]) for f in files])
        p = plan(geometry, "the DICOM series", limits)
        reader = sitk.ImageSeriesReader()
        reader.SetImageIO("GDCMImageIO")
        reader.SetFileNames(files)
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            raise InputError(f"the DICOM series cannot be decoded ({_last_line(exc)})", E.CORRUPT_FILE) from None
    array = sitk.GetArrayViewFromImage(image)
    if len(files) == 1:
        array = array[0]
    return build(array, p, "dicom-zip", "the DICOM series", limits)


def _slice_header(path: str, name: str) -> dict:
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"{name}: the DICOM header cannot be read ({_last_line(exc)})", E.CORRUPT_FILE) from None
    size = reader.GetSize()
    if reader.GetNumberOfComponents() != 1:
        raise InputError("the DICOM series is colour (RGB); a greyscale MR series is required", E.UNSUPPORTED_PIXEL_TYPE)
    if len(size) > 2 and any(s != 1 for s in size[2:]):
        raise InputError(f"{name} is a multi-frame DICOM object ({size[2]} frames); upload one file per slice",
                         E.UNSUPPORTED_FORMAT)
    tags = {key: reader.GetMetaData(key).strip() for key in ("0020|0032", "0020|0037") if reader.HasMetaDataKey(key)}
    return {"name": name, "size": tuple(size[:2]), "spacing": tuple(reader.GetSpacing()[:2]),
            "pixel": reader.GetPixelID(), "position": _numbers(tags.get("0020|0032"), 3, name),
            "orientation": _numbers(tags.get("0020|0037"), 6, name)}


def _numbers(text: str | None, count: int, name: str) -> np.ndarray | None:
    if not text:
        return None
    try:
        values = np.array([float(v) for v in text.split("\\")])
    except ValueError:
        values = np.array([])
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        raise InputError(f"{name}: a DICOM position or orientation is malformed ({text[:60]!r})", E.INVALID_GEOMETRY)
    return values


def _series_geometry(slices: list[dict]) -> Geometry:
    """The series' grid, after checking that its slices really form one."""
    first = slices[0]
    for s in slices[1:]:
        if s["size"] != first["size"]:
            sizes = sorted({x["size"] for x in slices})
            raise InputError(f"the DICOM series mixes slice sizes {sizes}", E.INCONSISTENT_SLICES)
        if s["pixel"] != first["pixel"] or not np.allclose(s["spacing"], first["spacing"], rtol=1e-3):
            raise InputError(f"{s['name']} has another pixel type or pixel spacing than {first['name']}",
                             E.INCONSISTENT_SLICES)
    size2d, spacing2d = first["size"], first["spacing"]
    if len(slices) == 1:
        return Geometry(size2d, spacing2d, (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    if any(s["position"] is None or s["orientation"] is None for s in slices):
        raise InputError("the DICOM series has slices without a position or orientation", E.INCONSISTENT_SLICES)
    orientation = first["orientation"]
    for s in slices[1:]:
        if not np.allclose(s["orientation"], orientation, atol=1e-3):
            raise InputError(f"{s['name']} lies in another plane than {first['name']}: one series must hold one "
                             "orientation", E.INCONSISTENT_SLICES)
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    distances = np.array([float(np.dot(s["position"], normal)) for s in slices])
    gaps = np.diff(distances)  # GDCM has sorted the files along the normal
    if np.any(np.abs(gaps) < 1e-3):
        raise InputError("the DICOM series holds two slices at one position", E.INCONSISTENT_SLICES)
    step = float(np.median(gaps))
    if np.any(np.sign(gaps) != np.sign(step)) or np.max(np.abs(gaps - step)) > SPACING_TOLERANCE * abs(step):
        raise InputError(f"the DICOM series' slices are unevenly spaced ({np.min(np.abs(gaps)):.2f}-"
                         f"{np.max(np.abs(gaps)):.2f} mm): a slice is missing or another series is mixed in",
                         E.INCONSISTENT_SLICES)
    direction = np.column_stack([row, col, normal * np.sign(step)])
    return Geometry((*size2d, len(slices)), (*spacing2d, abs(step)), tuple(slices[0]["position"]),
                    tuple(float(v) for v in direction.ravel()))


def _last_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1][:200] if lines else type(exc).__name__
