"""Decoding images of any kind we read, and encoding them losslessly.

OpenCV decodes PNG/JPEG/TIFF/BMP/GIF/WebP (16-bit kept); pydicom, when installed
(`[dicom]`), decodes a DICOM file's first frame. Arrays come back in RGB order with the
stored dtype. Every input is a regular file read within MAX_IMAGE_BYTES (guards.inputs)
and its header is inspected first (formats.raster_headers): bombs, damaged headers and
unknown formats are refused before anything is decoded. `read_plaintext_image` (what is
encrypted) also refuses every file the decoder would not return exactly as stored
(multi-page or tiled TIFF, palette, gray+alpha, CMYK, rotated, lossy...), and checks the
decoded array against the header. Writes are lossless and atomic (guards.atomic).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from keras_dkg.common import short_error
from keras_dkg.errors import InputError, OutputError
from keras_dkg.runtime.formats.detect import DICOM_SUFFIXES, LOSSLESS_SUFFIXES
from keras_dkg.runtime.formats.raster_headers import MAX_PIXELS, inspect
from keras_dkg.runtime.guards.atomic import write_bytes_atomic
from keras_dkg.runtime.guards.inputs import MAX_IMAGE_BYTES, read_bounded


def read_image(path: str | os.PathLike, exact: bool = False) -> np.ndarray:
    """Pixels of one image: H×W (gray) or H×W×C (RGB[A] order), dtype as stored.

    Seeds, keys and ciphertexts are read with the default; `exact=True` is for what gets
    encrypted (see `read_plaintext_image`). A DICOM file gives its first frame here;
    `keras_dkg.runtime.formats.dicom` handles whole DICOM datasets for encryption.
    """
    path = Path(path)
    return image_from_bytes(read_bounded(path, MAX_IMAGE_BYTES, "image"), path, exact)


def image_from_bytes(data: bytes, path: Path, exact: bool = False) -> np.ndarray:
    """`read_image` of bytes already read from `path` (for callers that also hash or parse them)."""
    if not data:
        raise InputError(f"{path}: file is empty (0 bytes)")
    if path.suffix.lower() in DICOM_SUFFIXES or data[128:132] == b"DICM":
        if exact:
            raise InputError(f"{path}: a DICOM plaintext is encrypted whole by keras_dkg.runtime.formats.dicom "
                             "(pip install 'keras-dkg[dicom]'), not as a plain image")
        return _read_dicom_first_frame(path, data)
    return decode_image(data, path, exact=exact)


def read_plaintext_image(path: str | os.PathLike) -> np.ndarray:
    """A PNG/TIFF/BMP plaintext's stored samples, exactly, or InputError saying why not.

    What is encrypted must decrypt to what the file holds, so anything the decoder would
    change (rasters.Raster.inexact) is refused, JPEG included (lossy).
    """
    return read_image(path, exact=True)


def decode_image(data: bytes, label: object, exact: bool = False) -> np.ndarray:
    """Decode an image file's bytes (`label` names it in errors); see `read_image`."""
    raster = inspect(data, label)
    if exact and raster.inexact:
        raise InputError(f"{label}: {raster.inexact}")
    with _opencv_silenced():  # OpenCV logs decoder complaints on stderr; we raise one clear error
        try:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            image = None
    if image is None:
        cause = raster.inexact or "damaged, truncated or unsupported format"
        raise InputError(f"{label}: not a readable image ({cause})")
    if image.ndim == 3 and image.shape[2] in (3, 4):  # BGR(A) -> RGB(A), for every dtype
        image = np.ascontiguousarray(image[..., [2, 1, 0, 3][:image.shape[2]]])
    if exact and (image.shape != raster.shape or image.dtype != raster.dtype):
        raise InputError(f"{label}: decoded as {image.shape} {image.dtype}, but its header declares "
                         f"{raster.shape} {raster.dtype}; refusing an image that would not decrypt to "
                         "its stored samples")
    return image


@contextlib.contextmanager
def _opencv_silenced() -> Iterator[None]:
    """Silence OpenCV and the C decoders below it for the block; we raise one clear error instead.

    OpenCV's own log has a level; libpng/libtiff print warnings ("libpng warning: iCCP:
    too short") with fprintf on file descriptor 2, which only a redirect of that
    descriptor stops. The redirect lasts one decode call, in the calling thread's process.
    """
    with contextlib.ExitStack() as stack:
        try:
            logging = cv2.utils.logging
            previous = logging.getLogLevel()
            logging.setLogLevel(logging.LOG_LEVEL_SILENT)
            stack.callback(logging.setLogLevel, previous)
        except AttributeError:  # pragma: no cover - OpenCV builds without the logging module
            pass
        stack.enter_context(_stderr_descriptor_silenced())
        yield


@contextlib.contextmanager
def _stderr_descriptor_silenced() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 (embedded interpreters)
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def refuse_dicom_bomb(label, dataset) -> None:
    """The same limit for a DICOM dataset's Rows x Columns x frames, before decoding its pixels."""
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return  # a damaged description is reported by the reader
    if rows * columns * max(frames, 1) > MAX_PIXELS:
        raise InputError(
            f"{label}: declares {frames} frame(s) of {columns}x{rows} pixels, over the {MAX_PIXELS} "
            "pixel limit (possible decompression bomb)"
        )


def _read_dicom_first_frame(path: Path, data: bytes) -> np.ndarray:
    try:
        import pydicom
    except ImportError as exc:
        raise InputError(f"{path}: DICOM needs pydicom; pip install 'keras-dkg[dicom]'") from exc
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many types for bad files
        raise InputError(f"{path}: not a readable DICOM file ({short_error(exc, 300)})") from exc
    refuse_dicom_bomb(path, dataset)
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # pydicom raises many types for bad files
        raise InputError(f"{path}: cannot decode DICOM pixel data ({short_error(exc, 300)})") from exc
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    samples = int(getattr(dataset, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    if samples == 1 and pixels.ndim == 3:
        pixels = pixels[..., 0]
    return np.ascontiguousarray(pixels)


def encode_lossless(array: np.ndarray, suffix: str, png_compression: int = 3) -> bytes:
    """Encode an RGB(A)/gray uint8/uint16 array as PNG or TIFF bytes (`png_compression`: zlib level)."""
    suffix = suffix.lower()
    if suffix not in LOSSLESS_SUFFIXES:
        raise OutputError(
            f"output format {suffix or '(none)'} is not lossless; use .png or .tif "
            "(a lossy format would destroy the ciphertext)"
        )
    image = np.asarray(array)
    if image.dtype not in (np.uint8, np.uint16):
        raise OutputError(f"cannot store dtype {image.dtype} losslessly as {suffix}; expected uint8 or uint16")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_PNG_COMPRESSION, png_compression] if suffix == ".png" else []
    if params and png_compression == 0 and hasattr(cv2, "IMWRITE_PNG_FILTER"):
        # stored, not deflated: row filters would only cost time (0.8 instead of 3.6 ms for 256² RGB)
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok, buffer = cv2.imencode(suffix, image, params)
    if not ok:
        raise OutputError(f"OpenCV could not encode a {image.shape} {image.dtype} image as {suffix}")
    return buffer.tobytes()


def write_image(path: str | os.PathLike, array: np.ndarray, overwrite: bool = False, png_compression: int = 3) -> Path:
    """Write an image losslessly (PNG/TIFF only) and atomically."""
    target = Path(path)
    return write_bytes_atomic(target, encode_lossless(array, target.suffix, png_compression), overwrite=overwrite)
