"""PNG and JPEG slices, alone or as a stack (from a ZIP).

The file's structure is walked before OpenCV decodes anything: PNG chunks (IHDR first, CRCs of the
critical chunks, IEND last), JPEG markers (a frame header, a bounded number of scans, EOI). The
decoded size comes from that header and is checked against the limits first.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from .. import errors as E
from ..errors import InputError
from .base import Reader, Source
from .volume import Geometry, Limits, Volume, build, plan

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # colour type -> bit depths
PNG_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
MAX_JPEG_SCANS = 64  # progressive JPEGs use about 10; thousands make decoding slow without limit


@dataclass(frozen=True)
class RasterInfo:
    kind: str  # png | jpeg
    height: int
    width: int


def detect_kind(head: bytes) -> str | None:
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None


class RasterReader(Reader):
    formats = ("png", "jpeg")

    @staticmethod
    def detect(head: bytes, name: str) -> str | None:
        return detect_kind(head)

    def read(self, source: Source, limits: Limits) -> Volume:
        return read_slices([source], limits)


def read_slices(sources: list[Source], limits: Limits) -> Volume:
    """One slice, or a stack of same-sized slices in the given order, checked before decoding."""
    infos = [inspect(s.data, s.name) for s in sources]
    first = infos[0]
    for info, s in zip(infos, sources):
        if (info.height, info.width) != (first.height, first.width):
            raise InputError(f"slice {s.name} is {info.width}x{info.height} but {sources[0].name} is "
                             f"{first.width}x{first.height}: all slices must have one size", E.INCONSISTENT_SLICES)
    single = len(sources) == 1
    size = (first.width, first.height) if single else (first.width, first.height, len(sources))
    name = sources[0].name if single else f"the {len(sources)} slices"
    if first.width * first.height * len(sources) > limits.max_voxels:
        raise InputError(f"{name} hold more than {limits.max_voxels} pixels", E.IMAGE_TOO_LARGE)
    p = plan(Geometry.plain(size), name, limits, spacing_recorded=False)
    slices = [_decode(s, info) for s, info in zip(sources, infos)]
    array = slices[0] if single else np.stack(slices)
    kinds = {i.kind for i in infos}
    fmt = first.kind if single else f"{first.kind if len(kinds) == 1 else 'image'}-stack"
    return build(array, p, fmt, name, limits)


def inspect(data: bytes, name: str) -> RasterInfo:
    kind = detect_kind(data[:8])
    if kind == "png":
        return _png(data, name)
    if kind == "jpeg":
        return _jpeg(data, name)
    raise InputError(f"{name} is not a PNG or JPEG image", E.NOT_AN_IMAGE)


def _png(data: bytes, name: str) -> RasterInfo:
    pos, seen, ihdr = 8, [], None
    while True:
        if pos + 8 > len(data):
            raise InputError(f"{name} is truncated: the PNG ends before its IEND chunk", E.TRUNCATED_FILE)
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or not ctype.isalpha():
            raise InputError(f"{name}: a PNG chunk header is corrupt", E.CORRUPT_FILE)
        if end > len(data):
            raise InputError(f"{name} is truncated: the PNG ends inside its {ctype.decode()} chunk", E.TRUNCATED_FILE)
        body = data[pos + 8 : pos + 8 + length]
        if ctype[:1].isupper():  # critical: must be understood, and intact
            if ctype not in PNG_CRITICAL:
                raise InputError(f"{name}: PNG chunk {ctype.decode()} is not supported", E.UNSUPPORTED_FORMAT)
            if zlib.crc32(ctype + body) != struct.unpack(">I", data[end - 4 : end])[0]:
                raise InputError(f"{name}: the PNG's {ctype.decode()} chunk fails its checksum", E.CORRUPT_FILE)
        if not seen and ctype != b"IHDR":
            raise InputError(f"{name}: the PNG does not start with its IHDR chunk", E.CORRUPT_FILE)
        if ctype == b"IHDR":
            if seen or length != 13:
                raise InputError(f"{name}: the PNG's IHDR chunk is invalid", E.CORRUPT_FILE)
            ihdr = struct.unpack(">IIBBBBB", body)
        if ctype == b"IDAT" and b"IDAT" in seen and seen[-1] != b"IDAT":
            raise InputError(f"{name}: the PNG's image data is not contiguous", E.CORRUPT_FILE)
        seen.append(ctype)
        pos = end
        if ctype == b"IEND":
            break
    if pos != len(data):
        raise InputError(f"{name}: {len(data) - pos} bytes follow the PNG's end", E.CORRUPT_FILE)
    width, height, depth, colour, compression, filtering, interlace = ihdr
    if depth not in PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        raise InputError(f"{name}: PNG colour type {colour} at {depth} bits is not valid", E.CORRUPT_FILE)
    if b"IDAT" not in seen or (colour == 3 and b"PLTE" not in seen):
        raise InputError(f"{name}: the PNG has no image data", E.CORRUPT_FILE)
    if width == 0 or height == 0:
        raise InputError(f"{name}: the PNG is {width}x{height} pixels", E.CORRUPT_FILE)
    return RasterInfo("png", height, width)


def _jpeg(data: bytes, name: str) -> RasterInfo:
    pos, frame = 2, None
    while True:  # the segments up to the first scan
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(data):
            raise InputError(f"{name} is truncated: the JPEG ends before its image data", E.TRUNCATED_FILE)
        if data[pos] != 0xFF:
            raise InputError(f"{name}: the JPEG's marker structure is corrupt", E.CORRUPT_FILE)
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if length < 2 or pos + 2 + length > len(data):
            raise InputError(f"{name} is truncated inside a JPEG header segment", E.TRUNCATED_FILE)
        if marker in JPEG_FRAMES:
            if frame is not None or length < 8:
                raise InputError(f"{name}: the JPEG has an invalid or second frame header", E.CORRUPT_FILE)
            frame = struct.unpack(">BHHB", data[pos + 4 : pos + 10])
        if marker == 0xDA:
            break
        pos += 2 + length
    if frame is None:
        raise InputError(f"{name}: the JPEG has no frame header", E.CORRUPT_FILE)
    precision, height, width, components = frame
    if precision != 8 or components not in (1, 3):
        raise InputError(f"{name}: {precision}-bit JPEG with {components} components is not supported (8-bit grey "
                         "or colour)", E.UNSUPPORTED_PIXEL_TYPE)
    if width == 0 or height == 0:
        raise InputError(f"{name}: the JPEG does not state its size", E.UNSUPPORTED_FORMAT)
    scans = data.count(b"\xff\xda", pos)  # markers: entropy-coded data never holds FF DA (it is byte-stuffed)
    if scans > MAX_JPEG_SCANS:
        raise InputError(f"{name} has {scans} scans; at most {MAX_JPEG_SCANS} are decoded", E.UNSUPPORTED_FORMAT)
    if data.rfind(b"\xff\xd9") < pos:
        raise InputError(f"{name} is truncated: the JPEG has no end-of-image marker", E.TRUNCATED_FILE)
    return RasterInfo("jpeg", height, width)


def _decode(source: Source, info: RasterInfo) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(source.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.shape[:2] != (info.height, info.width):
        raise InputError(f"{source.name}: the {info.kind.upper()} data is corrupt", E.CORRUPT_FILE)
    if img.ndim == 3:  # screenshots and exports are often RGB(A) of a greyscale image
        code = {4: cv2.COLOR_BGRA2GRAY, 3: cv2.COLOR_BGR2GRAY}.get(img.shape[2])
        img = cv2.cvtColor(img, code) if code is not None else img[:, :, 0]
    return img
