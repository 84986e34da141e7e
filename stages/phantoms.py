"""DVC stage ``phantoms``: write the built-in mammography (DICOM) and cell (PNG) phantoms.

Usage: python -m stages.phantoms [--params params.yaml] [--out data/phantoms]
"""
from __future__ import annotations

import time
from pathlib import Path

from pipeline.config import load_params
from pipeline.io import atomic_dir
from pipeline.data.phantoms import write_cell_phantoms, write_mammography_phantoms
from stages._common import parser, run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--out", default="data/phantoms", help="output folder")
    args = p.parse_args()
    cfg = load_params(args.params).phantom
    t0 = time.perf_counter()
    with atomic_dir(Path(args.out)) as tmp:
        write_mammography_phantoms(tmp / "mammography", cfg)
        write_cell_phantoms(tmp / "cells", cfg)
    print(f"phantoms written to {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    run(main)
