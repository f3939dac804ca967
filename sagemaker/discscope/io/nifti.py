"""NIfTI-1 and NIfTI-2, single file (.nii) or gzip-compressed (.nii.gz).

The header, its extensions and the pixel data are checked and read here; the gzip stream is
inflated only as far as the header says. ITK is used for one thing: turning the header's qform/sform
into ITK geometry, from a temporary copy of the header alone, with its NIfTI reader named explicitly
(it never opens another file: two-file .hdr/.img images are refused).
"""

from __future__ import annotations

import math
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import errors as E
from ..errors import InputError
from .base import Reader, Source
from .bounded import GZIP, Inflater, peek
from .volume import Geometry, Limits, Volume, build, check_size, plan

# NIfTI datatype code -> numpy type; complex, RGB(A), binary and float128 are refused
DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}
MAX_VOX_OFFSET = 16 * 1024**2  # header plus extensions


@dataclass(frozen=True)
class NiftiHeader:
    version: int
    endian: str
    dims: tuple[int, ...]
    dtype: np.dtype
    vox_offset: int
    slope: float
    inter: float

    @property
    def header_size(self) -> int:
        return 348 if self.version == 1 else 540

    @property
    def data_bytes(self) -> int:
        return math.prod(self.dims) * self.dtype.itemsize


def _version(head: bytes) -> tuple[int, str] | None:
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348 and head[344:348] in (b"n+1\0", b"ni1\0"):
            return 1, endian
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540 and head[4:8] in (b"n+2\0", b"ni2\0"):
            return 2, endian
    return None


class NiftiReader(Reader):
    formats = ("nifti", "nifti-gz")

    @staticmethod
    def detect(head: bytes, name: str) -> str | None:
        if _version(head):
            return "nifti"
        if head.startswith(b"\x1f\x8b"):
            inner = peek(head, 540, GZIP)
            if inner is not None and _version(inner):
                return "nifti-gz"
            if (inner is None or len(inner) < 348) and name.lower().endswith((".nii.gz", ".nii")):
                return "nifti-gz"  # the first KiB holds too little of the stream to tell; the name does
            raise InputError("a gzip file that is not a NIfTI image", E.UNSUPPORTED_FORMAT)
        return None

    def read(self, source: Source, limits: Limits) -> Volume:
        name = source.name
        if source.data.startswith(b"\x1f\x8b"):
            stream = Inflater(source.data, name, GZIP)
            head = stream.take(540)
            header = parse_header(head, name, limits)
            total = header.vox_offset + header.data_bytes
            if len(head) > total:
                raise InputError(f"{name} is longer than the {total} bytes its header says", E.CORRUPT_FILE)
            data = head + stream.take_exactly(total - len(head), "image")
            stream.finish("image")
            fmt = "nifti-gz"
        else:
            header = parse_header(source.data, name, limits)
            data = source.data
            total = header.vox_offset + header.data_bytes
            if len(data) < total:
                raise InputError(f"{name} is truncated: {len(data)} bytes, its header says {total}", E.TRUNCATED_FILE)
            if len(data) > total:
                raise InputError(f"{name} is {len(data)} bytes, longer than the {total} its header says (wrong "
                                 "datatype or dimensions?)", E.CORRUPT_FILE)
            fmt = "nifti"
        _check_extensions(data, header, name)
        size = check_size(header.dims, name, limits)
        p = plan(_itk_geometry(data[: header.vox_offset], size, name), name, limits)
        raw = np.frombuffer(memoryview(data)[header.vox_offset:], header.dtype).reshape(size[::-1])
        if header.slope not in (0.0, 1.0) or header.inter != 0.0:  # as ITK applies scl_slope / scl_inter
            raw = raw.astype(np.float32) * np.float32(header.slope) + np.float32(header.inter)
        return build(raw, p, fmt, name, limits)


def parse_header(head: bytes, name: str, limits: Limits) -> NiftiHeader:
    found = _version(head)
    if found is None:
        raise InputError(f"{name} is truncated: the NIfTI header is incomplete", E.TRUNCATED_FILE)
    version, e = found
    magic = head[344:347] if version == 1 else head[4:7]
    if magic in (b"ni1", b"ni2"):
        raise InputError(f"{name} is a header whose pixels are in a separate .img file: convert it to a single "
                         ".nii file", E.UNSUPPORTED_FORMAT)
    if version == 1:
        dim = struct.unpack(e + "8h", head[40:56])
        code, bitpix = struct.unpack(e + "2h", head[70:74])
        vox_offset = struct.unpack(e + "f", head[108:112])[0]
        slope, inter = struct.unpack(e + "2f", head[112:120])
        minimum = 352
    else:
        code, bitpix = struct.unpack(e + "2h", head[12:16])
        dim = struct.unpack(e + "8q", head[16:80])
        vox_offset = struct.unpack(e + "q", head[168:176])[0]
        slope, inter = struct.unpack(e + "2d", head[176:192])
        minimum = 544
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dim[1 : ndim + 1]):
        raise InputError(f"{name}: the NIfTI dimensions {dim[: ndim + 1] if 0 < ndim < 8 else dim} are invalid",
                         E.CORRUPT_FILE)
    if code not in DTYPES:
        raise InputError(f"{name}: NIfTI datatype {code} is not a greyscale type (complex, RGB and binary images "
                         "are not supported)", E.UNSUPPORTED_PIXEL_TYPE)
    dtype = np.dtype(DTYPES[code]).newbyteorder(e)
    if bitpix != dtype.itemsize * 8:
        raise InputError(f"{name}: bitpix {bitpix} does not match datatype {code}", E.CORRUPT_FILE)
    if not math.isfinite(vox_offset) or vox_offset != int(vox_offset) or not minimum <= vox_offset <= MAX_VOX_OFFSET:
        raise InputError(f"{name}: the pixel data offset {vox_offset} is invalid", E.CORRUPT_FILE)
    if not (math.isfinite(slope) and math.isfinite(inter)):
        raise InputError(f"{name}: the intensity scaling (scl_slope, scl_inter) is not a finite number", E.CORRUPT_FILE)
    dims = tuple(int(d) for d in dim[1 : ndim + 1])
    check_size(dims, name, limits)  # refuses too many voxels before any size is computed from them
    header = NiftiHeader(version, e, dims, dtype, int(vox_offset), float(slope), float(inter))
    if header.data_bytes > limits.max_bytes:
        raise InputError(f"{name}'s pixel data would be {header.data_bytes} bytes; the limit is {limits.max_bytes}",
                         E.FILE_TOO_LARGE)
    return header


def _check_extensions(data: bytes, header: NiftiHeader, name: str) -> None:
    """Extensions (between the header and the pixels) are skipped, but their chain must be intact."""
    start = header.header_size
    if len(data) < start + 4 or data[start] == 0:
        return
    pos = start + 4
    while pos < header.vox_offset:
        if pos + 8 > header.vox_offset:
            break  # padding after the last extension
        esize = struct.unpack(header.endian + "i", data[pos : pos + 4])[0]
        if esize == 0:
            break
        if esize < 16 or esize % 16 or pos + esize > header.vox_offset:
            raise InputError(f"{name}: a header extension of {esize} bytes does not fit before the pixel data",
                             E.CORRUPT_FILE)
        pos += esize


def _itk_geometry(header_bytes: bytes, size: tuple[int, ...], name: str) -> Geometry:
    with tempfile.TemporaryDirectory(prefix="discscope-nii-") as tmp:
        path = Path(tmp) / "header.nii"
        path.write_bytes(header_bytes)
        reader = sitk.ImageFileReader()
        reader.SetImageIO("NiftiImageIO")  # no probing: ITK's other readers are never asked
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            raise InputError(f"{name}: the NIfTI header cannot be read ({lines[-1][:200] if lines else exc})",
                             E.CORRUPT_FILE) from None
    n = len(size)
    full = reader.GetDimension()
    direction = np.asarray(reader.GetDirection()).reshape(full, full)[:n, :n]
    return Geometry(tuple(size), tuple(reader.GetSpacing()[:n]), tuple(reader.GetOrigin()[:n]),
                    tuple(float(v) for v in direction.ravel()))
