"""Reading a batch's files: a plaintext to encrypt, or a ciphertext to decrypt, each with its writer.

DICOM files go through `keras_dkg.runtime.dicom` (the output stays DICOM), everything
else through its container (`keras_dkg.runtime.containers`: PNG/TIFF keep their format).
Each reader returns the pixels, the context bound into the tag, and how to write the
result, so the batch itself never branches on the format.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_dkg.errors import DkgError
from keras_dkg.runtime.cipher import check_plaintext
from keras_dkg.runtime.containers import (
    check_storable,
    container_for,
    context_for,
    load_ciphertext,
    read_plaintext,
)


def is_dicom_file(path: Path) -> bool:
    from keras_dkg.runtime.imageio import is_dicom

    return path.suffix.lower() in (".dcm", ".dicom") or is_dicom(path)


@dataclass
class Plain:
    """A plaintext read for encryption, with how to write its ciphertext."""

    array: np.ndarray
    context: bytes
    save: Callable[[Path, np.ndarray, object, bool, dict], None]


def open_plaintext(source: Path) -> Plain:
    """Read a plaintext (DICOM through our module, others through their container)."""
    if is_dicom_file(source):
        from keras_dkg.runtime import dicom

        plain = dicom.read_dicom(source)
        context = dicom.plaintext_context(plain)

        def save_dicom(target: Path, ciphertext, meta, overwrite: bool, timing: dict) -> None:
            start = time.perf_counter()
            data = dicom.ciphertext_bytes(plain, ciphertext, meta, context)
            middle = time.perf_counter()
            dicom.save_dicom_ciphertext(target, data, overwrite=overwrite)
            timing["encode"] += middle - start
            timing["write"] += time.perf_counter() - middle

        return Plain(plain.plain_array(), context, save_dicom)
    container = container_for(source)  # refuses lossy/unknown suffixes: outputs keep them
    array = read_plaintext(source)
    try:
        check_plaintext(array)
    except DkgError as exc:
        raise type(exc)(f"{source}: {exc}") from exc
    check_storable(source, array)  # the output keeps the suffix: refused before a key is made
    context = context_for(container, source)

    def save_other(target: Path, ciphertext, meta, overwrite: bool, timing: dict) -> None:
        start = time.perf_counter()
        container.save(target, ciphertext, meta, overwrite=overwrite, source=source)
        timing["write"] += time.perf_counter() - start  # encode + write (one container call)

    return Plain(array, context, save_other)


def open_ciphertext(path: Path):
    """(ciphertext array, metadata, context, writer(target, plain, overwrite)) of an encrypted file."""
    if is_dicom_file(path):
        from keras_dkg.runtime import dicom

        encrypted = dicom.load_dicom_ciphertext(path)

        def write_dicom(target: Path, plain: np.ndarray, overwrite: bool) -> None:
            dicom.write_dicom_plaintext(target, dicom.restore_plaintext(encrypted, plain), overwrite=overwrite)

        return encrypted.cipher_pixels, encrypted.meta, encrypted.context, write_dicom
    container = container_for(path)
    array, meta = load_ciphertext(path)
    context = context_for(container, path)

    def write_other(target: Path, plain: np.ndarray, overwrite: bool) -> None:
        from keras_dkg.runtime.containers import write_plaintext

        write_plaintext(target, plain, overwrite=overwrite, source=path)

    return array, meta, context, write_other


