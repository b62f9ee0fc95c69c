"""Files as objects: `open_plaintext` / `open_ciphertext` read a file once and say how to write the other side.

    plain = open_plaintext("scan.dcm")                  # .array, .context
    plain.save_ciphertext("scan.enc.dcm", ciphertext, meta)
    enc = open_ciphertext("scan.enc.dcm")               # .array, .meta, .context
    enc.write_plaintext("scan.back.dcm", plaintext)

One registry (`FORMATS`: name -> module, imported on first use) and one lookup
(`formats.detect.format_of`: by suffix, then by magic bytes), so the CLIs and the batch never branch on
a format. Each format module has `open_plaintext(path)` and `open_ciphertext(path)`:
rasters (PNG, TIFF) in formats.png_tiff, DICOM in formats.dicom, NIfTI in
formats.nifti. A DICOM plaintext may also be written as a PNG/TIFF ciphertext (its
pixels only, as before); every other pairing of formats is refused before a key is made.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from keras_dkg.errors import OutputError
from keras_dkg.runtime.ciphers.metadata import CipherMetadata
from keras_dkg.runtime.formats.detect import format_of, output_format

#: format name -> the module that opens its files (imported on first use)
FORMATS = {"raster": "keras_dkg.runtime.formats.png_tiff", "dicom": "keras_dkg.runtime.formats.dicom",
           "nifti": "keras_dkg.runtime.formats.nifti"}


class PlaintextFile(Protocol):
    path: Path
    array: np.ndarray
    context: bytes

    def save_ciphertext(self, target: str | os.PathLike, array: np.ndarray, meta: CipherMetadata,
                        overwrite: bool = False) -> Path: ...


class CiphertextFile(Protocol):
    path: Path
    array: np.ndarray
    meta: CipherMetadata
    context: bytes

    def write_plaintext(self, target: str | os.PathLike, array: np.ndarray, overwrite: bool = False,
                        as_recorded: bool = False) -> Path: ...
    # as_recorded: write the container the ciphertext records, whatever `target` is called (a batch)


def _module(name: str):
    return importlib.import_module(FORMATS[name])


LABELS = {"raster": "PNG/TIFF", "dicom": "DICOM", "nifti": "NIfTI"}
WRITTEN_AS = {"raster": ".png or .tif", "dicom": ".dcm (or .png/.tif for its pixels only)", "nifti": ".nii or .nii.gz"}


def check_output(source: str | os.PathLike, target: str | os.PathLike, what: str = "ciphertext") -> str:
    """The format `target` will be written in (`what` it is: ciphertext or plaintext); OutputError
    for a pairing that cannot be kept. A DICOM file's pixels may go to PNG/TIFF (as before)."""
    kind = format_of(source)
    out_kind = output_format(kind, target)
    if out_kind == kind or (kind == "dicom" and out_kind == "raster"):
        if out_kind == "raster":
            from keras_dkg.runtime.formats.png_tiff import container_for

            container_for(target)  # refuses lossy and unknown suffixes
        return out_kind
    other = "plaintext" if what == "ciphertext" else "ciphertext"
    raise OutputError(f"{target}: a {LABELS[out_kind]} {what} needs a {LABELS[out_kind]} {other}; "
                      f"write this {LABELS[kind]} file as {WRITTEN_AS[kind]}")


def open_plaintext(path: str | os.PathLike, target: str | os.PathLike | None = None) -> PlaintextFile:
    """Read a plaintext once; the handle writes its ciphertext in `target`'s format (default: its own)."""
    source = Path(path)
    kind = format_of(source)
    if target is not None and check_output(source, target) != kind:  # a DICOM's pixels as PNG/TIFF
        return _module("raster").pixels_plaintext(source, _module(kind).open_plaintext(source).array)
    return _module(kind).open_plaintext(source)


def open_ciphertext(path: str | os.PathLike) -> CiphertextFile:
    """Read a ciphertext once (its metadata checked); the handle writes the decrypted file."""
    return _module(format_of(path)).open_ciphertext(Path(path))


def open_plaintext_checked(path: str | os.PathLike) -> PlaintextFile:
    """open_plaintext for a ciphertext in the same format, with the checks a batch makes before a key:
    the cipher takes the array, and a PNG/TIFF output (same suffix) can store it exactly."""
    from keras_dkg.errors import DkgError
    from keras_dkg.runtime.ciphers.metadata import check_plaintext

    kind = format_of(path)
    raster = kind == "raster"
    if raster:
        from keras_dkg.runtime.formats.png_tiff import check_storable, container_for

        container_for(path)  # the output keeps the suffix: lossy and unknown ones are refused first
    plain = _module(kind).open_plaintext(Path(path))
    try:
        check_plaintext(plain.array)
    except DkgError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    if raster:
        check_storable(path, plain.array)
    return plain
