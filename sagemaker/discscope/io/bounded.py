"""Decompression that never produces more than the header said: the output size is decided before
anything is inflated, and a stream that holds more, less or something corrupt is refused."""

from __future__ import annotations

import zlib

from .. import errors as E
from ..errors import InputError

ZLIB = zlib.MAX_WBITS
GZIP = 16 + zlib.MAX_WBITS


class Inflater:
    """One zlib or gzip stream, read in steps of known size."""

    def __init__(self, data: bytes | memoryview, name: str, wbits: int = ZLIB):
        self._d = zlib.decompressobj(wbits)
        self._pending: bytes | memoryview = data
        self.name = name

    def take(self, n: int) -> bytes:
        """Exactly `n` bytes of output (fewer only if the stream ends: the caller decides)."""
        out = bytearray()
        try:
            while len(out) < n:
                chunk = self._d.decompress(self._pending, n - len(out))
                self._pending = self._d.unconsumed_tail
                out += chunk
                if not chunk and (self._d.eof or not self._pending):
                    break
        except zlib.error as exc:
            raise InputError(f"{self.name}: the compressed data is corrupt ({exc})", E.CORRUPT_FILE) from None
        return bytes(out)

    def take_exactly(self, n: int, what: str = "pixel data") -> bytes:
        out = self.take(n)
        if len(out) < n:
            raise InputError(f"{self.name} is truncated: its {what} holds {len(out)} bytes, the header says {n}",
                             E.TRUNCATED_FILE)
        return out

    def finish(self, what: str = "pixel data") -> None:
        """The stream must end here: a complete stream, checksum verified, nothing after it."""
        extra = self.take(1)
        if extra:
            raise InputError(f"{self.name}: the {what} is longer than its header says (wrong pixel type or size?)",
                             E.CORRUPT_FILE)
        if not self._d.eof:
            raise InputError(f"{self.name} is truncated: the compressed stream does not end", E.TRUNCATED_FILE)
        if self._d.unused_data:
            raise InputError(f"{self.name}: there is data after the end of the compressed stream", E.CORRUPT_FILE)


def inflate_exactly(data: bytes | memoryview, n: int, name: str, wbits: int = ZLIB) -> bytes:
    """A whole stream that must decompress to exactly `n` bytes."""
    stream = Inflater(data, name, wbits)
    out = stream.take_exactly(n)
    stream.finish()
    return out


def peek(data: bytes, n: int, wbits: int = GZIP) -> bytes | None:
    """Up to `n` decompressed bytes from the start of a stream, or None if it is not one."""
    try:
        return zlib.decompressobj(wbits).decompress(data, n)
    except zlib.error:
        return None
