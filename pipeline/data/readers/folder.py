"""Folder per class (Herlev, CRIC crops, SIPaKMeD, ...): ``root/<class>/<image>``; any size, RGB or grey.

Files directly under ``root`` (PROVENANCE.md, checksums) are ignored; inside a class folder every file
must be an image, except desktop litter (Thumbs.db, desktop.ini, .DS_Store, ._*), which is ignored and counted. Without ``patient_pattern`` every image is its own group (CRIC and Herlev carry no
patient id: reports must say that no patient-level split was possible).
"""
from __future__ import annotations

from pathlib import Path

from pipeline.data.imageio import read_image
from pipeline.data.readers import Item, Listing, canonical_label, class_files, class_folders, patient_key
from pipeline.data.readers.dicom import read_dicom
from pipeline.data.records import IMAGE_SUFFIXES
from pipeline.errors import DataError


def loader_for(path: Path):
    if path.suffix.lower() == ".dcm":
        return lambda ch, p=path: read_dicom(p, ch)
    return lambda ch, p=path: read_image(p, ch)


def list_folder(source, listing: Listing | None = None) -> list[Item]:
    listing = listing or Listing()
    root = Path(source.root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found; set datasets.<name>.source.root to a folder with one "
                        "sub-folder per class")
    class_dirs = class_folders(root, listing)
    if not class_dirs:
        raise DataError(f"{root}: no class sub-folders; arrange the images as root/<class>/<image>")
    items: list[Item] = []
    for d in class_dirs:
        for path in class_files(d, listing, "images"):
            if path.suffix.lower() not in IMAGE_SUFFIXES | {".dcm"}:
                listing.bad_file(DataError(f"{path}: not an image file (suffix {path.suffix or 'none'!r}) in a "
                                           "class folder; move it out of the data folder"))
                continue
            patient = patient_key(path.stem, source.patient_pattern, str(path)) if source.patient_pattern \
                else f"{d.name}/{path.stem}"
            items.append(Item(path=path, label=canonical_label(d.name), patient=patient,
                              image_id=path.stem, loader=loader_for(path)))
    return items
