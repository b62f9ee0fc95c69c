"""Turning files and byte buffers into bit sequences for the NIST tests."""

from __future__ import annotations

import os

import numpy as np

from keras_dkg.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm", ".ppm",
                            ".pbm", ".webp", ".jp2", ".dcm", ".dicom"})
# '0', '1' and ASCII whitespace (tab, LF, VT, FF, CR, space)
_ASCII_BIT_BYTES = np.zeros(256, dtype=bool)
_ASCII_BIT_BYTES[[0x30, 0x31, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20]] = True


def bits_from_bytes(data) -> np.ndarray:
    """uint8 array of 0/1 bits, most significant bit of each byte first.

    ``data`` is bytes-like or a numpy array; an array contributes its raw bytes in C
    order, multi-byte dtypes as little-endian (the cipher's byte view).
    """
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "biuf":
            raise InputError(f"bits_from_bytes: unsupported array dtype {data.dtype}")
        arr = data.astype(data.dtype.newbyteorder("<"), copy=False) if data.dtype.itemsize > 1 else data
        raw = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(bytes(data), dtype=np.uint8)
    else:
        raise InputError(f"bits_from_bytes needs bytes or a numpy array, got {type(data).__name__}")
    return np.unpackbits(raw)


def _ascii_bits(raw: np.ndarray) -> np.ndarray | None:
    """Bits of an ASCII '0'/'1' file (whitespace ignored), or None if it is not one."""
    if raw.size == 0 or not _ASCII_BIT_BYTES[raw].all():
        return None
    digits = raw[(raw == 0x30) | (raw == 0x31)]
    if digits.size == 0:
        return None
    return (digits - 0x30).astype(np.uint8)


def read_bits(path: str | os.PathLike) -> np.ndarray:
    """Bits of a file: an image (pixels' bytes in C order, via
    ``keras_dkg.runtime.formats.images.read_image``), an ASCII file of '0'/'1' characters such as
    the spec's ``data.e`` (detected by content: only 0/1/whitespace), or raw bytes."""
    from keras_dkg.runtime.guards.inputs import MAX_IMAGE_BYTES, read_bounded, regular_file

    path = regular_file(path, "bit source")  # folders, FIFOs and devices refused by type
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        from keras_dkg.runtime.formats.images import read_image

        return bits_from_bytes(read_image(path))
    raw = np.frombuffer(read_bounded(path, MAX_IMAGE_BYTES, "bit source"), dtype=np.uint8)
    ascii_bits = _ascii_bits(raw)
    if ascii_bits is not None:
        return ascii_bits
    if not _has_non_whitespace(raw):
        raise InputError(f"{path}: holds only whitespace, no bits")
    return np.unpackbits(raw)


def _has_non_whitespace(raw: np.ndarray) -> bool:
    return bool(np.any(~np.isin(raw, [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20])))
