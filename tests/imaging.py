"""Test helpers that write studies in every supported format from one canonical array."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk

# ITK direction of a sagittal acquisition in LPS: columns A->P (+y), rows S->I (-z), slices R-wards.
SAGITTAL_DIRECTION = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


def sagittal_image(canonical: np.ndarray, spacing=(2.0, 0.9, 0.8)) -> sitk.Image:
    """An image whose physical geometry is sagittal and whose canonical reading is `canonical`."""
    img = sitk.GetImageFromArray(canonical)
    img.SetSpacing((spacing[2], spacing[1], spacing[0]))
    img.SetDirection(SAGITTAL_DIRECTION)
    img.SetOrigin((10.0, -20.0, 30.0))
    return img


def write_dicom_zip(canonical: np.ndarray, path: Path, spacing=(2.0, 0.9, 0.8), sizes=None, tags=None,
                    compressor: str | None = None, skip=()) -> Path:
    """A sagittal DICOM series (one file per slice) zipped; `sizes` overrides per-slice (h, w),
    `tags(i)` per-slice DICOM tags, `compressor` (e.g. "JPEG2000") compresses the pixels, `skip`
    leaves slices out."""
    image = sagittal_image(canonical.astype(np.int16), spacing)
    direction = image.GetDirection()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(image.GetDepth()):
            sl = image[:, :, i]
            if sizes and sizes[i]:
                arr = np.zeros(sizes[i], np.int16)
                sl = sitk.GetImageFromArray(arr)
                sl.SetSpacing(image.GetSpacing()[:2])
            writer = sitk.ImageFileWriter()
            writer.KeepOriginalImageUIDOn()
            slice_tags = {
                "0008|0060": "MR", "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
                "0020|000e": "1.2.826.0.1.3680043.2.1125.1.2",
                "0020|0037": "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7])),
                "0020|0032": "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, i))),
                "0020|0013": str(i + 1), "0018|0050": f"{spacing[0]:.3f}",
                "0008|0018": f"1.2.826.0.1.3680043.2.1125.1.3.{i + 1}",
            }
            for k, v in (slice_tags | (tags(i) if tags else {})).items():
                sl.SetMetaData(k, v)
            if i in skip:
                continue
            if compressor:
                writer.SetImageIO("GDCMImageIO")
                writer.SetUseCompression(True)
                writer.SetCompressor(compressor)
            tmp = path.parent / f"_slice{i}.dcm"
            writer.SetFileName(str(tmp))
            writer.Execute(sl)
            zf.write(tmp, f"series/IM{i:04d}")  # no extension: DICOM is found by its preamble
            tmp.unlink()
    path.write_bytes(buf.getvalue())
    return path


def png_bytes(slice_: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", slice_)
    assert ok
    return data.tobytes()


def zip_of(members: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def set_transfer_syntax(dicom: bytes, uid: str) -> bytes:
    """The same Part 10 file claiming another transfer syntax (file meta group rewritten)."""
    import struct

    pos, elements = 132, []
    while True:
        group, element = struct.unpack("<HH", dicom[pos : pos + 4])
        if group != 2:
            break
        vr = dicom[pos + 4 : pos + 6]
        if vr in (b"OB", b"UN", b"SQ", b"UT"):
            length, start = struct.unpack("<I", dicom[pos + 8 : pos + 12])[0], pos + 12
        else:
            length, start = struct.unpack("<H", dicom[pos + 6 : pos + 8])[0], pos + 8
        elements.append((element, vr, dicom[start : start + length]))
        pos = start + length
    value = uid.encode() + (b"\0" if len(uid) % 2 else b"")
    out = b""
    for element, vr, data in elements:
        if element == 0x0000:
            continue
        data = value if element == 0x0010 else data
        if vr in (b"OB", b"UN", b"SQ", b"UT"):
            out += struct.pack("<HH2sHI", 2, element, vr, 0, len(data)) + data
        else:
            out += struct.pack("<HH2sH", 2, element, vr, len(data)) + data
    group_length = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(out))
    return dicom[:132] + group_length + out + dicom[pos:]
