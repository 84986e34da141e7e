"""mini-MIAS: films as PGM (the distributed format) or PNG, plus the database's own ``Info.txt``.

Info.txt rows: ``ref tissue class [severity [x y radius]]``. A film may have several rows (one per
abnormality); its label is the worst severity (malignant over benign), NORM films are normal.
Coordinates have their origin at the bottom-left corner of the 1024 x 1024 film. Films come in
left/right pairs of one patient: mdb001+mdb002, mdb003+mdb004, ...
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from pipeline.data.imageio import read_image
from pipeline.data.readers import Item, ItemLesion, Listing
from pipeline.errors import DataError

TISSUES = {"F", "G", "D"}
CLASSES = {"CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM"}
SEVERITY = {"B": "benign", "M": "malignant"}
ROW = re.compile(r"^mdb\d{3}\b")
REF = re.compile(r"mdb\d{3}")


def pair_patient(ref: str) -> str:
    """mdb001 and mdb002 -> the same patient (films are numbered in left/right pairs)."""
    number = int(ref[3:])
    return f"mias-pair-{(number + 1) // 2:03d}"


def parse_info(path: Path) -> dict[str, dict]:
    """Parse Info.txt into ``{ref: {"label", "lesions", "unlocated"}}``; bad rows raise DataError with the line."""
    if not path.is_file():
        raise DataError(f"{path}: Info.txt not found; point datasets.<name>.source.root at the mini-MIAS folder")
    films: dict[str, dict] = {}
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not ROW.match(line.strip()):
            continue
        where = f"{path} line {lineno}"
        tokens = line.split()
        tokens = [t for t in tokens if t != "*NOTE" and t != "3*"]  # '*NOTE 3*': no centre given
        ref, tissue, abn = (tokens + ["", "", ""])[:3]
        if not REF.fullmatch(ref):
            raise DataError(f"{where}: reference {ref!r} is not mdb followed by 3 digits; fix the file or drop the "
                            "line")
        if tissue not in TISSUES:
            raise DataError(f"{where}: tissue {tissue!r} is not F, G or D; fix the file or drop the line")
        if abn not in CLASSES:
            raise DataError(f"{where}: abnormality class {abn!r} is not one of {sorted(CLASSES)}; "
                            "fix the file or drop the line")
        film = films.setdefault(ref, {"label": "normal", "lesions": [], "unlocated": False, "where": where})
        if abn == "NORM":
            if len(tokens) != 3:
                raise DataError(f"{where}: a NORM row must have 3 columns, found {len(tokens)}; fix the line")
            if film["lesions"] or film["label"] != "normal":
                raise DataError(f"{where}: {ref} is listed as NORM and as abnormal; keep one")
            continue
        if len(tokens) < 4 or tokens[3] not in SEVERITY:
            sev = tokens[3] if len(tokens) > 3 else "(missing)"
            raise DataError(f"{where}: severity {sev!r} is not B or M; fix the file or drop the line")
        label = SEVERITY[tokens[3]]
        if film["label"] != "malignant":
            film["label"] = label
        if len(tokens) == 4:
            film["unlocated"] = True  # e.g. mdb059: class and severity but no centre
            continue
        if len(tokens) != 7:
            raise DataError(f"{where}: expected 'ref tissue class severity x y radius', found {len(tokens)} "
                            "columns; fix the line")
        try:
            x, y, r = (float(t) for t in tokens[4:7])
        except ValueError:
            raise DataError(f"{where}: x, y, radius {tokens[4:7]} are not numbers; fix the line") from None
        if not all(math.isfinite(v) for v in (x, y, r)):
            raise DataError(f"{where}: x, y, radius {tokens[4:7]} must be finite numbers; fix the line")
        if r <= 0:
            raise DataError(f"{where}: radius {r:g} must be positive; fix the line")
        film["lesions"].append(ItemLesion(x=x, y=y, radius=r, label=label, y_from_bottom=True, where=where))
    if not films:
        raise DataError(f"{path}: no 'mdbNNN ...' rows found; is this the mini-MIAS Info.txt?")
    return films


def find_films(root: Path) -> dict[str, Path]:
    """Map ``mdbNNN`` to its file under ``root`` (PGM preferred: it is the distributed original)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("mdb*")):
        if path.suffix.lower() in (".pgm", ".png") and ROW.match(path.stem):
            if path.stem not in found or path.suffix.lower() == ".pgm":
                found[path.stem] = path
    return found


def list_mias(source, listing: Listing | None = None) -> list[Item]:
    root = Path(source.root)
    if not root.is_dir():
        raise DataError(f"{root}: mini-MIAS folder not found; set datasets.<name>.source.root to the folder "
                        "holding Info.txt and the films")
    films = parse_info(root / "Info.txt")
    files = find_films(root)
    missing = sorted(set(films) - set(files))
    if missing:
        raise DataError(f"{root}: no PGM/PNG file for {missing[0]} (and {len(missing) - 1} more) listed in "
                        "Info.txt; copy the films or drop their rows")
    items = []
    for ref, film in sorted(films.items()):
        path = files[ref]
        items.append(Item(path=path, label=film["label"], patient=pair_patient(ref), image_id=ref,
                          lesions=film["lesions"], unlocated=film["unlocated"] and not film["lesions"],
                          loader=lambda ch, p=path: read_image(p, 1)))
    return items
