"""Keys as artifacts: a lossless KEY.png (H×W×3 uint8) plus its KEY.json record.

The record says where the key came from (model, seed, nonce, provider) and carries the
key's fingerprint, so a key file that was swapped, re-encoded or damaged is caught on
load. It also lists the plaintexts the key encrypted (`used_for`): a key is for one
plaintext only, and `mark_key_used` refuses a second unless reuse is allowed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_dkg.common import file_lock, utc_timestamp
from keras_dkg.errors import InputError, KeyMaterialError, OutputError
from keras_dkg.runtime.ciphers.metadata import KEY_DTYPE, fingerprint
from keras_dkg.runtime.formats.images import read_image, write_image
from keras_dkg.runtime.guards.atomic import write_bytes_atomic
from keras_dkg.runtime.guards.inputs import MAX_RECORD_BYTES, read_bounded

KEY_RECORD_FORMAT = "keras_dkg.key/1"
# a key's bytes are (meant to be) random: zlib cannot shrink them, and level 0 (stored, no row
# filters) encodes a 256² key in 0.8 ms instead of 8.9 ms (same size to 0.02 %)
KEY_PNG_COMPRESSION = 0


def record_path_for(path: str | os.PathLike) -> Path:
    """KEY.png → KEY.json."""
    return Path(path).with_suffix(".json")


@dataclass
class Key:
    """A key image and its record (`.record["fingerprint"]` is "sha256:" of `.pixels`)."""

    pixels: np.ndarray
    record: dict

    @property
    def fingerprint(self) -> str:
        return self.record["fingerprint"]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.pixels.shape)  # type: ignore[return-value]

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write KEY.png and KEY.json atomically; return the PNG's path."""
        target = Path(path)
        if target.suffix.lower() != ".png":
            raise OutputError(f"{target}: keys are stored as lossless .png files")
        record_file = record_path_for(target)
        for existing in (target, record_file):
            if existing.exists() and not overwrite:
                raise OutputError(f"{existing}: exists; refusing to overwrite (use --overwrite)")
        write_image(target, self.pixels, overwrite=overwrite, png_compression=KEY_PNG_COMPRESSION)
        try:
            write_record(record_file, self.record, overwrite=overwrite)
        except BaseException:
            target.unlink(missing_ok=True)  # never leave a key without its record
            raise
        return target


def make_record(pixels: np.ndarray, **fields) -> dict:
    """A key record: format, shape, dtype, fingerprint, then the caller's fields, `used_for`."""
    return {
        "format": KEY_RECORD_FORMAT,
        "shape": [int(v) for v in pixels.shape],
        "dtype": "uint8",
        "fingerprint": fingerprint(pixels),
        **fields,
        "used_for": [],
    }


def write_record(path: Path, record: dict, overwrite: bool = False) -> None:
    write_bytes_atomic(path, (json.dumps(record, indent=2) + "\n").encode("utf-8"), overwrite=overwrite)


def check_uses(used_for, label: str) -> list:
    """A record's or index entry's `used_for`: a list of {plaintext_sha256: str, plaintext: str, ...}."""
    if not isinstance(used_for, list) or not all(
        isinstance(use, dict) and isinstance(use.get("plaintext_sha256"), str)
        and isinstance(use.get("plaintext", ""), str) for use in used_for
    ):
        raise KeyMaterialError(f"{label}: 'used_for' must be a list of uses with a plaintext_sha256 string "
                               f"(found {json.dumps(used_for)[:80]}); the record was altered or damaged")
    return used_for


def read_record(path: Path) -> dict:
    if not path.is_file():
        raise KeyMaterialError(f"{path}: key record missing; a key without its record cannot be verified")
    try:
        record = json.loads(read_bounded(path, MAX_RECORD_BYTES, "key record").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyMaterialError(f"{path}: key record is not readable JSON ({exc})") from exc
    except InputError as exc:
        raise KeyMaterialError(str(exc)) from exc
    if not isinstance(record, dict) or not isinstance(record.get("fingerprint"), str):
        raise KeyMaterialError(f"{path}: not a keras_dkg key record (no fingerprint string)")
    check_uses(record.get("used_for", []), str(path))
    return record


def verify_key(pixels: np.ndarray, record: dict, label: str | os.PathLike) -> Key:
    """Check pixels against the record's fingerprint and shape; return the Key."""
    if pixels.dtype != KEY_DTYPE or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise KeyMaterialError(f"{label}: a key is an H×W×3 uint8 image, got {pixels.shape} {pixels.dtype}")
    actual = fingerprint(pixels)
    if actual != record.get("fingerprint"):
        raise KeyMaterialError(
            f"{label}: key pixels do not match their record (fingerprint {actual[:23]}… vs "
            f"{str(record.get('fingerprint'))[:23]}…): the key file was altered or swapped"
        )
    return Key(np.ascontiguousarray(pixels), record)


def load_key(path: str | os.PathLike) -> Key:
    """Load KEY.png (or KEY.json) and verify the record's fingerprint against the pixels."""
    image_path = Path(path)
    if image_path.suffix.lower() == ".json":
        image_path = image_path.with_suffix(".png")
    if not image_path.is_file():
        raise KeyMaterialError(f"{image_path}: no such key file")
    record = read_record(record_path_for(image_path))
    return verify_key(read_image(image_path), record, image_path)


def register_use(used_for: list, plaintext_sha256: str, plaintext: str, allow_reuse: bool, label: str) -> bool:
    """Add a plaintext to a key's `used_for`; refuse a second plaintext unless allowed.

    Returns True when the list changed. Encrypting the same plaintext again is not reuse
    (the ciphertext is identical), so it is accepted and not recorded twice.
    """
    if any(entry.get("plaintext_sha256") == plaintext_sha256 for entry in used_for):
        return False
    if used_for and not allow_reuse:
        raise KeyMaterialError(
            f"{label}: key already encrypted another plaintext ({used_for[0].get('plaintext')}); "
            "a key is for one plaintext only (--allow-key-reuse to override)"
        )
    used_for.append({"plaintext_sha256": plaintext_sha256, "plaintext": plaintext, "time": utc_timestamp()})
    return True


def mark_key_used(key_path: str | os.PathLike, plaintext_sha256: str, plaintext: str, allow_reuse: bool = False) -> bool:
    """Record in KEY.json that this key encrypts `plaintext`; refuse reuse (see `register_use`).

    The check and the update happen under a lock on the key file, so two processes cannot
    both take one key for different plaintexts. Returns True when the record changed.
    """
    image_path = Path(key_path)
    record_file = record_path_for(image_path)
    with file_lock(image_path):
        record = read_record(record_file)
        used_for = record.setdefault("used_for", [])
        if register_use(used_for, plaintext_sha256, plaintext, allow_reuse, str(image_path)):
            write_record(record_file, record, overwrite=True)
            return True
    return False


def release_key_use(key_path: str | os.PathLike, plaintext_sha256: str) -> None:
    """Undo `mark_key_used` for a plaintext whose ciphertext was not written after all."""
    image_path = Path(key_path)
    record_file = record_path_for(image_path)
    with file_lock(image_path):
        record = read_record(record_file)
        used_for = record.get("used_for", [])
        kept = [use for use in used_for if use.get("plaintext_sha256") != plaintext_sha256]
        if len(kept) != len(used_for):
            record["used_for"] = kept
            write_record(record_file, record, overwrite=True)
