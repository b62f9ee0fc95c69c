"""Ciphertext files: pixels written losslessly with the cipher metadata inside the file.

* PNG (8/16-bit gray, RGB, RGBA): an iTXt chunk, keyword ``keras_dkg.cipher``, right after
  IHDR in OpenCV's PNG bytes, with its CRC (zlib.crc32). Viewers ignore it.
* TIFF: an ImageDescription tag (270). OpenCV writes none, so the first IFD is copied to
  the end of the file with the tag added and the header pointed at it; strip offsets
  are absolute, so the pixel data is untouched.

One file, one atomic write: there is no sidecar to lose. Lossy or unknown suffixes are
refused with OutputError.

This is the raster format of `keras_dkg.runtime.formats` (`open_plaintext`,
`open_ciphertext` at the end); DICOM and NIfTI have their own modules there.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_dkg.errors import AlreadyEncryptedError, InputError, IntegrityError, OutputError
from keras_dkg.runtime.ciphers.metadata import CipherMetadata
from keras_dkg.runtime.formats.detect import LOSSY_SUFFIXES, is_dicom
from keras_dkg.runtime.formats.images import (
    decode_image,
    encode_lossless,
    image_from_bytes,
    write_image,
)
from keras_dkg.runtime.guards.atomic import write_bytes_atomic
from keras_dkg.runtime.guards.inputs import MAX_IMAGE_BYTES, read_bounded

META_KEYWORD = "keras_dkg.cipher"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_DESCRIPTION_TAG = 270
TIFF_ASCII = 2


@dataclass(frozen=True)
class Container:
    """How one raster format stores ciphertexts.

    save(path, array, meta, *, overwrite, source) writes a ciphertext atomically.
    load(path) -> (array, meta) reads one back.
    check(array): raise OutputError when this format cannot store the array exactly (called
        before a key is made, so a refusal costs no key).
    """

    save: Callable[..., object]
    load: Callable[[Path], tuple[np.ndarray, CipherMetadata]]
    check: Callable[[np.ndarray], None] | None = None


CONTAINERS: dict[str, Container] = {}


def register_container(suffixes: tuple[str, ...] | list[str], container: Container) -> None:
    for suffix in suffixes:
        CONTAINERS[suffix.lower()] = container


def container_for(path: str | os.PathLike) -> Container:
    """The raster container for a file, by suffix."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in CONTAINERS:
        return CONTAINERS[suffix]
    if suffix in LOSSY_SUFFIXES:
        raise OutputError(
            f"{target}: {suffix} is lossy or cannot hold the ciphertext exactly; use .png or .tif"
        )
    raise OutputError(f"{target}: unsupported format {suffix or '(no suffix)'}; use one of {', '.join(sorted(CONTAINERS))}")


RASTER_DTYPES = ("uint8", "uint16")


def check_storable(path: str | os.PathLike, array: np.ndarray) -> None:
    """OutputError, before any key is made, when the container for `path` cannot hold `array` exactly."""
    target = Path(path)
    container = container_for(target)
    if container.check is not None:
        try:
            container.check(np.asarray(array))
        except OutputError as exc:
            raise OutputError(f"{target}: {exc}") from exc


def _check_raster(array: np.ndarray) -> None:
    """PNG and TIFF (through OpenCV) store 8/16-bit unsigned gray, RGB or RGBA exactly."""
    if array.dtype.name not in RASTER_DTYPES:
        raise OutputError(f"PNG/TIFF ciphertexts hold uint8 or uint16 samples, not {array.dtype}; "
                          "keep such images in DICOM (or convert them losslessly first)")
    channels = 1 if array.ndim == 2 else array.shape[2] if array.ndim == 3 else None
    if channels not in (1, 3, 4):
        raise OutputError(f"PNG/TIFF ciphertexts hold gray, RGB or RGBA images, not shape {array.shape}")


def save_ciphertext(path, array: np.ndarray, meta: CipherMetadata, overwrite: bool = False, source=None) -> Path:
    """Write a ciphertext and its metadata in one file, atomically; format by suffix."""
    target = Path(path)
    container_for(target).save(target, array, meta, overwrite=overwrite, source=source)
    return target


def load_ciphertext(path) -> tuple[np.ndarray, CipherMetadata]:
    """Read (ciphertext array, metadata) written by `save_ciphertext`."""
    source = Path(path)
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    return container_for(source).load(source)


def ciphertext_format(data: bytes) -> str | None:
    """'png' / 'tiff' when these bytes are a keras_dkg ciphertext of that format (by content,
    whatever the file is called; a damaged metadata chunk still counts), else None."""
    try:
        if data.startswith(PNG_SIGNATURE):
            prefix = META_KEYWORD.encode("latin-1") + b"\0"
            chunks = _png_chunks(data, Path("<bytes>"))
            return "png" if any(kind == b"iTXt" and body.startswith(prefix) for kind, body, _ in chunks) else None
        if data[:2] in (b"II", b"MM"):
            description = tiff_description(data, "<bytes>")
            return "tiff" if description is not None and description.startswith(META_KEYWORD + " ") else None
    except InputError:
        return None  # damaged: the image reader reports it
    return None


def refuse_ciphertext(path: Path, data: bytes) -> None:
    """AlreadyEncryptedError when a plaintext is one of our ciphertexts: encrypting it again
    would keep only its pixels and lose the metadata needed to ever decrypt it."""
    kind = ciphertext_format(data)
    if kind is not None:
        raise AlreadyEncryptedError(
            f"{path}: already a keras_dkg ciphertext ({kind.upper()} with {META_KEYWORD} metadata); "
            "decrypt it instead of encrypting it again"
        )


def read_plaintext(path) -> np.ndarray:
    """A PNG/TIFF plaintext's pixels, decoded exactly.

    The file is read once: the same bytes are checked for being one of our ciphertexts
    (AlreadyEncryptedError, whatever the suffix) and decoded exactly or refused
    (`images.decode_image(..., exact=True)`), so a file changed between two reads cannot
    slip through. DICOM and NIfTI files open through `runtime.formats`.
    """
    source = Path(path)
    if is_dicom(source):  # read_image would give the first frame only: refuse, lose nothing
        raise InputError(f"{source}: a DICOM file; open it with keras_dkg.runtime.formats.registry.open_plaintext")
    data = read_bounded(source, MAX_IMAGE_BYTES, "plaintext")
    if not data:
        raise InputError(f"{source}: file is empty (0 bytes)")
    refuse_ciphertext(source, data)
    return decode_image(data, source, exact=True)


def _metadata(text: str, path: Path) -> CipherMetadata:
    """Parse a file's embedded metadata; a damaged one is an IntegrityError naming the file."""
    try:
        return CipherMetadata.from_json(text)
    except IntegrityError as exc:
        raise IntegrityError(f"{path}: {exc}") from exc


def _restore_shape(array: np.ndarray, meta: CipherMetadata) -> np.ndarray:
    """Image codecs drop a trailing channel axis of 1; put it back when the metadata has it."""
    if array.ndim == 2 and len(meta.shape) == 3 and meta.shape[2] == 1 and list(array.shape) == meta.shape[:2]:
        return array[:, :, None]
    return array


# ---- PNG: iTXt chunk --------------------------------------------------------------------

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_chunks(data: bytes, label: Path) -> Iterator[tuple[bytes, bytes, bool]]:
    """(type, body, crc_ok) for each chunk up to IEND."""
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(f"{label}: not a PNG file")
    position = len(PNG_SIGNATURE)
    while position + 12 <= len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        if position + 12 + length > len(data):
            raise InputError(f"{label}: truncated PNG chunk {kind!r}")
        body = data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        yield kind, body, zlib.crc32(kind + body) == crc
        if kind == b"IEND":
            return
        position += 12 + length


def png_with_text(png: bytes, keyword: str, text: str) -> bytes:
    """Insert an uncompressed iTXt chunk right after IHDR."""
    (ihdr_length,) = struct.unpack(">I", png[8:12])
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise OutputError("OpenCV produced an unexpected PNG layout (no IHDR first)")
    cut = 8 + 12 + ihdr_length
    body = keyword.encode("latin-1") + b"\0" + b"\0\0" + b"\0" + b"\0" + text.encode("utf-8")
    return png[:cut] + _png_chunk(b"iTXt", body) + png[cut:]


def png_text(data: bytes, keyword: str, label: Path) -> str | None:
    """The text of the iTXt chunk with this keyword; IntegrityError if its CRC is wrong."""
    prefix = keyword.encode("latin-1") + b"\0"
    for kind, body, crc_ok in _png_chunks(data, label):
        if kind == b"iTXt" and body.startswith(prefix):
            if not crc_ok:
                raise IntegrityError(f"{label}: the keras_dkg metadata chunk is damaged (CRC mismatch)")
            rest = body[len(prefix) + 2:]  # compression flag and method
            try:
                _language, _translated, text = rest.split(b"\0", 2)
                return text.decode("utf-8")
            except ValueError as exc:  # too few fields, bad UTF-8: a malformed chunk with a valid CRC
                raise IntegrityError(f"{label}: the keras_dkg metadata chunk is malformed ({exc})") from exc
    return None


# a ciphertext's samples are (meant to be) uniform bytes: zlib cannot shrink them, so they are
# stored uncompressed (level 0, no row filters: 0.8 instead of 8.9 ms for a 256² RGB file, the same size)
CIPHERTEXT_PNG_COMPRESSION = 0


def _save_png(path: Path, array, meta: CipherMetadata, *, overwrite: bool = False, source=None) -> None:
    png = png_with_text(encode_lossless(array, ".png", CIPHERTEXT_PNG_COMPRESSION), META_KEYWORD, meta.to_json())
    write_bytes_atomic(path, png, overwrite=overwrite)


def _load_png(path: Path) -> tuple[np.ndarray, CipherMetadata]:
    data = read_bounded(path, MAX_IMAGE_BYTES, "ciphertext")
    text = png_text(data, META_KEYWORD, path)
    if text is None:
        raise InputError(f"{path}: no keras_dkg metadata; not a ciphertext written by dkg-encrypt")
    meta = _metadata(text, path)
    return _restore_shape(image_from_bytes(data, path), meta), meta


# ---- TIFF: ImageDescription tag ---------------------------------------------------------

def _tiff_layout(data: bytes, label) -> tuple[str, int]:
    """(struct byte-order prefix, offset of the first IFD) of a classic TIFF."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8 or struct.unpack(order + "H", data[2:4])[0] != 42:
        raise InputError(f"{label}: not a classic TIFF file")
    return order, struct.unpack(order + "I", data[4:8])[0]


def _tiff_entries(data: bytes, order: str, ifd: int, label) -> tuple[list[bytes], bytes]:
    try:
        (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
        entries = [data[ifd + 2 + 12 * i:ifd + 14 + 12 * i] for i in range(count)]
        next_ifd = data[ifd + 2 + 12 * count:ifd + 6 + 12 * count]
    except struct.error as exc:
        raise InputError(f"{label}: damaged TIFF directory") from exc
    if len(next_ifd) != 4 or any(len(entry) != 12 for entry in entries):
        raise InputError(f"{label}: truncated TIFF directory")
    return entries, next_ifd


def tiff_with_description(tiff: bytes, text: str) -> bytes:
    """Append the text and a copy of the first IFD with ImageDescription set; repoint the header."""
    order, ifd = _tiff_layout(tiff, "encoded TIFF")
    entries, next_ifd = _tiff_entries(tiff, order, ifd, "encoded TIFF")
    entries = [e for e in entries if struct.unpack(order + "H", e[:2])[0] != TIFF_DESCRIPTION_TAG]
    out = bytearray(tiff)
    out += b"\0" * (len(out) % 2)
    text_bytes = text.encode("ascii") + b"\0"
    entries.append(struct.pack(order + "HHII", TIFF_DESCRIPTION_TAG, TIFF_ASCII, len(text_bytes), len(out)))
    out += text_bytes + b"\0" * (len(text_bytes) % 2)
    entries.sort(key=lambda e: struct.unpack(order + "H", e[:2])[0])
    new_ifd = len(out)
    out += struct.pack(order + "H", len(entries)) + b"".join(entries) + next_ifd
    out[4:8] = struct.pack(order + "I", new_ifd)
    return bytes(out)


def tiff_description(data: bytes, label) -> str | None:
    order, ifd = _tiff_layout(data, label)
    for entry in _tiff_entries(data, order, ifd, label)[0]:
        tag, kind, count, value = struct.unpack(order + "HHII", entry)
        if tag == TIFF_DESCRIPTION_TAG and kind == TIFF_ASCII:
            raw = entry[8:8 + count] if count <= 4 else data[value:value + count]
            return raw.rstrip(b"\0").decode("ascii", "replace")
    return None


def _save_tiff(path: Path, array, meta: CipherMetadata, *, overwrite: bool = False, source=None) -> None:
    text = META_KEYWORD + " " + meta.to_json()
    write_bytes_atomic(path, tiff_with_description(encode_lossless(array, path.suffix), text), overwrite=overwrite)


def _load_tiff(path: Path) -> tuple[np.ndarray, CipherMetadata]:
    data = read_bounded(path, MAX_IMAGE_BYTES, "ciphertext")
    text = tiff_description(data, path)
    if text is None or not text.startswith(META_KEYWORD + " "):
        raise InputError(f"{path}: no keras_dkg metadata; not a ciphertext written by dkg-encrypt")
    meta = _metadata(text[len(META_KEYWORD) + 1:], path)
    return _restore_shape(image_from_bytes(data, path), meta), meta


register_container([".png"], Container(save=_save_png, load=_load_png, check=_check_raster))
register_container([".tif", ".tiff"], Container(save=_save_tiff, load=_load_tiff, check=_check_raster))


# --------------------------------------------------------------------------- handles (runtime.formats)


@dataclass
class RasterPlaintext:
    """A PNG/TIFF (or a DICOM's pixels) read once for encryption; written as PNG or TIFF by suffix."""

    path: Path
    array: np.ndarray
    context: bytes = b""

    def save_ciphertext(self, target: str | os.PathLike, array: np.ndarray, meta: CipherMetadata,
                        overwrite: bool = False) -> Path:
        return save_ciphertext(target, array, meta, overwrite=overwrite, source=self.path)


@dataclass
class RasterCiphertext:
    """A PNG/TIFF ciphertext: its pixels and metadata; the plaintext is written as PNG or TIFF."""

    path: Path
    array: np.ndarray
    meta: CipherMetadata
    context: bytes = b""

    def write_plaintext(self, target: str | os.PathLike, array: np.ndarray, overwrite: bool = False,
                        as_recorded: bool = False) -> Path:
        return write_image(Path(target), array, overwrite=overwrite)


def open_plaintext(path: str | os.PathLike) -> RasterPlaintext:
    """A PNG/TIFF plaintext, read once and decoded exactly (read_plaintext)."""
    return RasterPlaintext(Path(path), read_plaintext(path))


def pixels_plaintext(path: str | os.PathLike, array: np.ndarray) -> RasterPlaintext:
    """Another format's pixels (a DICOM file's) to be written as a PNG/TIFF ciphertext."""
    return RasterPlaintext(Path(path), array)


def open_ciphertext(path: str | os.PathLike) -> RasterCiphertext:
    array, meta = load_ciphertext(path)
    return RasterCiphertext(Path(path), array, meta)
