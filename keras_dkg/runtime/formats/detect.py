"""Which format a file is, from its name and magic bytes alone: nothing here decodes.

The suffix sets every reader and writer shares, DICOM's 'DICM' magic at byte 128, and the
format names (`format_of`, `output_format`) that formats.registry looks modules up by.
Kept below every format module, so none of them imports another to ask what a file is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
LOSSLESS_SUFFIXES = frozenset({".png", ".tif", ".tiff"})
#: formats a ciphertext must never be written in (their encoders change the samples)
LOSSY_SUFFIXES = frozenset({".jpg", ".jpeg", ".jp2", ".webp", ".gif", ".bmp"})
IMAGE_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES


def is_dicom(path: Path) -> bool:
    """DICOM by suffix or by the 'DICM' magic at byte 128 (only a regular file is opened:
    opening a FIFO would block)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


NIFTI_NAMES = (".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")


def format_of(path: str | os.PathLike) -> str:
    """The format of a file we read: by suffix, then DICOM's magic (a DICOM file may have any name)."""
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
    lower = name.lower()
    return lower.endswith(NIFTI_NAMES) or os.path.splitext(lower)[1] in IMAGE_SUFFIXES


def recognised(path: str | os.PathLike) -> bool:
    """A file of a format we read: by its name, or a DICOM file by its magic bytes."""
    return named_like_a_file_we_read(Path(path).name) or format_of(path) == "dicom"
