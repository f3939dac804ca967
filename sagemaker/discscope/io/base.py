"""What every reader implements: recognise its format from the first bytes, then read all of it or
refuse it. A reader checks its header before it reads or decompresses any pixel data, and refuses
what it does not fully understand rather than guess."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

from .volume import Limits, Volume


@dataclass(frozen=True)
class Source:
    """A file's bytes and its name. Inside a ZIP, `sibling` finds another member of the same archive
    by its path there (the only way one file may refer to another); a plain upload has none."""

    data: bytes
    name: str
    sibling: Callable[[str], bytes | None] | None = None


class Reader(ABC):
    formats: ClassVar[tuple[str, ...]]  # what `detect` may answer; also Volume.source_format

    @staticmethod
    @abstractmethod
    def detect(head: bytes, name: str) -> str | None:
        """One of `formats` if the first bytes (at most 1 KiB) are this format's, else None."""

    @abstractmethod
    def read(self, source: Source, limits: Limits) -> Volume:
        """The canonical volume, or an InputError that says what is wrong."""
