"""Files as objects: `open_plaintext` / `open_ciphertext` read a file once and say how to write the other side.

    plain = open_plaintext("scan.dcm")                  # .array, .context
    plain.save_ciphertext("scan.enc.dcm", ciphertext, meta)
    enc = open_ciphertext("scan.enc.dcm")               # .array, .meta, .context
    enc.write_plaintext("scan.back.dcm", plaintext)

One registry (`FORMATS`: name -> module, imported on first use) and one lookup
(`format_of`: by suffix, then by magic bytes), so the CLIs and the batch never branch on
a format. Each format module has `open_plaintext(path)` and `open_ciphertext(path)`:
rasters (PNG, TIFF) in runtime.containers, DICOM in runtime.dicom, NIfTI in
runtime.nifti. A DICOM plaintext may also be written as a PNG/TIFF ciphertext (its
pixels only, as before); every other pairing of formats is refused before a key is made.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from keras_dkg.errors import OutputError
from keras_dkg.runtime.cipher import CipherMetadata

#: format name -> the module that opens its files (imported on first use)
FORMATS = {"raster": "keras_dkg.runtime.containers", "dicom": "keras_dkg.runtime.dicom",
           "nifti": "keras_dkg.runtime.nifti"}
NIFTI_NAMES = (".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")


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


def format_of(path: str | os.PathLike) -> str:
    """The format of a file we read: by suffix, then DICOM's magic (a DICOM file may have any name)."""
    from keras_dkg.runtime.imageio import is_dicom

    target = Path(path)
    if target.name.lower().endswith(NIFTI_NAMES):
        return "nifti"
    if is_dicom(target):
        return "dicom"
    return "raster"


def output_format(source_kind: str, target: str | os.PathLike) -> str:
    """The format a file written at `target` from a `source_kind` file takes.

    A name that says a format (a NIfTI name, .dcm, an image suffix) gets that format;
    any other name (`IM0001`, `1.2.840….320`: PACS exports and DICOMDIR file-sets name
    DICOM files so) the source's own, so a DICOM ciphertext decrypts to DICOM whatever it
    is called. Never the bytes of an existing file at `target`: what is written does not
    depend on what it replaces.
    """
    from keras_dkg.runtime.containers import LOSSY_SUFFIXES
    from keras_dkg.runtime.imageio import DICOM_SUFFIXES, RASTER_SUFFIXES

    name = Path(target).name.lower()
    suffix = os.path.splitext(name)[1]
    if name.endswith(NIFTI_NAMES):
        return "nifti"
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    if suffix in RASTER_SUFFIXES or suffix in LOSSY_SUFFIXES:
        return "raster"
    return "dicom" if source_kind == "dicom" else "raster"


def named_like_a_file_we_read(name: str) -> bool:
    """Whether a file name has a suffix of a format we read (a batch lists these; DICOM is also
    recognised by its magic bytes, see `recognised`)."""
    from keras_dkg.runtime.imageio import IMAGE_SUFFIXES

    lower = name.lower()
    return lower.endswith(NIFTI_NAMES) or os.path.splitext(lower)[1] in IMAGE_SUFFIXES


def recognised(path: str | os.PathLike) -> bool:
    """A file of a format we read: by its name, or a DICOM file by its magic bytes."""
    return named_like_a_file_we_read(Path(path).name) or format_of(path) == "dicom"


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
            from keras_dkg.runtime.containers import container_for

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
    from keras_dkg.runtime.cipher import check_plaintext

    kind = format_of(path)
    raster = kind == "raster"
    if raster:
        from keras_dkg.runtime.containers import check_storable, container_for

        container_for(path)  # the output keeps the suffix: lossy and unknown ones are refused first
    plain = _module(kind).open_plaintext(Path(path))
    try:
        check_plaintext(plain.array)
    except DkgError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    if raster:
        check_storable(path, plain.array)
    return plain
