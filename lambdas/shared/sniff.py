"""Cheap format sniffing on the first bytes of an upload, so bad files fail before the endpoint.

A deliberately small twin of `discscope.io.sniff` (Lambdas may not import discscope); the endpoint
still does the full validation. A test runs both on the same samples.
"""

from __future__ import annotations

import re
import struct

TEXT_BYTES = frozenset(range(32, 127)) | frozenset(b"\t\n\r\f")
UNSUPPORTED = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"GIF8", "GIF"), (b"BM", "BMP"))


class SniffError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def sniff(head: bytes, filename: str = "") -> str:
    """'zip' | 'png' | 'jpeg' | 'nifti' | 'nifti-gz' | 'mha' | 'mhd'; raises SniffError otherwise."""
    name = filename.lower()
    if not head:
        raise SniffError("EMPTY_FILE", f"{filename or 'the upload'} is empty")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x1f\x8b"):
        if name.endswith((".nii.gz", ".nii", ".gz")):
            return "nifti-gz"
        raise SniffError("UNSUPPORTED_FORMAT", "a gzip file that is not named .nii.gz")
    if len(head) >= 348 and 348 in (struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]) \
            and head[344:347] in (b"n+1", b"ni1"):
        return "nifti"
    if re.match(rb"\s*(ObjectType|NDims|NDIMS|DimSize|ElementType)\s*=", head[:512]):
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
