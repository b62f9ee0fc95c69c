"""Reading images of any kind we support, and writing outputs atomically and losslessly.

OpenCV decodes PNG/JPEG/TIFF/BMP (16-bit kept); pydicom, when installed (`[dicom]`),
decodes DICOM. Arrays come back in RGB order with the stored dtype. Writes go to a
temporary file in the target folder and are then linked into place, so a reader never
sees a partial file and an existing file is never replaced unless asked for.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from keras_dkg.errors import InputError, OutputError

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
LOSSLESS_SUFFIXES = frozenset({".png", ".tif", ".tiff"})
IMAGE_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES
# Refuse images that declare more pixels than this before decoding them (decompression bombs).
MAX_PIXELS = 1 << 28


def is_dicom(path: Path) -> bool:
    """DICOM by suffix or by the 'DICM' magic at byte 128."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Sorted image files under `folder`; a clear error if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    pattern = root.rglob("*") if recursive else root.glob("*")
    files = sorted(
        p for p in pattern
        if p.is_file() and not p.name.startswith(".") and (p.suffix.lower() in IMAGE_SUFFIXES)
    )
    if not files:
        raise InputError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Pixels of one image: H×W (gray) or H×W×3/4 (RGB[A]), dtype as stored.

    A DICOM file gives its first frame here; `keras_dkg.runtime.dicom` handles whole
    DICOM datasets for encryption.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    if is_dicom(path):
        return _read_dicom_first_frame(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    _refuse_bomb(path, data)
    with _opencv_silenced():  # OpenCV logs decoder complaints on stderr; we raise one clear error
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"{path}: not a readable image (damaged, truncated or unsupported format)")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


@contextlib.contextmanager
def _opencv_silenced() -> Iterator[None]:
    """Turn OpenCV's own logging off for the block (decoders print warnings and errors)."""
    try:
        logging = cv2.utils.logging
        previous = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    except AttributeError:  # pragma: no cover - OpenCV builds without the logging module
        yield
        return
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a PNG, TIFF, BMP or JPEG header declares, read without decoding; None if unknown."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
            return struct.unpack(">II", data[16:24])
        if data[:2] in (b"II", b"MM") and len(data) >= 8:
            return _tiff_size(data, "<" if data[:2] == b"II" else ">")
        if data[:2] == b"BM" and len(data) >= 26:
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _tiff_size(data: bytes, order: str) -> tuple[int, int] | None:
    if struct.unpack(order + "H", data[2:4])[0] != 42:
        return None
    ifd = struct.unpack(order + "I", data[4:8])[0]
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    size = {}
    for index in range(count):
        entry = data[ifd + 2 + 12 * index:ifd + 14 + 12 * index]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8:10] if kind == 3 else entry[8:12])[0]
    return (size[256], size[257]) if len(size) == 2 else None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return width, height
        position += 2 + length
    return None


def _refuse_bomb(path: Path, data: np.ndarray) -> None:
    """Check an image's declared size before OpenCV allocates it."""
    size = declared_size(data[:1 << 16].tobytes())
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise InputError(
            f"{path}: declares {size[0]}x{size[1]} pixels, over the {MAX_PIXELS} pixel limit "
            "(possible decompression bomb)"
        )


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


def _read_dicom_first_frame(path: Path) -> np.ndarray:
    try:
        import pydicom
    except ImportError as exc:
        raise InputError(f"{path}: DICOM needs pydicom; pip install 'keras-dkg[dicom]'") from exc
    try:
        dataset = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for bad files
        raise InputError(f"{path}: not a readable DICOM file ({' '.join(str(exc).split())[:300]})") from exc
    refuse_dicom_bomb(path, dataset)
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # pydicom raises many types for bad files
        raise InputError(f"{path}: cannot decode DICOM pixel data ({' '.join(str(exc).split())[:300]})") from exc
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    samples = int(getattr(dataset, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    if samples == 1 and pixels.ndim == 3:
        pixels = pixels[..., 0]
    return np.ascontiguousarray(pixels)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it into place atomically.

    Without `overwrite`, an existing target is refused, and if another process creates
    the target meanwhile, this one fails cleanly instead of replacing it (os.link is
    atomic and never overwrites). On any error the temporary file is removed.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{target}: output folder {folder} does not exist")
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: exists; refusing to overwrite (use --overwrite)")
    try:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=folder)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write in {folder} ({exc.strerror})") from exc
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        _fsync(temporary)
        if overwrite:
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)
            except FileExistsError as exc:
                raise OutputError(f"{target}: was created by someone else meanwhile; not replaced") from exc
    except OSError as exc:
        raise OutputError(f"{target}: write failed ({exc.strerror or exc})") from exc
    finally:
        temporary.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write bytes atomically (see `atomic_output`)."""
    with atomic_output(path, overwrite=overwrite) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def encode_lossless(array: np.ndarray, suffix: str) -> bytes:
    """Encode an RGB(A)/gray uint8/uint16 array as PNG or TIFF bytes."""
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
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if suffix == ".png" else []
    ok, buffer = cv2.imencode(suffix, image, params)
    if not ok:
        raise OutputError(f"OpenCV could not encode a {image.shape} {image.dtype} image as {suffix}")
    return buffer.tobytes()


def write_image(path: str | os.PathLike, array: np.ndarray, overwrite: bool = False) -> Path:
    """Write an image losslessly (PNG/TIFF only) and atomically."""
    target = Path(path)
    return write_bytes_atomic(target, encode_lossless(array, target.suffix), overwrite=overwrite)
