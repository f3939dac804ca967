"""MetaImage (.mha with its pixels inside, .mhd naming a data file in the same ZIP), read without ITK.

ITK's MetaImage reader opens whatever path `ElementDataFile` names, so the header is parsed here,
whole, and the pixel data is read from the upload itself: LOCAL for an .mha, a plain member of the
same archive for an .mhd, never a path on the machine.
"""

from __future__ import annotations

import math
import re

import numpy as np

from .. import errors as E
from ..errors import InputError
from .base import Reader, Source
from .bounded import inflate_exactly
from .volume import Geometry, Limits, Volume, build, check_size, plan

MAX_HEADER_BYTES = 64 * 1024
# MetaIO element types with a fixed size (MET_LONG/MET_ULONG differ between platforms: refused)
DTYPES = {"MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4",
          "MET_UINT": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8", "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}
# Keys that change where or how pixels are read, in one spelling; synonyms map to one meaning.
SYNONYMS = {"offset": "origin", "position": "origin", "origin": "origin", "transformmatrix": "direction",
            "rotation": "direction", "orientation": "direction",
            "binarydatabyteordermsb": "msb", "elementbyteordermsb": "msb"}
READING_KEYS = {"objecttype", "ndims", "dimsize", "elementtype", "elementdatafile", "elementspacing", "binarydata",
                "compresseddata", "compresseddatasize", "headersize", "elementnumberofchannels"} | set(SYNONYMS)
_KEY_LINE = re.compile(rb"\s*(ObjectType|NDims|NDIMS|DimSize|ElementType|Comment|ObjectSubType)\s*=", re.IGNORECASE)
_TEXT = frozenset(range(32, 127)) | frozenset(b"\t\r")


class MetaImageReader(Reader):
    formats = ("mha", "mhd")

    @staticmethod
    def detect(head: bytes, name: str) -> str | None:
        if not _KEY_LINE.match(head[:512]):
            return None
        # A first guess from the first bytes; read() parses the whole header and decides.
        m = re.search(rb"ElementDataFile\s*=\s*(\S+)", head)
        return "mhd" if m and m.group(1) != b"LOCAL" else "mha"

    def read(self, source: Source, limits: Limits) -> Volume:
        name = source.name
        fields, data_start = parse_header(source.data, name)
        header = Header(fields, name)
        size = check_size(header.dims, name, limits)
        geometry = header.geometry(len(size))
        p = plan(geometry, name, limits)
        dtype = header.dtype()
        expected = math.prod(size) * dtype.itemsize
        if expected > limits.max_bytes:
            raise InputError(f"{name}'s pixel data would be {expected} bytes; the limit is {limits.max_bytes}",
                             E.FILE_TOO_LARGE)
        datafile = fields["elementdatafile"]
        if datafile == "LOCAL":
            raw, fmt = memoryview(source.data)[data_start:], "mha"
        else:
            raw, fmt = _data_file(source, datafile), "mhd"
        pixels = header.pixels(raw, expected)
        array = np.frombuffer(pixels, dtype).reshape(size[::-1])
        return build(array, p, fmt, name, limits)


def parse_header(data: bytes, name: str) -> tuple[dict[str, str], int]:
    """All `Key = Value` lines up to and including ElementDataFile (lower-case keys, synonyms
    resolved), and where the data starts."""
    fields: dict[str, str] = {}
    pos = 0
    while True:
        end = data.find(b"\n", pos, MAX_HEADER_BYTES)
        if end < 0:
            if len(data) < MAX_HEADER_BYTES:
                raise InputError(f"{name} is truncated: the MetaImage header ends before ElementDataFile",
                                 E.TRUNCATED_FILE)
            raise InputError(f"{name}: no ElementDataFile within the first {MAX_HEADER_BYTES} bytes of the header",
                             E.NOT_AN_IMAGE)
        line = data[pos:end]
        pos = end + 1
        if not line.strip():
            continue
        if any(b not in _TEXT for b in line):
            raise InputError(f"{name}: the MetaImage header holds bytes that are not text", E.NOT_AN_IMAGE)
        key, sep, value = line.decode("ascii").partition("=")
        if not sep:
            raise InputError(f"{name}: the header line {line[:60].decode('ascii')!r} is not `Key = Value`",
                             E.NOT_AN_IMAGE)
        key = key.strip().lower()
        key = SYNONYMS.get(key, key)
        if key in READING_KEYS | set(SYNONYMS.values()) and key in fields:
            raise InputError(f"{name}: the header gives {key} twice", E.UNSUPPORTED_FORMAT)
        fields[key] = value.strip()
        if key == "elementdatafile":  # MetaIO: always the last field; the data follows its line
            return fields, pos


class Header:
    """The fields that decide where and how pixels are read, checked."""

    def __init__(self, fields: dict[str, str], name: str):
        self.fields, self.name = fields, name
        if fields.get("objecttype", "Image").lower() != "image":
            raise InputError(f"{name} is a MetaIO {fields['objecttype']} object, not an image", E.UNSUPPORTED_FORMAT)
        if fields.get("binarydata", "True").lower() != "true":
            raise InputError(f"{name} stores its pixels as text (BinaryData = False)", E.UNSUPPORTED_FORMAT)
        if self._int("headersize", 0) != 0:
            raise InputError(f"{name}: a data file with a header of its own (HeaderSize) is not supported",
                             E.UNSUPPORTED_FORMAT)
        channels = self._int("elementnumberofchannels", 1)
        if channels != 1:
            raise InputError(f"{name} has {channels} components per pixel (RGB/vector); a greyscale MR volume is "
                             "required", E.UNSUPPORTED_PIXEL_TYPE)
        self.ndims = self._int("ndims", None)
        if self.ndims is None or not 1 <= self.ndims <= 8:
            raise InputError(f"{name}: NDims is missing or not 1-8", E.NOT_AN_IMAGE)
        self.dims = tuple(self._numbers("dimsize", int, None))

    def _int(self, key: str, default):
        if key not in self.fields:
            return default
        try:
            return int(self.fields[key])
        except ValueError:
            raise InputError(f"{self.name}: {key} = {self.fields[key]!r} is not an integer", E.NOT_AN_IMAGE) from None

    def _numbers(self, key: str, kind, default, count: int | None = None) -> list:
        if key not in self.fields:
            if default is None:
                raise InputError(f"{self.name}: the header has no {key}", E.NOT_AN_IMAGE)
            return default
        count = self.ndims if count is None else count
        try:
            values = [kind(v) for v in self.fields[key].split()]
        except ValueError:
            raise InputError(f"{self.name}: {key} = {self.fields[key][:60]!r} is not {count} numbers",
                             E.NOT_AN_IMAGE) from None
        if len(values) != count:
            raise InputError(f"{self.name}: {key} has {len(values)} values for {count}", E.NOT_AN_IMAGE)
        return values

    def geometry(self, ndim: int) -> Geometry:
        n = self.ndims
        spacing = self._numbers("elementspacing", float, [1.0] * n)
        origin = self._numbers("origin", float, [0.0] * n)
        stored = np.asarray(self._numbers("direction", float, list(np.eye(n).ravel()), n * n)).reshape(n, n)
        direction = stored.T[:ndim, :ndim]  # MetaIO stores ITK's direction transposed
        return Geometry(tuple(self.dims[:ndim]), tuple(spacing[:ndim]), tuple(origin[:ndim]),
                        tuple(float(v) for v in direction.ravel()))

    def dtype(self) -> np.dtype:
        kind = self.fields.get("elementtype", "")
        if kind not in DTYPES:
            raise InputError(f"{self.name}: ElementType {kind or 'missing'} is not a supported greyscale type",
                             E.UNSUPPORTED_PIXEL_TYPE)
        msb = self.fields.get("msb", "False").lower() == "true"
        return np.dtype(DTYPES[kind]).newbyteorder(">" if msb else "<")

    def pixels(self, raw: memoryview | bytes, expected: int) -> bytes | memoryview:
        """Exactly `expected` bytes of pixel data, inflated when compressed."""
        if self.fields.get("compresseddata", "False").lower() == "true":
            declared = self._int("compresseddatasize", None)
            if declared is not None and declared != len(raw):
                code = E.TRUNCATED_FILE if declared > len(raw) else E.CORRUPT_FILE
                raise InputError(f"{self.name}: {len(raw)} bytes of compressed data, the header says {declared}", code)
            return inflate_exactly(raw, expected, self.name, wbits=47)  # zlib or gzip, as MetaIO accepts
        if len(raw) < expected:
            raise InputError(f"{self.name} is truncated: pixel data is {len(raw)} bytes, the header says {expected}",
                             E.TRUNCATED_FILE)
        if len(raw) > expected:
            raise InputError(f"{self.name}: pixel data is {len(raw)} bytes, longer than the {expected} its header says "
                             "(wrong ElementType or DimSize?)", E.CORRUPT_FILE)
        return raw


def _data_file(source: Source, datafile: str) -> bytes:
    """The member an .mhd names: a plain file name beside the header in the same archive."""
    name = source.name
    if datafile.upper() == "LIST" or any(c.isspace() for c in datafile) or "%" in datafile:
        raise InputError(f"{name}: data split over several files (ElementDataFile = {datafile[:60]}) is not supported",
                         E.UNSUPPORTED_FORMAT)
    if "/" in datafile or "\\" in datafile or ":" in datafile or datafile in (".", "..") or "\0" in datafile:
        raise InputError(f"{name} names the data file {datafile[:100]!r}: a header may only name a file beside it "
                         "in the same ZIP", E.EXTERNAL_REFERENCE)
    if source.sibling is None:
        raise InputError(f"{name} keeps its pixels in {datafile}: upload the header and its data file together "
                         "in a ZIP", E.UNSUPPORTED_FORMAT)
    data = source.sibling(datafile)
    if data is None:
        raise InputError(f"{name} refers to {datafile}, which is not beside it in the ZIP", E.TRUNCATED_FILE)
    return data
