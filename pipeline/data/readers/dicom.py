"""DICOM: modality LUT, then VOI LUT or window, MONOCHROME1 inverted, 8-16 bit, compressed syntaxes.

Labels come from a CBIS-DDSM style CSV (``patient_id, pathology, image_path`` and optionally a lesion
``x, y, radius`` or an ``roi_mask_path``) or from the names of the folders holding the files.
Patient ids only group images; ingest replaces them by salted hashes before anything is written.
"""
from __future__ import annotations

import logging
import math
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi

from pipeline.data.imageio import read_image, to_channels
from pipeline.data.readers import (Item, ItemLesion, Listing, canonical_label, class_files, class_folders,
                                   patient_key, read_csv)
from pipeline.errors import DataError

# CBIS-DDSM's own column names are accepted beside the short ones.
ALIASES = {
    "patient_id": ("patient_id", "patient id"),
    "pathology": ("pathology", "label"),
    "image_path": ("image_path", "image file path", "path"),
    "roi_mask_path": ("roi_mask_path", "roi mask file path"),
}
log = logging.getLogger(__name__)


def one_line(exc: BaseException) -> str:
    """An exception's text on one line: pydicom joins the errors of its decoding plugins with newlines."""
    return " / ".join(part.strip() for part in str(exc).splitlines() if part.strip())


def dicom_to_unit(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """Decode a DICOM to float32 in [0, 1] as a reader would view it (dense tissue bright)."""
    try:
        return _decode(ds, path)
    except DataError:
        raise
    except Exception as exc:  # pydicom parses lazily: a damaged element fails only when it is read
        raise DataError(f"{path}: DICOM cannot be decoded ({type(exc).__name__}: {one_line(exc)}); the file is "
                        "truncated or corrupt: re-export it") from None


# Elements without which pixel data has no defined layout; pydicom's own message for each is misleading.
PIXEL_MODULE = {"Rows": "(0028,0010) Rows", "Columns": "(0028,0011) Columns",
                "SamplesPerPixel": "(0028,0002) Samples per Pixel", "BitsAllocated": "(0028,0100) Bits Allocated",
                "BitsStored": "(0028,0101) Bits Stored", "PixelRepresentation": "(0028,0103) Pixel Representation",
                "PhotometricInterpretation": "(0028,0004) Photometric Interpretation"}
GREY_AND_RGB = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422")
# JPEG 2000's reversible and irreversible colour transforms: the codec undoes them, pydicom hands back RGB.
J2K_COLOUR = ("YBR_RCT", "YBR_ICT")
J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")


def _check_pixel_module(ds: pydicom.Dataset, path: Path) -> tuple[str, str]:
    """(photometric interpretation, transfer syntax UID), or a DataError naming every missing element."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    missing = ([] if syntax else ["(0002,0010) Transfer Syntax UID"]) + \
        [name for key, name in PIXEL_MODULE.items() if ds.get(key) in (None, "")]
    if missing:
        raise DataError(f"{path}: DICOM header lacks {', '.join(missing)}, needed to lay out the pixel data; "
                        "re-export the file from its source (or add the elements, e.g. with dcmodify)")
    return str(ds.PhotometricInterpretation).strip(), syntax


def _decode(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM has no pixel data (PixelData tag missing); is it a structured report "
                        "or a DICOMDIR? remove it from the image folder")
    photometric, syntax = _check_pixel_module(ds, path)
    if photometric in J2K_COLOUR and syntax not in J2K_SYNTAXES:
        raise DataError(f"{path}: photometric interpretation {photometric} is only valid in JPEG 2000, but the "
                        f"transfer syntax is {syntax}; re-export the file as RGB")
    if photometric not in GREY_AND_RGB + J2K_COLOUR:
        raise DataError(f"{path}: photometric interpretation {photometric!r} is not supported; convert the "
                        "file to MONOCHROME2 or RGB")
    try:
        with _pydicom_warnings() as warned:  # pydicom logs each failing plugin's traceback: keep them quiet
            arr = ds.pixel_array
    except NotImplementedError as exc:
        raise DataError(f"{path}: cannot decode transfer syntax {syntax} ({one_line(exc)}); install its pydicom "
                        "plugin (pylibjpeg-libjpeg, pylibjpeg-openjpeg, pyjpegls) or decompress the file") from None
    except RuntimeError as exc:  # every installed plugin refused the compressed data; each one's reason
        raise DataError(f"{path}: compressed pixel data ({syntax}) cannot be decoded ({one_line(exc)}); the data "
                        "is damaged or a variant the installed plugins do not read: re-export the file "
                        "uncompressed (e.g. gdcmconv --raw)") from None
    except (ValueError, AttributeError, KeyError, EOFError, OSError) as exc:
        raise DataError(f"{path}: pixel data cannot be decoded ({one_line(exc)}); the file is truncated or "
                        "corrupt: re-export it") from None
    for message in warned:
        log.warning("%s: %s", path, message)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]  # multi-frame: the first frame (tomosynthesis users should pick a slice upstream)
    if arr.ndim == 3:  # colour: pydicom returns RGB for YBR by default
        if photometric in J2K_COLOUR:
            log.info("%s: %s colour (JPEG 2000) decoded to RGB", path, photometric)
        return arr.astype(np.float32) / float(2 ** int(ds.BitsStored) - 1)
    values = apply_modality_lut(arr, ds)
    if values.dtype.kind == "f" and np.array_equal(values, np.round(values)):
        # pydicom returns floats whenever rescale tags exist; a VOI LUT indexes with integers
        values = values.astype(np.int64)
    out = _voi_to_unit(values, ds)
    if photometric == "MONOCHROME1":
        out = 1.0 - out  # low values are bright in MONOCHROME1: invert after the LUTs
    return out.astype(np.float32)


def _first(value) -> float:
    return float(value[0]) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else float(value)


def _voi_to_unit(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """VOI LUT Sequence, else window centre/width (LINEAR or SIGMOID), else the image's own range."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        item = ds.VOILUTSequence[0]
        out = apply_voi(values, ds, index=0)
        out_bits = int(item.LUTDescriptor[2])
        return np.clip(out / float(2 ** out_bits - 1), 0.0, 1.0)
    values = values.astype(np.float64)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
        if str(ds.get("VOILUTFunction", "LINEAR")).upper() == "SIGMOID":
            return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        # DICOM PS3.3 C.11.2.1.2.1 linear window
        return np.clip((values - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5, 0.0, 1.0)
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def read_dicom(path: Path, channels: int) -> np.ndarray:
    return to_channels(dicom_to_unit(_dcmread(path), path), channels)


def _dcmread(path: Path, stop_before_pixels: bool = False) -> pydicom.Dataset:
    if not path.is_file():
        raise DataError(f"{path}: file not found; check image_path in the CSV or the folder")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); re-copy it or remove it")
    try:
        with _pydicom_warnings() as warned:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file (no DICM preamble); remove it or fix its extension") from None
    except Exception as exc:  # pydicom raises many types for a damaged header
        raise DataError(f"{path}: DICOM header cannot be read ({type(exc).__name__}: {one_line(exc)}); the file is "
                        "truncated or corrupt: re-export it") from None
    ended_early = [m for m in warned if "end of file" in m.lower()]
    if ended_early:
        raise DataError(f"{path}: DICOM file ends early ({ended_early[0]}); the file is truncated or corrupt: "
                        "re-export it")
    for message in warned:
        log.warning("%s: %s", path, message)
    return ds


@contextmanager
def _pydicom_warnings() -> Iterator[list[str]]:
    """Collect what pydicom warns and logs while one file is read (it does both), so that the caller can
    name the file in one line, or stop on a file that ends early."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("pydicom"), Collect(logging.WARNING)
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(w.message) for w in caught)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    unique = list(dict.fromkeys(" ".join(m.split(" in file ")[0].split()) for m in messages))  # one line each
    messages[:] = unique


def _column(header: list[str], name: str, csv_path: Path, required: bool = True) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    for alias in ALIASES.get(name, (name,)):
        if alias in lower:
            return lower[alias]
    if required:
        raise DataError(f"{csv_path}: column {name!r} missing (have {header}); add it or rename the column")
    return None


def _mask_lesion(mask_path: Path, label: str, where: str) -> ItemLesion:
    """Centre and equivalent radius of an ROI mask (DICOM or image), in the mask's pixel grid."""
    mask = read_dicom(mask_path, 1) if mask_path.suffix.lower() == ".dcm" else read_image(mask_path, 1)
    rows, cols = np.nonzero(mask > 0.5)
    if rows.size == 0:
        raise DataError(f"{mask_path}: ROI mask is empty; fix the mask or remove the row ({where})")
    radius = float(np.sqrt(rows.size / np.pi))
    return ItemLesion(x=float(cols.mean()), y=float(rows.mean()), radius=radius, label=label, where=where)


def _list_from_csv(source, csv_path: Path) -> list[Item]:
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: labels CSV not found; fix source.labels_csv in params.yaml")
    base = csv_path.parent
    header, rows = read_csv(csv_path)
    c_pid, c_lab, c_img = (_column(header, n, csv_path) for n in ("patient_id", "pathology", "image_path"))
    c_roi = _column(header, "roi_mask_path", csv_path, required=False)
    has_xyr = all(_column(header, n, csv_path, required=False) for n in ("x", "y", "radius"))
    by_image: dict[str, Item] = {}
    for lineno, row in rows:
        where = f"{csv_path} line {lineno}"
        rel = (row.get(c_img) or "").strip()
        if not rel:
            raise DataError(f"{where}: empty image path; fill it or drop the line")
        path = (base / rel) if not Path(rel).is_absolute() else Path(rel)
        label = canonical_label(row.get(c_lab) or "")
        if not label:
            raise DataError(f"{where}: empty pathology; fill it or drop the line")
        patient = patient_key((row.get(c_pid) or "").strip() or path.stem, source.patient_pattern, where)
        item = by_image.get(str(path))
        if item is None:
            item = Item(path=path, label=label, patient=patient, image_id=path.stem,
                        loader=lambda ch, p=path: read_dicom(p, ch))
            by_image[str(path)] = item
        elif item.patient != patient:
            raise DataError(f"{where}: {rel} listed for two patients; fix the CSV")
        if label == "malignant":
            item.label = "malignant"  # several abnormalities per film: the worst wins
        elif item.label == "normal":
            item.label = label
        if has_xyr and (row.get("x") or "").strip():
            try:
                x, y, r = float(row["x"]), float(row["y"]), float(row["radius"])
            except (TypeError, ValueError):
                raise DataError(f"{where}: x, y, radius are not numbers; fix the line") from None
            if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(r) and r > 0):
                raise DataError(f"{where}: x, y, radius {x:g}, {y:g}, {r:g} must be finite with a positive "
                                "radius; fix the line")
            item.lesions.append(ItemLesion(x=x, y=y, radius=r, label=label, where=where))
        elif c_roi and (row.get(c_roi) or "").strip():
            item.lesions.append(_mask_lesion(base / row[c_roi].strip(), label, where))
    if not by_image:
        raise DataError(f"{csv_path}: no rows; add images or point to another CSV")
    return list(by_image.values())


def _list_from_folders(source, root: Path, listing: Listing) -> list[Item]:
    items = []
    class_dirs = class_folders(root, listing)
    if not class_dirs:
        raise DataError(f"{root}: no class folders and no labels_csv; put DICOMs in one folder per class or "
                        "give source.labels_csv")
    for d in class_dirs:
        for path in class_files(d, listing, "DICOM files"):
            try:
                ds = _dcmread(path, stop_before_pixels=True)
            except DataError as exc:
                listing.bad_file(exc)
                continue
            raw = str(ds.get("PatientID", "") or path.stem)
            items.append(Item(path=path, label=canonical_label(d.name),
                              patient=patient_key(raw, source.patient_pattern, str(path)),
                              image_id=path.stem, loader=lambda ch, p=path: read_dicom(p, ch)))
    return items


def list_dicom(source, listing: Listing | None = None) -> list[Item]:
    listing = listing or Listing()
    if source.labels_csv:
        return _list_from_csv(source, Path(source.labels_csv))
    root = Path(source.root)
    if not root.is_dir():
        raise DataError(f"{root}: DICOM folder not found; set datasets.<name>.source.root")
    return _list_from_folders(source, root, listing)
