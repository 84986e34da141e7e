from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipeline.data.readers.dicom import dicom_to_unit, read_dicom
from pipeline.errors import DataError
from tests.conftest import shared, write_dicom


def ramp(bits: int = 12) -> np.ndarray:
    top = 2 ** bits - 1
    return np.linspace(0, top, 64 * 64).reshape(64, 64).round().astype(np.uint16)


def test_monochrome1_is_inverted_so_dense_is_bright(tmp_path: Path) -> None:
    arr = ramp()
    m2 = read_dicom(write_dicom(tmp_path / "m2.dcm", arr, bits_stored=12), 1)
    m1 = read_dicom(write_dicom(tmp_path / "m1.dcm", 4095 - arr, "MONOCHROME1", bits_stored=12), 1)
    np.testing.assert_allclose(m1, m2, atol=1e-6)
    assert m2[0, 0] == 0.0 and m2[-1, -1] == 1.0


def test_window_centre_width_linear(tmp_path: Path) -> None:
    arr = ramp()
    out = read_dicom(write_dicom(tmp_path / "w.dcm", arr, bits_stored=12, window=(2048, 1024)), 1)
    assert out.min() == 0.0 and out.max() == 1.0
    # values below c - w/2 are black, above c + w/2 white, the centre is mid-grey
    assert np.all(out[arr < 1536] == 0.0) and np.all(out[arr > 2560] == 1.0)
    mid = np.abs(arr.astype(float) - 2048).argmin()
    assert abs(out.flat[mid] - 0.5) < 0.01


def test_voi_lut_sequence_wins_over_window(tmp_path: Path) -> None:
    arr = ramp(8)
    lut = (np.arange(256)[::-1] * 256).astype(np.uint16)  # an inverting LUT, 16-bit output
    out = read_dicom(write_dicom(tmp_path / "v.dcm", arr, bits_stored=8, voi_lut=lut, window=(128, 256)), 1)
    assert out[0, 0] > 0.99 and out[-1, -1] < 0.01


def test_modality_lut_then_window(tmp_path: Path) -> None:
    arr = ramp(10)
    # slope 4: stored 0..1023 -> 0..4092; a window on the rescaled values must see the rescaled range
    out = read_dicom(write_dicom(tmp_path / "r.dcm", arr, bits_stored=10, rescale=(4.0, 0.0),
                                 window=(2046, 4092)), 1)
    assert out.min() < 0.01 and out.max() > 0.99


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_bit_depths_span_unit_range(tmp_path: Path, bits: int) -> None:
    arr = ramp(bits) if bits > 8 else ramp(8).astype(np.uint8)
    out = read_dicom(write_dicom(tmp_path / f"b{bits}.dcm", arr, bits_stored=bits), 1)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0


def test_rle_compressed_round_trip(tmp_path: Path) -> None:
    arr = ramp()
    plain = read_dicom(write_dicom(tmp_path / "p.dcm", arr, bits_stored=12), 1)
    rle = read_dicom(write_dicom(tmp_path / "c.dcm", arr, bits_stored=12, rle=True), 1)
    np.testing.assert_array_equal(plain, rle)


def test_no_pixel_data_is_a_clear_error(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp())
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(DataError, match="no pixel data"):
        read_dicom(path, 1)


def test_unsupported_photometric(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp())
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.save_as(path)
    with pytest.raises(DataError, match="photometric interpretation 'PALETTE COLOR'"):
        read_dicom(path, 1)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_files_name_the_file(tmp_path: Path, damage: str) -> None:
    path = write_dicom(tmp_path / "bad.dcm", ramp())
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a dicom" * 50, "empty": b""}[damage])
    with pytest.raises(DataError, match="bad.dcm"):
        read_dicom(path, 1)


def test_unknown_transfer_syntax(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp())
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7.8.9"  # compressed-looking, unknown
    ds.PixelData = b"\x00" * 100
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=False)
    with pytest.raises(DataError, match="x.dcm"):
        read_dicom(path, 1)


def test_pydicom_jpeg_test_files_decode() -> None:
    """The codec plugins are installed: pydicom's own JPEG, JPEG 2000, JPEG-LS and RLE test files decode."""
    from pydicom.data import get_testdata_file

    names = ("JPEG2000.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_jpeg_ls_lossless.dcm",
             "JPEGLSNearLossless_16.dcm", "MR_small_RLE.dcm", "SC_jpeg_no_color_transform.dcm")
    for name in names:
        path = get_testdata_file(name)
        assert path is not None, f"pydicom test file {name} missing"
        out = dicom_to_unit(pydicom.dcmread(path), Path(path))
        assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.realdata
def test_real_cbis_ddsm_dicoms() -> None:
    root = shared("cbis-ddsm-dicom")
    for path in sorted(root.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID.name == "RLE Lossless"
        img = read_dicom(path, 1)
        assert img.shape == (ds.Rows, ds.Columns) and img.dtype == np.float32
        assert 0.0 <= img.min() and img.max() <= 1.0
        # MONOCHROME2: the breast (dense, bright) is brighter than the film border
        centre = img[img.shape[0] // 4: 3 * img.shape[0] // 4].mean()
        assert centre > 0.15
