"""Cheap format sniffing on the first bytes of an upload, so bad files fail before the endpoint.

A deliberately small twin of `discscope.io.sniff` (Lambdas may not import discscope); the endpoint
still reads and checks the whole file. A test runs both on the same samples.
"""

from __future__ import annotations

import re
import struct
import zlib

TEXT_BYTES = frozenset(range(32, 127)) | frozenset(b"\t\n\r\f")
UNSUPPORTED = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"GIF8", "GIF"), (b"BM", "BMP"))
SNIFF_BYTES = 1024  # what both sniffers look at; the endpoint's readers parse whole headers
METAIMAGE = re.compile(rb"\s*(ObjectType|NDims|NDIMS|DimSize|ElementType|Comment|ObjectSubType)\s*=", re.IGNORECASE)


class SniffError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _is_nifti(head: bytes) -> bool:
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348 and head[344:348] in (b"n+1\0", b"ni1\0"):
            return True
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540 and head[4:8] in (b"n+2\0", b"ni2\0"):
            return True
    return False


def _gzip_start(head: bytes) -> bytes | None:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 540)
    except zlib.error:
        return None


def sniff(head: bytes, filename: str = "") -> str:
    """'zip' | 'png' | 'jpeg' | 'nifti' | 'nifti-gz' | 'mha' | 'mhd'; raises SniffError otherwise."""
    head = head[:SNIFF_BYTES]
    if not head:
        raise SniffError("EMPTY_FILE", f"{filename or 'the upload'} is empty")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if _is_nifti(head):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):  # by content: the name is only a hint when the head holds too little
        inner = _gzip_start(head)
        if inner is not None and _is_nifti(inner):
            return "nifti-gz"
        if (inner is None or len(inner) < 348) and filename.lower().endswith((".nii.gz", ".nii")):
            return "nifti-gz"
        raise SniffError("UNSUPPORTED_FORMAT", "a gzip file that is not a NIfTI image")
    if METAIMAGE.match(head[:512]):
        m = re.search(rb"ElementDataFile\s*=\s*(\S+)", head)
        return "mhd" if m and m.group(1) != b"LOCAL" else "mha"
    if len(head) > 132 and head[128:132] == b"DICM":
        raise SniffError("UNSUPPORTED_FORMAT", "a single DICOM file: upload the whole sagittal series as a ZIP")
    for magic, what in UNSUPPORTED:
        if head.startswith(magic):
            raise SniffError("UNSUPPORTED_FORMAT", f"{what} images are not supported: use MHA, NIfTI, a DICOM ZIP, PNG or JPEG")
    if all(b in TEXT_BYTES for b in head[:512]):
        raise SniffError("NOT_AN_IMAGE", f"{filename or 'the file'} is text, not an image")
    raise SniffError("NOT_AN_IMAGE", f"{filename or 'the file'} is not a recognised image format")
