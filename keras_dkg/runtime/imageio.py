"""Reading images of any kind we support, and writing outputs atomically and losslessly.

OpenCV decodes PNG/JPEG/TIFF/BMP/GIF/WebP (16-bit kept); pydicom, when installed
(`[dicom]`), decodes DICOM. Arrays come back in RGB order with the stored dtype. Every
input is a regular file read within MAX_IMAGE_BYTES (runtime.inputs) and its header is
inspected first (runtime.rasters): bombs, damaged headers and unknown formats are refused
before anything is decoded. `read_plaintext_image` (what is encrypted) also refuses every
file the decoder would not return exactly as stored (multi-page or tiled TIFF, palette,
gray+alpha, CMYK, rotated, lossy...), and checks the decoded array against the header.
Writes go to a temporary file in the target folder and are then linked into place, so a
reader never sees a partial file and an existing file is never replaced unless asked for.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from keras_dkg.common import short_error
from keras_dkg.errors import InputError, OutputError
from keras_dkg.runtime.inputs import MAX_IMAGE_BYTES, read_bounded
from keras_dkg.runtime.rasters import MAX_PIXELS, inspect

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
LOSSLESS_SUFFIXES = frozenset({".png", ".tif", ".tiff"})
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


def source_files(folder: str | os.PathLike) -> list[Path]:
    """Sorted images and NIfTI volumes under `folder` (recursively): what training and domains read."""
    from keras_dkg.runtime.nifti import SUFFIXES, is_nifti_name

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    volumes = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and is_nifti_name(p)]
    try:
        images = list_images(root)
    except InputError:
        if not volumes:
            raise InputError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES | set(SUFFIXES)))})"
                             ) from None
        images = []
    return sorted(images + volumes)


def source_images(path: Path) -> list[tuple[Path, np.ndarray]]:
    """(label, image) of one source file: the image, or a NIfTI volume's kept axial slices
    (`nifti.training_slices`, labelled FILE:z); errors name the file."""
    from keras_dkg.runtime.nifti import is_nifti_name, training_slices

    if is_nifti_name(path):
        return [(Path(label), image) for label, image in training_slices(path)]
    return [(path, read_image(path))]


def read_image(path: str | os.PathLike, exact: bool = False) -> np.ndarray:
    """Pixels of one image: H×W (gray) or H×W×C (RGB[A] order), dtype as stored.

    Seeds, keys and ciphertexts are read with the default; `exact=True` is for what gets
    encrypted (see `read_plaintext_image`). A DICOM file gives its first frame here;
    `keras_dkg.runtime.dicom` handles whole DICOM datasets for encryption.
    """
    path = Path(path)
    return image_from_bytes(read_bounded(path, MAX_IMAGE_BYTES, "image"), path, exact)


def image_from_bytes(data: bytes, path: Path, exact: bool = False) -> np.ndarray:
    """`read_image` of bytes already read from `path` (for callers that also hash or parse them)."""
    if not data:
        raise InputError(f"{path}: file is empty (0 bytes)")
    if path.suffix.lower() in DICOM_SUFFIXES or data[128:132] == b"DICM":
        if exact:
            raise InputError(f"{path}: a DICOM plaintext is encrypted whole by keras_dkg.runtime.dicom "
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


def append_whole_lines(path: Path, data: bytes, committed, what: str, mode: int = 0o600) -> tuple[int, int]:
    """Append `data` (whole lines) to a log file, durably; return the file's (st_dev, st_ino).

    `committed(identity)` gives how many bytes of the opened file are whole lines the caller
    has read: anything past them is a killed writer's partial line and is cut off first. On an
    error the file is cut back to that length, so no partial line is left (disk full, …).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, mode)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from exc
    length = None
    try:
        info = os.fstat(fd)
        identity = (info.st_dev, info.st_ino)
        length = committed(identity)
        if info.st_size > length:
            os.ftruncate(fd, length)  # a partial line left by a killed writer
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        if length is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, length)
        raise OutputError(f"{path}: cannot append to the {what} ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
    return identity


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
