"""Shared test helpers: where the real data lives, and tiny DICOM / image writers."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PIPELINE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests run on 2 cores; one torch thread per test keeps them fast and the results deterministic."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shared(name: str) -> Path:
    """Path of a real data set in ../shared/data; skips the test with a reason when it is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"real data {path} not present (only developers and CI have ../shared/data)")
    return path


def write_dicom(path: Path, arr: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 16,
                window: tuple[float, float] | None = None, voi_lut: np.ndarray | None = None,
                rescale: tuple[float, float] | None = None, rle: bool = False, patient_id: str = "PID-1",
                extra: dict | None = None) -> Path:
    """Write a small MG DICOM file with the given pixel module options."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientID = patient_id
    ds.PatientName = "DOE^JANE"
    ds.set_pixel_data(arr.astype(np.uint16 if bits_stored > 8 else np.uint8), photometric, bits_stored)
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if voi_lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(voi_lut), 0, 16]
        item.add_new(0x00283006, "US", [int(v) for v in voi_lut])  # LUTData
        ds.VOILUTSequence = Sequence([item])
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    if rle:
        ds.compress(RLELossless)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_png(path: Path, arr: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path
