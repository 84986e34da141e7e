"""Patient-id hashing, the salt, and pixel scaling shared by all readers."""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.workspace import main_checkout

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm"}


def load_salt(env_name: str = "PIPELINE_ID_SALT", salt_file: str | Path = ".pipeline_salt") -> str:
    """The salt for patient hashes: from the environment, else a random per-checkout file (git-ignored).

    A relative ``salt_file`` lies in the working directory, or in the repository that queued the run when
    DVC runs a queued experiment in a temporary copy (so every experiment hashes a patient the same way).
    """
    value = os.environ.get(env_name)
    if value:
        return value
    path = Path(salt_file)
    if not path.is_absolute():
        path = main_checkout(Path.cwd()) / path
    if path.is_file():
        return path.read_text().strip()
    salt = secrets.token_hex(16)
    try:
        path.write_text(salt + "\n")
    except OSError as exc:
        raise DataError(f"{path}: cannot write the patient-id salt ({exc.strerror}); "
                        f"set {env_name} in the environment instead") from None
    return salt


def hash_patient(patient: str, salt: str) -> str:
    """Salted, truncated SHA-256 of a patient id: stable within a checkout, not reversible by lookup."""
    return "p" + hashlib.sha256(f"{salt}:{patient}".encode()).hexdigest()[:12]


def to_unit_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """Scale an integer image to float32 [0, 1] by its dtype range (8 or 16 bit)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        top = 65535.0 if arr.max(initial=0) > 4095 else (4095.0 if arr.max(initial=0) > 255 else 255.0)
        return arr.astype(np.float32) / top
    if arr.dtype == bool:
        return arr.astype(np.float32)
    raise DataError(f"{path}: unsupported pixel type {arr.dtype}; convert the image to 8- or 16-bit")
