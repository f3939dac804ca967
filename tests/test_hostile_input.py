"""Crafted files, made here, that tried to read files of the server, to pass broken data off as a
study, or to cost minutes and gigabytes: each is refused with its code, from the header."""

from __future__ import annotations

import gzip
import io
import stat
import struct
import zipfile
import zlib

import numpy as np
import pytest
import SimpleITK as sitk

from discscope import errors as E
from discscope.errors import InputError
from discscope.io import Limits, read_study, read_study_bytes, sniff

from imaging import png_bytes, set_transfer_syntax, write_dicom_zip, zip_of

SECRET = b"server-side secret: this must never become pixels\n" * 64


def _code(call, *args, **kwargs) -> str:
    with pytest.raises(InputError) as ei:
        call(*args, **kwargs)
    assert ei.value.message
    return ei.value.code


def mha(fields: dict[str, str], data: bytes = b"") -> bytes:
    header = {"ObjectType": "Image", "NDims": "3", "BinaryData": "True", "BinaryDataByteOrderMSB": "False",
              "CompressedData": "False", "ElementSpacing": "1 1 1", "DimSize": "40 40 8", "ElementType": "MET_SHORT"}
    header |= fields
    text = "".join(f"{k} = {v}\n" for k, v in header.items() if v is not None)
    if "ElementDataFile" not in fields:
        text += "ElementDataFile = LOCAL\n"
    return text.encode() + data


def volume(shape=(8, 40, 40), dtype=np.int16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(dtype)


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "services"
    path.write_bytes(SECRET)
    return path


# --- 1. no file outside the upload is ever read ------------------------------------------------


@pytest.mark.parametrize("target", ["{secret}", "../../../../../../..{secret}", "sub/services", "..\\services",
                                    "C:services"])
def test_mhd_in_zip_may_name_only_a_member_beside_it(tmp_path, secret_file, target):
    target = target.format(secret=secret_file)
    header = mha({"DimSize": "32 32 2", "ElementType": "MET_UCHAR"}, b"")[: -len("ElementDataFile = LOCAL\n")]
    header += f"ElementDataFile = {target}\n".encode()
    # a decoy member with the target's base name: the old reader copied members flat and found it
    archive = zip_of({"study/a.mhd": header, "study/services": bytes(2048), "services": bytes(2048)},
                     tmp_path / "a.zip")
    assert _code(read_study, archive) == E.EXTERNAL_REFERENCE


def test_mha_header_longer_than_the_sniffed_kilobyte(secret_file):
    """ElementDataFile after the first KiB (both sniffers read only 1 KiB) is still found and refused."""
    padding = {f"Comment{i}": "x" * 60 for i in range(30)}
    data = mha(padding | {"DimSize": "32 32 1", "ElementType": "MET_UCHAR", "ElementDataFile": str(secret_file)})
    assert data.index(b"ElementDataFile") > 1024
    assert sniff(data[:1024], "scan.mha") == "mha"
    assert _code(read_study_bytes, data, "scan.mha") == E.EXTERNAL_REFERENCE


def test_mhd_beside_a_file_on_disk_is_read_only_when_asked(tmp_path, secret_file):
    header = mha({"DimSize": "32 32 1", "ElementType": "MET_UCHAR", "ElementDataFile": "services"})
    (tmp_path / "a.mhd").write_bytes(header)
    assert _code(read_study, tmp_path / "a.mhd") == E.UNSUPPORTED_FORMAT
    assert _code(read_study_bytes, header, "a.mhd") == E.UNSUPPORTED_FORMAT
    # an operator's own files (discscope predict): beside=True, and then only a same-size data file fits
    assert _code(read_study, tmp_path / "a.mhd", beside=True) == E.CORRUPT_FILE


@pytest.mark.parametrize("value,code", [("LIST", E.UNSUPPORTED_FORMAT), ("slice%03d.raw 1 8 1", E.UNSUPPORTED_FORMAT),
                                        ("..", E.EXTERNAL_REFERENCE)])
def test_mhd_data_file_lists_and_patterns(tmp_path, value, code):
    header = mha({"ElementDataFile": value})
    assert _code(read_study, zip_of({"a.mhd": header, "a.raw": bytes(40 * 40 * 8 * 2)}, tmp_path / "a.zip")) == code


def test_duplicate_and_symlink_members_are_refused(tmp_path):
    data = png_bytes(np.zeros((40, 40), np.uint8))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.png", data)
        link = zipfile.ZipInfo("b.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    assert _code(read_study_bytes, buf.getvalue(), "s.zip") == E.UNSAFE_ARCHIVE
    buf = io.BytesIO()
    with pytest.warns(UserWarning), zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.png", data)
        zf.writestr("a.png", data)
    assert _code(read_study_bytes, buf.getvalue(), "s.zip") == E.UNSAFE_ARCHIVE


def _nifti(array: np.ndarray, tmp_path, **header_bytes) -> bytes:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "v.nii"))
    data = bytearray((tmp_path / "v.nii").read_bytes())
    for offset, value in header_bytes.values():
        data[offset : offset + len(value)] = value
    return bytes(data)


def test_nifti_aux_file_and_extensions_are_never_followed(tmp_path, secret_file):
    array = volume()
    path = str(secret_file).encode()[:23]
    data = _nifti(array, tmp_path, aux=(228, path + b"\0"))  # aux_file[24]: a name, never opened
    np.testing.assert_array_equal(read_study_bytes(data, "v.nii").array, array)
    # an extension chain that names a file: skipped, but it must fit before the pixels
    header, pixels = data[:348], data[352:]
    ext = struct.pack("<ii", 32, 4) + str(secret_file).encode()[:24].ljust(24, b"\0")
    with_ext = bytearray(header + b"\x01\0\0\0" + ext + pixels)
    with_ext[108:112] = struct.pack("<f", 352 + 32)
    np.testing.assert_array_equal(read_study_bytes(bytes(with_ext), "v.nii").array, array)
    with_ext[352:356] = struct.pack("<i", 4096)  # an extension longer than the gap
    assert _code(read_study_bytes, bytes(with_ext), "v.nii") == E.CORRUPT_FILE


def test_two_file_nifti_and_foreign_formats_are_not_handed_to_itk(tmp_path, secret_file):
    pair = bytearray(_nifti(volume(), tmp_path))
    pair[344:348] = b"ni1\0"  # "my pixels are in a .img file beside me"
    (tmp_path / "v.nii").write_bytes(bytes(pair))
    (tmp_path / "v.img").write_bytes(bytes(pair[352:]))
    assert _code(read_study, tmp_path / "v.nii", beside=True) == E.UNSUPPORTED_FORMAT
    # ITK's NRRD reader would follow `data file:`; an upload is never offered to it
    nrrd = f"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 32 32 1\nencoding: raw\ndata file: {secret_file}\n\n".encode()
    assert _code(read_study_bytes, nrrd, "x.nrrd") == E.NOT_AN_IMAGE
    assert _code(read_study, zip_of({"x.nii": nrrd}, tmp_path / "n.zip")) == E.NOT_AN_IMAGE


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.100"])
def test_dicom_transfer_syntaxes_outside_the_list(tmp_path, uid):
    """Deflated datasets (a decompression with no size in any header), JPIP (pixels behind a URL), video."""
    series = zipfile.ZipFile(write_dicom_zip(volume((3, 40, 40)), tmp_path / "d.zip"))
    members = {n: series.read(n) for n in series.namelist()}
    first = sorted(members)[0]
    members[first] = set_transfer_syntax(members[first], uid)
    assert _code(read_study, zip_of(members, tmp_path / "e.zip")) == E.UNSUPPORTED_FORMAT


# --- 2. broken data gets a code, not a made-up result -------------------------------------------


def test_a_few_non_finite_voxels_are_kept_many_are_refused():
    array = volume(dtype=np.float32)
    array.ravel()[np.random.default_rng(1).choice(array.size, 20, replace=False)] = np.nan
    vol = read_study_bytes(mha({"ElementType": "MET_FLOAT"}, array.tobytes()), "nan.mha")
    assert np.isnan(vol.array).sum() == 20  # normalisation skips them (tests/test_predict.py)
    assert _code(read_study_bytes, mha({"ElementType": "MET_FLOAT"}, np.full_like(array, np.nan).tobytes()),
                 "all_nan.mha") == E.NON_FINITE_VOXELS
    array[:, :4] = np.inf
    assert _code(read_study_bytes, mha({"ElementType": "MET_FLOAT"}, array.tobytes()), "inf.mha") == E.NON_FINITE_VOXELS


def test_compressed_mha_checked_to_the_last_byte():
    array = volume()
    stream = zlib.compress(array.tobytes())
    fields = {"CompressedData": "True", "CompressedDataSize": str(len(stream))}
    np.testing.assert_array_equal(read_study_bytes(mha(fields, stream), "ok.mha").array, array)
    # DimSize twice the data
    assert _code(read_study_bytes, mha(fields | {"DimSize": "40 40 16"}, stream), "short.mha") == E.TRUNCATED_FILE
    # a corrupt tail: the stream's checksum fails
    bad = stream[:-4] + bytes(b ^ 0xFF for b in stream[-4:])
    assert _code(read_study_bytes, mha(fields, bad), "tail.mha") == E.CORRUPT_FILE
    # cut short: the stream does not end
    assert _code(read_study_bytes, mha({"CompressedData": "True"}, stream[: len(stream) // 2]),
                 "cut.mha") == E.TRUNCATED_FILE
    # more data than the header's size
    assert _code(read_study_bytes, mha({"CompressedData": "True", "DimSize": "40 40 4"}, stream),
                 "long.mha") == E.CORRUPT_FILE


def test_pixel_type_that_does_not_match_the_data():
    data = volume().tobytes()  # int16
    assert _code(read_study_bytes, mha({"ElementType": "MET_UCHAR"}, data), "uchar.mha") == E.CORRUPT_FILE
    assert _code(read_study_bytes, mha({"ElementType": "MET_FLOAT"}, data), "float.mha") == E.TRUNCATED_FILE
    assert _code(read_study_bytes, mha({"ElementType": "MET_LONG"}, data), "long.mha") == E.UNSUPPORTED_PIXEL_TYPE


def test_truncated_mha_header_says_so():
    data = mha({"DimSize": "40 40 8"}, volume().tobytes())
    cut = data[: data.index(b"ElementDataFile") + 5]
    with pytest.raises(InputError) as ei:
        read_study_bytes(cut, "cut.mha")
    assert ei.value.code == E.TRUNCATED_FILE and "No such file" not in ei.value.message


def test_nifti_data_length_must_match_the_header(tmp_path):
    data = _nifti(volume(), tmp_path)
    assert _code(read_study_bytes, data + bytes(1024), "long.nii") == E.CORRUPT_FILE
    assert _code(read_study_bytes, gzip.compress(data + bytes(1024)), "long.nii.gz") == E.CORRUPT_FILE
    corrupt = bytearray(gzip.compress(data))
    corrupt[-8:-4] = bytes(4)  # the gzip CRC
    assert _code(read_study_bytes, bytes(corrupt), "crc.nii.gz") == E.CORRUPT_FILE


def test_dicom_series_mixing_planes_or_missing_a_slice(tmp_path):
    array = volume((5, 40, 40))
    axial = "1.000000\\0.000000\\0.000000\\0.000000\\1.000000\\0.000000"
    mixed = write_dicom_zip(array, tmp_path / "mixed.zip", tags=lambda i: {"0020|0037": axial} if i == 2 else {})
    assert _code(read_study, mixed) == E.INCONSISTENT_SLICES
    gap = write_dicom_zip(array, tmp_path / "gap.zip", skip=(2,))
    assert _code(read_study, gap) == E.INCONSISTENT_SLICES
    twice = write_dicom_zip(array, tmp_path / "twice.zip",
                            tags=lambda i: {"0020|0032": "10.000000\\-20.000000\\30.000000"} if i in (0, 1) else {})
    assert _code(read_study, twice) == E.INCONSISTENT_SLICES


def test_jpeg2000_series_with_a_broken_slice(tmp_path):
    array = volume((3, 40, 40))
    good = write_dicom_zip(array, tmp_path / "j2k.zip", compressor="JPEG2000")
    np.testing.assert_array_equal(read_study(good).array, array)
    series = zipfile.ZipFile(good)
    members = {n: series.read(n) for n in series.namelist()}
    name = sorted(members)[1]
    data = members[name]
    start = data.index(b"\xff\x4f\xff\x51")  # the codestream: cut it, keeping the DICOM item framing valid
    item = start - 8
    length = struct.unpack("<I", data[item + 4 : item + 8])[0]
    keep = (length // 2) & ~1
    members[name] = data[: item + 4] + struct.pack("<I", keep) + data[start : start + keep] + data[start + length :]
    assert _code(read_study, zip_of(members, tmp_path / "bad.zip")) == E.CORRUPT_FILE


# --- 3. tiny files that would cost minutes and gigabytes ----------------------------------------


@pytest.mark.parametrize("spacing,code", [
    ("40 40 4", E.INVALID_SPACING), ("200 200 4", E.INVALID_SPACING), ("0.8 0.8 400", E.INVALID_SPACING),
    ("-1 1 1", E.INVALID_SPACING), ("0 1 1", E.INVALID_SPACING), ("nan 1 1", E.INVALID_SPACING),
    ("4 4 4", E.IMAGE_TOO_LARGE),  # plausible pixels, but 256 slices of 1024 x 1024 mm
])
def test_spacing_checked_from_the_header(spacing, code):
    data = mha({"DimSize": "256 256 256", "ElementType": "MET_UCHAR", "ElementSpacing": spacing,
                "CompressedData": "True"}, zlib.compress(bytes(256**3), 1))
    assert _code(read_study_bytes, data, "big.mha") == code


def test_geometry_that_is_not_a_rotation():
    fields = {"TransformMatrix": "1 0 0 0 1 0 0 0 nan", "Offset": "1 2 3"}
    assert _code(read_study_bytes, mha(fields, volume().tobytes()), "nan.mha") == E.INVALID_GEOMETRY
    fields = {"TransformMatrix": "2 0 0 0 1 0 0 0 1", "Offset": "1 2 3"}
    assert _code(read_study_bytes, mha(fields, volume().tobytes()), "skew.mha") == E.INVALID_GEOMETRY


def test_gzip_nifti_is_inflated_only_as_far_as_its_header(tmp_path):
    header = bytearray(_nifti(np.zeros((2, 40, 40), np.int16), tmp_path)[:352])
    header[40:56] = struct.pack("<8h", 3, 512, 512, 512, 1, 1, 1, 1)
    header[70:74] = struct.pack("<2h", 64, 64)  # float64: 1 GiB of pixels from a 1 MB file
    stream = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = stream.compress(bytes(header)) + stream.compress(bytes(8 << 20)) + stream.flush()
    assert len(bomb) < 100_000
    assert _code(read_study_bytes, bomb, "bomb.nii.gz") == E.FILE_TOO_LARGE


def test_png_and_jpeg_sizes_checked_before_decoding():
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 11500, 11500, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(bytes(11501 * 16))) + chunk(b"IEND", b""))
    assert _code(read_study_bytes, png, "huge.png") == E.IMAGE_TOO_LARGE
    jpeg = (b"\xff\xd8" + b"\xff\xc2" + struct.pack(">HBHHB", 11, 8, 64, 64, 1) + b"\x01\x11\x00"
            + (b"\xff\xda" + struct.pack(">H", 8) + b"\x01\x01\x00\x00\x3f\x00" + b"\x00" * 16) * 500 + b"\xff\xd9")
    assert _code(read_study_bytes, jpeg, "scans.jpg") == E.UNSUPPORTED_FORMAT
    assert _code(read_study_bytes, jpeg[:-2], "cut.jpg") in (E.UNSUPPORTED_FORMAT, E.TRUNCATED_FILE)


def test_limits_are_enforced_as_configured():
    small = Limits(max_model_voxels=8 * 1024)
    data = mha({"DimSize": "40 40 8"}, volume().tobytes())
    assert _code(read_study_bytes, data, "a.mha", small) == E.IMAGE_TOO_LARGE
    assert read_study_bytes(data, "a.mha").shape == (8, 40, 40)


# --- 4. names ---------------------------------------------------------------------------------


def test_gzip_nifti_is_known_by_its_content_whatever_its_name(tmp_path):
    data = gzip.compress(_nifti(volume(), tmp_path))
    for name in ("patient.2024-01-15.series3.nii.gz", "upload", "scan.gz", ""):
        assert sniff(data[:1024], name) == "nifti-gz"
        assert read_study_bytes(data, name).shape == (8, 40, 40)
    assert _code(sniff, gzip.compress(b"a tarball, say" * 100)[:1024], "x.nii.gz") == E.UNSUPPORTED_FORMAT
