"""Picking the reader: by content, not by name (a text file renamed .png is caught), then the
checks every upload gets whatever its format."""

from __future__ import annotations

from pathlib import Path

from .. import errors as E
from ..errors import InputError
from .archive import ZipReader
from .base import Reader, Source
from .metaimage import MetaImageReader
from .nifti import NiftiReader
from .raster import RasterReader
from .volume import DEFAULT_LIMITS, Limits, Volume

READERS: tuple[Reader, ...] = (ZipReader(), RasterReader(), NiftiReader(), MetaImageReader())
SNIFF_BYTES = 1024
_TEXT_BYTES = frozenset(range(32, 127)) | frozenset(b"\t\n\r\f")
_REFUSED = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"GIF8", "GIF"), (b"BM", "BMP"))


def reader_for(head: bytes, filename: str = "") -> tuple[Reader, str]:
    for reader in READERS:
        kind = reader.detect(head, filename)
        if kind:
            return reader, kind
    if len(head) > 132 and head[128:132] == b"DICM":
        raise InputError("a single DICOM file: upload the whole sagittal series as a ZIP", E.UNSUPPORTED_FORMAT)
    for magic, what in _REFUSED:
        if head.startswith(magic):
            raise InputError(f"{what} images are not supported: use MHA, NIfTI, a DICOM ZIP, PNG or JPEG",
                             E.UNSUPPORTED_FORMAT)
    if head and all(b in _TEXT_BYTES for b in head[:512]):
        raise InputError(f"{filename or 'the file'} is text, not an image", E.NOT_AN_IMAGE)
    raise InputError(f"{filename or 'the file'} is not a recognised image format", E.NOT_AN_IMAGE)


def sniff(head: bytes, filename: str = "") -> str:
    """The format of a file from its first bytes: zip, png, jpeg, nifti, nifti-gz, mha or mhd."""
    return reader_for(head[:SNIFF_BYTES], filename)[1]


def read_study_bytes(data: bytes, filename: str, limits: Limits = DEFAULT_LIMITS, sibling=None) -> Volume:
    """Read a study given as bytes (an upload, an HTTP body). The name only helps where the first
    KiB cannot tell (a gzip stream whose NIfTI header is not within it)."""
    name = filename or "the upload"
    if len(data) == 0:
        raise InputError(f"{name} is empty", E.EMPTY_FILE)
    if len(data) > limits.max_bytes:
        raise InputError(f"{name} is {len(data)} bytes; the limit is {limits.max_bytes}", E.FILE_TOO_LARGE)
    reader, _ = reader_for(data[:SNIFF_BYTES], filename)
    return reader.read(Source(data, name, sibling), limits)


def read_study(path: str | Path, limits: Limits = DEFAULT_LIMITS, beside: bool = False) -> Volume:
    """Read a study file from disk. Alone by default; `beside=True` (an operator's own files, e.g.
    `discscope predict a.mhd`) lets an .mhd name a regular file in the same folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path.name}: no such file", E.NOT_AN_IMAGE)
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise InputError(f"{path.name} is {size} bytes; the limit is {limits.max_bytes}", E.FILE_TOO_LARGE)
    return read_study_bytes(path.read_bytes(), path.name, limits, _folder_sibling(path.parent) if beside else None)


def _folder_sibling(folder: Path):
    def sibling(name: str) -> bytes | None:
        target = folder / name  # a plain name: the reader refuses separators and dot segments
        return target.read_bytes() if target.is_file() and not target.is_symlink() else None

    return sibling
