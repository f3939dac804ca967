"""Reading every supported format into the canonical volume, and refusing every kind of bad input."""

from __future__ import annotations

import gzip
import struct
import zipfile
import zlib

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from discscope import errors as E
from discscope.errors import InputError
from discscope.io import Limits, read_study, read_study_bytes, write_mask

from imaging import png_bytes, sagittal_image, write_dicom_zip, zip_of


@pytest.fixture(scope="module")
def canonical() -> np.ndarray:
    """A (slices, rows, cols) array where every position is distinguishable."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 3000, size=(7, 40, 36)).astype(np.int16)


def _code(excinfo) -> str:
    return excinfo.value.code


# --- formats -----------------------------------------------------------------------------------


def test_mha_identity_direction_keeps_array_order(tmp_path, canonical):
    img = sitk.GetImageFromArray(canonical)
    img.SetSpacing((0.8, 0.9, 2.0))
    sitk.WriteImage(img, str(tmp_path / "a.mha"))
    vol = read_study(tmp_path / "a.mha")
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, canonical)
    assert vol.spacing == pytest.approx((2.0, 0.9, 0.8))
    assert vol.source_format == "mha"


@pytest.mark.parametrize("orientation", ["LPS", "RAI", "PIL", "ASL", "IRP"])
def test_nifti_any_orientation_reads_back_sagittal(tmp_path, canonical, orientation):
    """The same anatomy stored in another voxel order reads back in canonical order."""
    img = sitk.DICOMOrient(sagittal_image(canonical), orientation)
    sitk.WriteImage(img, str(tmp_path / "a.nii.gz"))
    vol = read_study(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(vol.array, canonical)
    assert vol.spacing == pytest.approx((2.0, 0.9, 0.8))


def test_mask_written_back_on_input_grid(tmp_path, canonical):
    img = sitk.DICOMOrient(sagittal_image(canonical), "RAI")
    sitk.WriteImage(img, str(tmp_path / "a.nii"))
    vol = read_study(tmp_path / "a.nii")
    mask = (vol.array > 1500).astype(np.uint8)
    write_mask(vol, mask, tmp_path / "m.mha")
    written = sitk.ReadImage(str(tmp_path / "m.mha"))
    assert written.GetSize() == img.GetSize()
    assert written.GetDirection() == pytest.approx(img.GetDirection())
    assert written.GetOrigin() == pytest.approx(img.GetOrigin())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), (sitk.GetArrayFromImage(img) > 1500).astype(np.uint8))


def test_mhd_with_raw_from_disk_and_from_zip(tmp_path, canonical):
    sitk.WriteImage(sitk.GetImageFromArray(canonical), str(tmp_path / "a.mhd"))
    np.testing.assert_array_equal(read_study(tmp_path / "a.mhd", beside=True).array, canonical)
    zipped = zip_of({"study/a.mhd": (tmp_path / "a.mhd").read_bytes(), "study/a.raw": (tmp_path / "a.raw").read_bytes()},
                    tmp_path / "a.zip")
    np.testing.assert_array_equal(read_study(zipped).array, canonical)


def test_mhd_bytes_without_raw_is_refused(tmp_path, canonical):
    sitk.WriteImage(sitk.GetImageFromArray(canonical), str(tmp_path / "a.mhd"))
    with pytest.raises(InputError) as ei:
        read_study_bytes((tmp_path / "a.mhd").read_bytes(), "a.mhd")
    assert _code(ei) == E.UNSUPPORTED_FORMAT
    zipped = zip_of({"a.mhd": (tmp_path / "a.mhd").read_bytes()}, tmp_path / "b.zip")
    with pytest.raises(InputError) as ei:
        read_study(zipped)
    assert _code(ei) == E.TRUNCATED_FILE


def test_dicom_series_zip(tmp_path, canonical):
    vol = read_study(write_dicom_zip(canonical, tmp_path / "d.zip"))
    assert vol.source_format == "dicom-zip"
    np.testing.assert_array_equal(vol.array, canonical)
    assert vol.spacing == pytest.approx((2.0, 0.9, 0.8), abs=1e-3)


def test_png_jpeg_single_slices(tmp_path, canonical):
    grey8 = (canonical[3] // 12).astype(np.uint8)
    vol = read_study_bytes(png_bytes(grey8), "x.png")
    assert vol.shape == (1, 40, 36) and vol.input_ndim == 2
    np.testing.assert_array_equal(vol.array[0], grey8)
    assert not vol.spacing_known
    vol16 = read_study_bytes(png_bytes(canonical[3].astype(np.uint16)), "x.png")
    np.testing.assert_array_equal(vol16.array[0], canonical[3])
    rgb = cv2.cvtColor(grey8, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(read_study_bytes(png_bytes(rgb), "x.png").array[0], grey8)
    ok, jpg = cv2.imencode(".jpg", grey8, [cv2.IMWRITE_JPEG_QUALITY, 100])
    vol = read_study_bytes(jpg.tobytes(), "x.jpg")
    assert vol.shape == (1, 40, 36) and np.abs(vol.array[0] - grey8).mean() < 2


def test_png_zip_natural_sort(tmp_path, canonical):
    slices = [(canonical[i] // 12).astype(np.uint8) for i in range(len(canonical))]
    # names sort wrongly as text (slice10 < slice2) and arrive shuffled in the archive
    members = {f"scan/slice{i * 5}.png": png_bytes(s) for i, s in enumerate(slices)}
    order = list(members.items())[::-1]
    vol = read_study(zip_of(dict(order) | {"__MACOSX/._x": b"junk", "scan/.DS_Store": b"x"}, tmp_path / "s.zip"))
    assert vol.source_format == "png-stack"
    np.testing.assert_array_equal(vol.array, np.stack(slices))


def test_zip_member_names_never_reach_the_filesystem(tmp_path, canonical):
    evil = {"../../escape.png": png_bytes((canonical[0] // 12).astype(np.uint8)),
            "/abs/ünïcødé 2.png": png_bytes((canonical[1] // 12).astype(np.uint8))}
    vol = read_study(zip_of(evil, tmp_path / "evil.zip"))
    assert vol.shape[0] == 2
    assert not (tmp_path.parent.parent / "escape.png").exists()


# --- refusals ----------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    (tmp_path / "e.mha").write_bytes(b"")
    with pytest.raises(InputError) as ei:
        read_study(tmp_path / "e.mha")
    assert _code(ei) == E.EMPTY_FILE
    with pytest.raises(InputError) as ei:
        read_study_bytes(b"", "e.png")
    assert _code(ei) == E.EMPTY_FILE
    with pytest.raises(InputError) as ei:
        read_study(zip_of({}, tmp_path / "empty.zip"))
    assert _code(ei) == E.EMPTY_FILE


@pytest.mark.parametrize("suffix", [".mha", ".nii", ".nii.gz"])
def test_truncated_volumes(tmp_path, canonical, suffix):
    sitk.WriteImage(sitk.GetImageFromArray(canonical), str(tmp_path / f"a{suffix}"))
    data = (tmp_path / f"a{suffix}").read_bytes()
    with pytest.raises(InputError) as ei:
        read_study_bytes(data[: len(data) * 2 // 3], f"a{suffix}")
    assert _code(ei) == E.TRUNCATED_FILE


def test_truncated_png_and_zip(tmp_path, canonical):
    data = png_bytes((canonical[0] // 12).astype(np.uint8))
    with pytest.raises(InputError) as ei:
        read_study_bytes(data[: len(data) // 2], "a.png")
    assert _code(ei) == E.TRUNCATED_FILE
    z = zip_of({"a.png": data, "b.png": data}, tmp_path / "z.zip").read_bytes()
    with pytest.raises(InputError) as ei:
        read_study_bytes(z[: len(z) - 30], "z.zip")
    assert _code(ei) == E.TRUNCATED_FILE


def test_text_renamed_png_is_not_an_image():
    with pytest.raises(InputError) as ei:
        read_study_bytes(b"patient notes: lower back pain\n" * 10, "scan.png")
    assert _code(ei) == E.NOT_AN_IMAGE
    with pytest.raises(InputError) as ei:
        read_study_bytes(bytes(range(256)) * 4, "scan.bin")
    assert _code(ei) == E.NOT_AN_IMAGE


@pytest.mark.parametrize("head,name", [(b"II*\x00" + b"\x00" * 200, "a.tif"), (b"GIF89a" + b"\x00" * 200, "a.gif"),
                                       (b"\x00" * 128 + b"DICM" + b"\x00" * 200, "a.dcm"),
                                       (b"\x1f\x8b\x08\x00" + b"\x00" * 200, "a.tar.gz")])
def test_unsupported_formats(head, name):
    with pytest.raises(InputError) as ei:
        read_study_bytes(head, name)
    assert _code(ei) == E.UNSUPPORTED_FORMAT


def test_too_large_in_bytes(tmp_path, canonical):
    sitk.WriteImage(sitk.GetImageFromArray(canonical), str(tmp_path / "a.mha"))
    with pytest.raises(InputError) as ei:
        read_study(tmp_path / "a.mha", Limits(max_bytes=1000))
    assert _code(ei) == E.FILE_TOO_LARGE
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((7, 200, 200), np.int16)), str(tmp_path / "z.mha"))
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(tmp_path / "z.mha", "z.mha")
    with pytest.raises(InputError) as ei:  # compressed small, expands past the limit
        read_study(z, Limits(max_bytes=z.stat().st_size + 10))
    assert _code(ei) == E.FILE_TOO_LARGE


def test_too_many_voxels_refused_from_header_alone(tmp_path):
    """A header claiming 10^12 voxels is refused without allocating them (the file is tiny)."""
    header = (b"ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 100\nElementType = MET_SHORT\n"
              b"ElementSpacing = 1 1 1\nElementDataFile = LOCAL\n")
    with pytest.raises(InputError) as ei:
        read_study_bytes(header + b"\x00" * 64, "bomb.mha")
    assert _code(ei) == E.IMAGE_TOO_LARGE
    png = bytearray(png_bytes(np.zeros((40, 40), np.uint8)))
    png[16:24] = struct.pack(">II", 60000, 60000)  # header lies about the size, with a valid checksum
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    with pytest.raises(InputError) as ei:
        read_study_bytes(bytes(png), "big.png")
    assert _code(ei) == E.IMAGE_TOO_LARGE


def test_inconsistent_slice_sizes(tmp_path, canonical):
    members = {"s1.png": png_bytes(np.zeros((40, 36), np.uint8)), "s2.png": png_bytes(np.zeros((41, 36), np.uint8))}
    with pytest.raises(InputError) as ei:
        read_study(zip_of(members, tmp_path / "mixed.zip"))
    assert _code(ei) == E.INCONSISTENT_SLICES
    sizes = [None] * len(canonical)
    sizes[2] = (20, 20)
    with pytest.raises(InputError) as ei:
        read_study(write_dicom_zip(canonical, tmp_path / "d.zip", sizes=sizes))
    assert _code(ei) in (E.INCONSISTENT_SLICES,)


def test_4d_and_rgb_volumes(tmp_path):
    four_d = sitk.JoinSeries([sitk.Image([40, 40, 5], sitk.sitkInt16)] * 3)
    sitk.WriteImage(four_d, str(tmp_path / "4d.mha"))
    with pytest.raises(InputError) as ei:
        read_study(tmp_path / "4d.mha")
    assert _code(ei) == E.UNSUPPORTED_DIMENSIONS
    rgb = sitk.Image([40, 40, 5], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(InputError) as ei:
        read_study(tmp_path / "rgb.mha")
    assert _code(ei) == E.UNSUPPORTED_PIXEL_TYPE


def test_archive_with_too_many_members(tmp_path):
    members = {f"s{i}.png": png_bytes(np.zeros((40, 40), np.uint8)) for i in range(12)}
    with pytest.raises(InputError) as ei:
        read_study(zip_of(members, tmp_path / "many.zip"), Limits(max_archive_entries=10))
    assert _code(ei) == E.UNSAFE_ARCHIVE


def test_tiny_image_and_zip_without_images(tmp_path):
    with pytest.raises(InputError) as ei:
        read_study_bytes(png_bytes(np.zeros((8, 8), np.uint8)), "tiny.png")
    assert _code(ei) == E.IMAGE_TOO_SMALL
    with pytest.raises(InputError) as ei:
        read_study(zip_of({"readme.txt": b"hello"}, tmp_path / "t.zip"))
    assert _code(ei) == E.NOT_AN_IMAGE


def test_every_error_has_code_and_message(tmp_path):
    err = InputError("bad", E.TRUNCATED_FILE)
    assert err.to_dict() == {"error_code": "TRUNCATED_FILE", "message": "bad"}
    assert err.http_status == 400
    assert E.TRUNCATED_FILE in E.INPUT_ERROR_CODES


def test_gzip_truncated_inside_stream(tmp_path, canonical):
    sitk.WriteImage(sitk.GetImageFromArray(canonical), str(tmp_path / "a.nii"))
    raw = (tmp_path / "a.nii").read_bytes()
    # a complete gzip stream of an incomplete NIfTI: the container is fine, the image is not
    with pytest.raises(InputError) as ei:
        read_study_bytes(gzip.compress(raw[: len(raw) - 500]), "a.nii.gz")
    assert _code(ei) == E.TRUNCATED_FILE
