"""ZIP archives: one volume (an .mhd with its data file, an .mha, a NIfTI), a DICOM series, or a
stack of PNG/JPEG slices.

Members are never extracted by their own names: they are read into memory within the declared
sizes (whose sum is checked first), and a member can only be reached by another through
:class:`Source.sibling`, which resolves plain names inside this archive. Symbolic links, encrypted
members and duplicate names are refused.
"""

from __future__ import annotations

import io
import posixpath
import re
import stat
import zipfile

from .. import errors as E
from ..errors import InputError
from . import dicom, raster
from .base import Reader, Source
from .metaimage import MetaImageReader
from .nifti import NiftiReader
from .volume import Limits, Volume

VOLUME_SUFFIXES = (".mha", ".mhd", ".nii", ".nii.gz")
PEEK = 1024


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


class ZipReader(Reader):
    formats = ("zip",)

    @staticmethod
    def detect(head: bytes, name: str) -> str | None:
        return "zip" if head.startswith((b"PK\x03\x04", b"PK\x05\x06")) else None

    def read(self, source: Source, limits: Limits) -> Volume:
        with Archive(source, limits) as archive:
            return archive.read_study()


class Archive:
    def __init__(self, source: Source, limits: Limits):
        self.name, self.limits = source.name, limits
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(source.data))
            infos = [i for i in self.zip.infolist() if not i.is_dir() and not _ignored(i.filename)]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InputError(f"{self.name} is a truncated or corrupt ZIP ({exc})", E.TRUNCATED_FILE) from None
        if not infos:
            raise InputError(f"{self.name} holds no files", E.EMPTY_FILE)
        if len(infos) > limits.max_archive_entries:
            raise InputError(f"{self.name} holds {len(infos)} files; the limit is {limits.max_archive_entries}",
                             E.UNSAFE_ARCHIVE)
        total = sum(i.file_size for i in infos)
        if total > limits.max_bytes:
            raise InputError(f"{self.name} expands to {total} bytes; the limit is {limits.max_bytes}", E.FILE_TOO_LARGE)
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            path = _normalised(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InputError(f"{self.name}: {info.filename} is a symbolic link", E.UNSAFE_ARCHIVE)
            if info.flag_bits & 0x1:
                raise InputError(f"{self.name}: {info.filename} is encrypted", E.UNSUPPORTED_FORMAT)
            if path in self.members:
                raise InputError(f"{self.name} holds {info.filename} twice", E.UNSAFE_ARCHIVE)
            self.members[path] = info

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    def read_member(self, path: str, limit: int | None = None) -> bytes:
        """A member's bytes (at most its declared size; `limit` reads only the start)."""
        info = self.members[path]
        try:
            with self.zip.open(info) as fh:
                return fh.read(info.file_size if limit is None else min(limit, info.file_size))
        except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as exc:
            raise InputError(f"{self.name}: {info.filename} cannot be extracted ({exc})", E.TRUNCATED_FILE) from None
        except (NotImplementedError, RuntimeError) as exc:  # compression methods zipfile lacks
            raise InputError(f"{self.name}: {info.filename} cannot be extracted ({exc})", E.UNSUPPORTED_FORMAT) from None

    def source(self, path: str) -> Source:
        folder = posixpath.dirname(path)

        def sibling(name: str) -> bytes | None:
            target = posixpath.join(folder, name)
            return self.read_member(target) if target in self.members else None

        return Source(self.read_member(path), self.members[path].filename, sibling)

    def read_study(self) -> Volume:
        ordered = sorted(self.members, key=natural_key)
        heads = {path: self.read_member(path, PEEK) for path in ordered}
        volumes = [p for p in ordered if p.lower().endswith(VOLUME_SUFFIXES)]
        if volumes:
            if len(volumes) != 1:
                raise InputError(f"the ZIP holds {len(volumes)} volumes; upload one study per ZIP", E.UNSUPPORTED_FORMAT)
            return self._read_volume(volumes[0], heads[volumes[0]])
        dicoms = [p for p in ordered if dicom.is_dicom(heads[p]) or p.lower().endswith(".dcm")]
        if dicoms:
            return dicom.read_series([self.source(p) for p in dicoms], self.limits)
        images = [p for p in ordered if raster.detect_kind(heads[p])]
        if images:
            return raster.read_slices([self.source(p) for p in images], self.limits)
        raise InputError(f"{self.name} holds no DICOM, PNG, JPEG, MHA or NIfTI files", E.NOT_AN_IMAGE)

    def _read_volume(self, path: str, head: bytes) -> Volume:
        for reader in (MetaImageReader(), NiftiReader()):
            if reader.detect(head, path):
                return reader.read(self.source(path), self.limits)
        raise InputError(f"{path} is named like a volume but is not an MHA, MHD or NIfTI file", E.NOT_AN_IMAGE)


def _normalised(name: str) -> str:
    """The member's path as the archive means it: forward slashes, no leading slash or dot segments."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def _ignored(name: str) -> bool:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return name.startswith("__MACOSX/") or base.startswith(".") or base.lower() in ("dicomdir", "thumbs.db")
