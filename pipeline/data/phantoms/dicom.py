"""The DICOM encoder of the mammography phantom: a varied mix of encodings per film, RLE, identity, VOI.

A film arrives as display brightness in [0, 1] (dense tissue bright) and leaves as a complete MG For
Presentation dataset whose stored pixels, Modality LUT, VOI and transfer syntax differ from film to film,
so that a DICOM reader is exercised on every variant.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    RLELossless,
    generate_uid,
)
from scipy.special import expit

from pipeline.data.phantoms.common import _STREAM_PATIENT, _rng

FILM_FIELD_OF_VIEW_MM = 240.0  # a 24 cm detector: gives PixelSpacing a realistic value


@dataclass(frozen=True)
class FilmEncoding:
    """How one film's pixels are stored: a different mix per film so a DICOM reader is exercised."""

    bits_stored: int  # 12, 14 or 16 (always uint16 storage)
    monochrome1: bool  # stored values inverted: dense tissue has LOW values
    rescale: Optional[tuple[int, int]]  # (slope, intercept); None = no Modality LUT tags at all
    voi: str  # 'window', 'two_windows' (multi-valued WindowCenter/Width) or 'lut' (VOI LUT Sequence)
    rle: bool  # RLE Lossless transfer syntax instead of Explicit VR Little Endian


def _film_encoding(film_index: int) -> FilmEncoding:
    """Encoding of film ``film_index`` (0-based), from cycles of co-prime-ish periods.

    A fixed cycle rather than random draws guarantees that even a 6-patient test set holds every
    variant: MONOCHROME1 for films 3-5 of every 9, RLE for film 3 of every 10, and so on.
    """
    i = film_index
    return FilmEncoding(
        bits_stored=(12, 14, 16)[i % 3],
        monochrome1=(i // 3) % 3 == 1,
        rescale={0: None, 1: (1, 0), 2: (2, 0), 3: None}[i % 4],
        voi="lut" if i % 7 == 5 else "two_windows" if i % 7 == 2 else "window",
        rle=i % 10 == 3,
    )


def _packbits_rows(plane: np.ndarray) -> bytes:
    """PackBits-encode a uint8 byte plane row by row, vectorised (one DICOM RLE segment).

    pydicom's own RLE encoder loops over runs in Python (about 1 s per 512 px film); this builds the
    same kind of stream with array operations. Runs of 3 or more equal bytes become replicate runs
    (header 257 - length, then the byte), everything between them literal runs (header length - 1,
    then the bytes); both are cut at 128 bytes and at every row end, as DICOM PS3.5 Annex G requires.
    """
    flat = np.ascontiguousarray(plane, dtype=np.uint8).ravel()
    n, cols = flat.size, plane.shape[1]
    idx = np.arange(n)
    row_start = idx % cols == 0
    run_start = row_start.copy()
    run_start[1:] |= flat[1:] != flat[:-1]
    run_lengths = np.diff(np.append(np.flatnonzero(run_start), n))
    replicate = np.repeat(run_lengths >= 3, run_lengths)  # per byte: part of a replicate run
    # A new run of output starts at each row, each replicate run and each literal stretch after one.
    piece_start = row_start | (run_start & replicate)
    piece_start[1:] |= ~replicate[1:] & replicate[:-1]
    piece_first = np.maximum.accumulate(np.where(piece_start, idx, 0))
    chunk_start = (idx - piece_first) % 128 == 0
    starts = np.flatnonzero(chunk_start)
    lengths = np.diff(np.append(starts, n))
    is_repeat = replicate[starts] & (lengths >= 2)  # a 1-byte leftover of a long run goes out as a literal
    header = np.zeros(n, np.uint8)
    header[starts] = np.where(is_repeat, 257 - lengths, lengths - 1)
    emitted = ~replicate | chunk_start  # a replicate chunk writes its byte once
    keep = np.stack([chunk_start, emitted], axis=1).ravel()
    data = np.stack([header, flat], axis=1).ravel()[keep].tobytes()
    return data + b"\x00" * (len(data) % 2)  # segments have even length


def _rle_frame(stored: np.ndarray) -> bytes:
    """One RLE Lossless frame of a uint16 image: 64-byte header, then the high-byte and low-byte segments."""
    segments = [_packbits_rows(stored >> 8), _packbits_rows(stored & 0xFF)]
    offsets = [64, 64 + len(segments[0])]
    header = struct.pack("<3L", len(segments), *offsets).ljust(64, b"\x00")
    return header + b"".join(segments)


def _patient_identity(patient_no: int, width: int, seed: int) -> dict[str, str]:
    """Fake but realistic-looking identifiers: the phantom is input data on which privacy is tested."""
    rng = _rng(seed, _STREAM_PATIENT, patient_no)
    number = f"{patient_no:0{width}d}"
    letters = "".join(chr(ord("A") + int(c)) for c in rng.integers(0, 26, 3))
    birth_year = int(rng.integers(1940, 1985))
    study_year = int(rng.integers(2015, 2024))
    return {
        "PatientName": f"PHANTOM^PATIENT{number}",
        "PatientID": f"PHID-{number}-{letters}",
        "PatientBirthDate": f"{birth_year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        "PatientAge": f"{study_year - birth_year:03d}Y",
        "StudyDate": f"{study_year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        "StudyTime": f"{int(rng.integers(8, 18)):02d}{int(rng.integers(0, 60)):02d}00",
        "AccessionNumber": f"ACC{int(rng.integers(10**6, 10**7))}",
        "StudyID": f"{int(rng.integers(1000, 10000))}",
    }


def _encode_pixels(display: np.ndarray, enc: FilmEncoding) -> tuple[np.ndarray, np.ndarray]:
    """Brightness [0, 1] -> (stored uint16 values, modality values) following ``enc``.

    The display domain keeps 5% headroom below the maximum, as detectors rarely saturate.
    """
    max_value = 2 ** enc.bits_stored - 1
    shown = np.round(display * np.float32(0.95 * max_value)).astype(np.int32)
    modality = max_value - shown if enc.monochrome1 else shown
    if enc.rescale is not None and enc.rescale[0] == 2:
        modality = modality // 2 * 2  # the stored half-values lose one bit; modality values stay even
        stored = modality // 2
    else:
        stored = modality - (enc.rescale[1] if enc.rescale else 0)
    return stored.astype(np.uint16), modality


def _set_voi(ds: Dataset, display: np.ndarray, mask: np.ndarray, enc: FilmEncoding) -> None:
    """Window (one or two) or VOI LUT Sequence in modality units, covering the breast's brightness."""
    max_value = 2 ** enc.bits_stored - 1
    sample = display[::2, ::2][mask[::2, ::2]]  # a quarter of the pixels pins the percentiles well enough
    lo_d, hi_d = (float(v) * 0.95 * max_value for v in np.percentile(sample, [0.5, 99.8]))
    to_modality = (lambda v: max_value - v) if enc.monochrome1 else (lambda v: v)
    lo_m, hi_m = sorted((to_modality(lo_d), to_modality(hi_d)))
    center, width = (lo_m + hi_m) / 2.0, max(hi_m - lo_m, 2.0)
    if enc.voi == "lut":
        first = int(math.floor(lo_m))
        entries = int(min(math.ceil(hi_m) - first + 1, 65535))  # 65536 would have to be coded as 0
        t = np.linspace(0.0, 1.0, entries)
        curve = expit(5.0 * (t - 0.45))  # a soft S-curve: the kind of LUT vendors ship for mammography
        curve = (curve - curve[0]) / (curve[-1] - curve[0])
        item = Dataset()
        item.LUTDescriptor = [entries, first, 16]
        item.LUTExplanation = "PHANTOM SIGMOID"
        item.add_new(0x00283006, "OW", np.round(curve * 65535).astype("<u2").tobytes())  # LUTData
        ds.VOILUTSequence = [item]
    elif enc.voi == "two_windows":
        ds.WindowCenter = [f"{center:.1f}", f"{center:.1f}"]
        ds.WindowWidth = [f"{width:.1f}", f"{0.7 * width:.1f}"]
        ds.WindowCenterWidthExplanation = ["NORMAL", "HARDER"]
    else:
        ds.WindowCenter = f"{center:.1f}"
        ds.WindowWidth = f"{width:.1f}"


def _film_dataset(display: np.ndarray, mask: np.ndarray, enc: FilmEncoding, identity: dict[str, str],
                  laterality: str, film_no: int, patient_no: int, seed: int) -> Dataset:
    """A complete MG For Presentation dataset (identifiers, orientation, pixel module, VOI)."""
    n = display.shape[0]
    root = f"pipeline-phantom/{seed}/patient/{patient_no}"
    study_uid = generate_uid(entropy_srcs=[root, "study"])
    series_uid = generate_uid(entropy_srcs=[root, "series", laterality])
    sop_uid = generate_uid(entropy_srcs=[root, "film", str(film_no)])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.SOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_uid
    for tag in ("StudyDate", "StudyTime", "AccessionNumber", "StudyID", "PatientName", "PatientID",
                "PatientBirthDate", "PatientAge"):
        setattr(ds, tag, identity[tag])
    ds.SeriesDate = ds.ContentDate = ds.StudyDate
    ds.SeriesTime = ds.ContentTime = ds.StudyTime
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "PHANTOM IMAGING"
    ds.ManufacturerModelName = "Procedural Phantom"
    ds.InstitutionName = "Phantom General Hospital"
    ds.InstitutionAddress = "1 Phantom Street, Nowhere"
    ds.ReferringPhysicianName = "REFERRER^DOC"
    ds.StationName = "MAMMO01"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "BREAST"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1 if laterality == "R" else 2
    ds.InstanceNumber = 1
    # Canonical frame has the chest wall at column 0: for a RIGHT film rows run anterior (towards the
    # nipple) and columns run towards the patient's left; a LEFT film is the mirror image.
    ds.PatientOrientation = ["A", "L"] if laterality == "R" else ["P", "R"]
    ds.Laterality = laterality
    ds.ImageLaterality = laterality
    ds.ViewPosition = "CC"
    spacing = f"{FILM_FIELD_OF_VIEW_MM / n:.6g}"
    ds.PixelSpacing = [spacing, spacing]
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.BurnedInAnnotation = "NO"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1 if enc.monochrome1 else -1  # -1: high value = less X-ray

    stored, _ = _encode_pixels(display, enc)
    ds.set_pixel_data(stored, "MONOCHROME1" if enc.monochrome1 else "MONOCHROME2", enc.bits_stored,
                      generate_instance_uid=False)
    if enc.rescale is not None:
        ds.RescaleSlope = str(enc.rescale[0])
        ds.RescaleIntercept = str(enc.rescale[1])
        ds.RescaleType = "US"
    _set_voi(ds, display, mask, enc)
    ds.LossyImageCompression = "00"
    if enc.rle:
        ds.PixelData = encapsulate([_rle_frame(stored)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = RLELossless
    return ds

