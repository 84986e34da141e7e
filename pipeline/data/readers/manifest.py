"""Manifest CSV ``path,label[,patient_id]`` for anything else; paths relative to the manifest's folder."""
from __future__ import annotations

from pathlib import Path

from pipeline.data.readers import Item, Listing, canonical_label, patient_key, read_csv
from pipeline.data.readers.folder import loader_for
from pipeline.errors import DataError


def list_manifest(source, listing: Listing | None = None) -> list[Item]:
    listing = listing or Listing()
    if not source.labels_csv:
        raise DataError("source.labels_csv: empty; the manifest reader needs the CSV path in labels_csv")
    csv_path = Path(source.labels_csv)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: manifest not found; fix source.labels_csv in params.yaml")
    base = Path(source.root) if source.root else csv_path.parent
    items: list[Item] = []
    seen: dict[str, int] = {}
    fieldnames, rows = read_csv(csv_path)
    header = [h.strip().lower() for h in fieldnames]
    if "path" not in header or "label" not in header:
        raise DataError(f"{csv_path}: header must hold 'path' and 'label' (optional 'patient_id'), found "
                        f"{fieldnames}; fix the header line")
    for lineno, row in rows:
        if None in row or None in row.values():  # more or fewer cells than header columns
            raise DataError(f"{csv_path} line {lineno}: wrong number of columns; fix the line")
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items()}
        if len(row) != len(header):
            raise DataError(f"{csv_path} line {lineno}: wrong number of columns; fix the line")
        where = f"{csv_path} line {lineno}"
        if not row["path"] or not row["label"]:
            raise DataError(f"{where}: empty path or label; fill it or drop the line")
        path = Path(row["path"]) if Path(row["path"]).is_absolute() else base / row["path"]
        if str(path) in seen:
            raise DataError(f"{where}: {row['path']} already listed on line {seen[str(path)]}; drop the duplicate")
        seen[str(path)] = lineno
        if not path.is_file():
            listing.bad_file(DataError(f"{where}: {path} does not exist; fix the path or drop the line"))
            continue
        raw_patient = row.get("patient_id") or path.stem
        items.append(Item(path=path, label=canonical_label(row["label"]),
                          patient=patient_key(raw_patient, source.patient_pattern, where),
                          image_id=path.stem, loader=loader_for(path)))
    if not items:
        raise DataError(f"{csv_path}: no rows; add images to the manifest")
    return items
