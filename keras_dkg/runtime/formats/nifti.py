"""NIfTI-1 and NIfTI-2 volumes (`.nii`, `.nii.gz`): the stored voxel bytes encrypted as stored.

nibabel (the `[nifti]` extra) parses and checks the header; the file itself is handled as
bytes, so nothing nibabel would rewrite on saving (vox_offset, qform/sform codes,
scl_slope/inter, padding, extensions, trailing bytes) ever changes:

* plaintext: the voxel block (vox_offset … vox_offset + voxels × bitpix/8) as a 2-D uint8
  array, dim1 rows × the rest (every dtype, 3-D and 4-D, either byte order: the cipher
  works on stored bytes). One key covers the whole volume. Bytes after the voxel block
  are accepted only as zero padding of at most `inputs.MAX_PADDING_BYTES` (anything else
  would stay unencrypted: a header saying 5 slices over a file of 10 is refused), and a
  `.nii.gz` is inflated only that far past what its header declares (a bomb of zeros is
  refused after reading what the header declares plus the padding, not all of it).
* ciphertext: the same file with the voxel block encrypted and one header extension
  (ecode 6, "comment") appended after the existing ones, holding ``keras_dkg.cipher\0``
  + the cipher metadata JSON; vox_offset moves by the extension's size and the extension
  flag is set. The original header and extensions — everything before the voxels — and
  the bytes after them are the context bound into the tag, so a changed header or voxel
  fails authentication.
* decryption restores the original bytes exactly; `.nii.gz` in → `.nii.gz` out
  (gzip, mtime 0: the decompressed file is bit-identical, the gzip stream need not be).

Refused with a clear message, never changed: NIfTI pairs (`.hdr`/`.img`), a header that
claims more voxel bytes than the file holds (or fewer: undeclared bytes that are not zero
padding), a vox_offset that is not a finite whole offset, dims whose product overflows,
extensions that do not end at vox_offset, an already-encrypted volume, damaged gzip.

The voxel values as a viewer shows them (`volume_array`) serve training and seeds
(formats.sources).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from keras_dkg.common import short_error
from keras_dkg.errors import AlreadyEncryptedError, InputError, IntegrityError, OutputError
from keras_dkg.runtime.ciphers.metadata import CipherMetadata
from keras_dkg.runtime.guards.atomic import write_bytes_atomic
from keras_dkg.runtime.guards.inputs import (
    MAX_IMAGE_BYTES,
    MAX_PADDING_BYTES,
    check_padding,
    read_bounded,
)

SUFFIXES = (".nii", ".nii.gz")


PAIR_SUFFIXES = (".hdr", ".img", ".hdr.gz", ".img.gz")
EXTENSION_CODE = 6  # NIfTI "comment" extension: readers show or skip it
MARK = b"keras_dkg.cipher\0"
INSTALL_HINT = "pip install 'keras-dkg[nifti]'"


# version -> (header size, offset and struct code of vox_offset, magic offset, magic)
VERSIONS = {1: (348, 108, "f", 344, (b"n+1\0",)), 2: (540, 168, "q", 4, (b"n+2\0\r\n\x1a\n",))}


# version -> (offset and struct code of dim[8], offset of bitpix)
DIMS = {1: (40, "8h", 72), 2: (16, "8q", 14)}
PAIR_MAGICS = (b"ni1\0", b"ni2\0\r\n\x1a\n")


def is_nifti_name(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return name.endswith(SUFFIXES)


def _nibabel():
    try:
        import nibabel
    except ImportError as exc:
        raise InputError(f"NIfTI volumes need nibabel: {INSTALL_HINT}") from exc
    return nibabel


@dataclass(frozen=True)
class Layout:
    """Where a single-file NIfTI keeps its parts (byte offsets into the uncompressed file)."""

    version: int
    endian: str  # "<" or ">"
    header_size: int
    extensions_end: int  # == vox_offset: the extensions end where the voxels start
    voxel_bytes: int
    dtype: str
    shape: tuple[int, ...]

    @property
    def vox_offset(self) -> int:
        return self.extensions_end

    def voxels(self, data: bytes) -> np.ndarray:
        """The stored voxel bytes as a 2-D uint8 array: dim1 rows × the rest."""
        block = np.frombuffer(data, np.uint8, self.voxel_bytes, self.vox_offset)
        rows = self.shape[0]
        return block.reshape(rows, self.voxel_bytes // rows).copy()


def read_bytes(path: Path, what: str, padding: int | None = MAX_PADDING_BYTES) -> bytes:
    """The uncompressed bytes of a `.nii` / `.nii.gz` (bounded, damaged gzip refused)."""
    return read_file(path, what, padding)[1]


def read_file(path: Path, what: str, padding: int | None = MAX_PADDING_BYTES) -> tuple[bytes, bytes]:
    """(the file's bytes as stored, uncompressed), from one bounded read.

    A `.nii.gz` is inflated at most `padding` bytes past the end its header declares
    (None: up to MAX_IMAGE_BYTES, for ciphertexts written before that bound existed).
    """
    label = str(path)
    lower = path.name.lower()
    if lower.endswith(PAIR_SUFFIXES):
        raise InputError(f"{label}: NIfTI pairs (.hdr/.img) are not supported; convert the pair to one .nii "
                         "(e.g. nibabel.save(nibabel.load(hdr), 'x.nii')) and encrypt that")
    raw = data = read_bounded(path, MAX_IMAGE_BYTES, what)
    if not data:
        raise InputError(f"{label}: file is empty (0 bytes)")
    if lower.endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = _inflate(raw, label, padding)
    return raw, data


def _inflate(raw: bytes, label: str, padding: int | None) -> bytes:
    """A gzip stream's bytes, read no further than its NIfTI header's declared end + `padding`."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            head = stream.read(VERSIONS[2][0] + 4)
            limit = MAX_IMAGE_BYTES
            if padding is not None:
                declared = declared_end(head, label)
                limit = min(limit, declared + padding)
            data = head + stream.read(max(0, limit + 1 - len(head)))
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{label}: damaged or truncated gzip ({exc})") from exc
    if len(data) > limit:
        if limit == MAX_IMAGE_BYTES:
            raise InputError(f"{label}: uncompressed volume is over {MAX_IMAGE_BYTES} bytes")
        raise InputError(f"{label}: inflates past the {declared} bytes its header declares plus {padding} bytes of "
                         "padding (a decompression bomb?); refused after reading that much")
    return data


def _vox_offset(data: bytes, version: int, endian: str, label: str) -> int:
    """The header's vox_offset as a byte offset; InputError for NaN, infinities and fractions."""
    header_size, offset_at, code, _, _ = VERSIONS[version]
    (value,) = struct.unpack_from(f"{endian}{code}", data, offset_at)
    if not math.isfinite(value) or value != int(value) or value < header_size + 4:
        raise InputError(f"{label}: vox_offset {value} is not a whole byte offset after the header")
    return int(value)


def declared_end(data: bytes, label: str) -> int:
    """vox_offset + dim[1]·…·dim[dim[0]] · bitpix/8 from the raw header (exact integers: no overflow)."""
    version, endian = _version(data, label)
    header_size = VERSIONS[version][0]
    if len(data) < header_size + 4:
        raise InputError(f"{label}: truncated NIfTI header ({len(data)} bytes)")
    dim_at, code, bitpix_at = DIMS[version]
    dims = struct.unpack_from(f"{endian}{code}", data, dim_at)
    (bitpix,) = struct.unpack_from(f"{endian}h", data, bitpix_at)
    if not 1 <= dims[0] <= 7 or min(dims[1:dims[0] + 1]) < 1 or bitpix < 1:
        raise InputError(f"{label}: not a valid NIfTI-{version} header (dim {list(dims)}, bitpix {bitpix})")
    return _vox_offset(data, version, endian, label) + math.prod(dims[1:dims[0] + 1]) * -(-bitpix // 8)


def _version(data: bytes, label: str) -> tuple[int, str]:
    if len(data) < 4:
        raise InputError(f"{label}: not a NIfTI file (too short for a header)")
    for endian in ("<", ">"):
        size = struct.unpack(f"{endian}i", data[:4])[0]
        for version, (header_size, *_rest) in VERSIONS.items():
            if size == header_size:
                return version, endian
    raise InputError(f"{label}: not a NIfTI-1/NIfTI-2 file (sizeof_hdr is neither 348 nor 540)")


def parse(data: bytes, label: str) -> Layout:
    """Check a single-file NIfTI's header with nibabel and locate its parts."""
    nibabel = _nibabel()
    version, endian = _version(data, label)
    header_size, _, _, magic_at, magics = VERSIONS[version]
    magic = data[magic_at:magic_at + len(magics[0])]
    if magic in PAIR_MAGICS:
        raise InputError(f"{label}: the header of a NIfTI pair (.hdr/.img); only single-file .nii is supported")
    if magic not in magics:
        raise InputError(f"{label}: not a single-file NIfTI-{version} (magic {magic!r})")
    if len(data) < header_size + 4:
        raise InputError(f"{label}: truncated NIfTI header ({len(data)} bytes)")
    vox_offset = _vox_offset(data, version, endian, label)  # before nibabel, which would log about it
    header_class = nibabel.Nifti1Header if version == 1 else nibabel.Nifti2Header
    from nibabel.imageglobals import LoggingOutputSuppressor

    try:
        with LoggingOutputSuppressor():  # its checks log to stderr; an error here is our one line
            header = header_class.from_fileobj(io.BytesIO(data), check=True)  # reads the extensions too
        dtype = header.get_data_dtype()
        shape = tuple(int(v) for v in header.get_data_shape())
    except Exception as exc:  # nibabel raises HeaderDataError, ValueError, TypeError, ...
        raise InputError(f"{label}: not a valid NIfTI-{version} header ({exc})") from exc
    if not shape or min(shape) < 1 or dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise InputError(f"{label}: cannot encrypt a NIfTI volume of shape {shape} and dtype {dtype} "
                         "(int8/16/32/64, uint8/16/32/64 and float32/64 are supported)")
    voxel_bytes = math.prod(shape) * dtype.itemsize  # exact: NIfTI-2 dims can overflow int64
    if vox_offset + voxel_bytes > len(data):
        raise InputError(f"{label}: the header claims {voxel_bytes} voxel bytes from offset {vox_offset}, "
                         f"the file holds {max(0, len(data) - vox_offset)} (truncated?)")
    _check_extensions(data, header_size, vox_offset, endian, label)
    return Layout(version, endian, header_size, vox_offset, voxel_bytes, dtype.str, shape)


def _extensions(data: bytes, start: int, end: int, endian: str, label: str) -> list[tuple[int, int, int]]:
    """(offset, esize, ecode) of each extension between `start` and `end`."""
    found, offset = [], start
    while offset < end:
        if offset + 8 > end:
            raise InputError(f"{label}: NIfTI extensions do not end at vox_offset; refused rather than rewritten")
        esize, ecode = struct.unpack(f"{endian}ii", data[offset:offset + 8])
        if esize < 16 or esize % 16 or offset + esize > end:
            raise InputError(f"{label}: a NIfTI extension of size {esize} at byte {offset} does not fit "
                             "before vox_offset; refused rather than rewritten")
        found.append((offset, esize, ecode))
        offset += esize
    return found


def _check_extensions(data: bytes, header_size: int, vox_offset: int, endian: str, label: str) -> None:
    flag = data[header_size]
    if flag == 0:
        if vox_offset != header_size + 4:
            raise InputError(f"{label}: {vox_offset - header_size - 4} unused bytes before the voxels and no "
                             "extensions; refused rather than rewritten")
        return
    _extensions(data, header_size + 4, vox_offset, endian, label)


def _our_extension(data: bytes, layout: Layout) -> tuple[int, int] | None:
    """(offset, size) of the keras_dkg extension, if this volume carries one."""
    if data[layout.header_size] == 0:
        return None
    for offset, esize, ecode in _extensions(data, layout.header_size + 4, layout.vox_offset, layout.endian, ""):
        if ecode == EXTENSION_CODE and data[offset + 8:offset + 8 + len(MARK)] == MARK:
            return offset, esize
    return None


def _set_vox_offset(prefix: bytearray, layout: Layout, value: int) -> None:
    _, offset_at, code, _, _ = VERSIONS[layout.version]
    struct.pack_into(f"{layout.endian}{code}", prefix, offset_at, value)


# Ciphertext voxels are random bytes that deflate cannot shrink: stored blocks (level 0) give a
# smaller .nii.gz than level 6 (17.857 vs 17.861 MB for a 240x240x155 int16 volume) in 1/20 of
# the time (0.02 vs 0.5-0.7 s); decrypted plaintexts keep level 6.
CIPHERTEXT_GZIP_LEVEL, PLAINTEXT_GZIP_LEVEL = 0, 6


def _write(path: Path, data: bytes, overwrite: bool, level: int = PLAINTEXT_GZIP_LEVEL) -> Path:
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=level, mtime=0)
    return write_bytes_atomic(path, data, overwrite=overwrite)


def _check_target(target: Path, what: str) -> None:
    if not is_nifti_name(target):
        raise OutputError(f"{target}: a NIfTI {what} is written as .nii or .nii.gz")


@dataclass
class _Volume:
    """A volume file read once: its bytes, where its parts are, and the original bytes before the voxels."""

    path: Path
    data: bytes
    layout: Layout

    @property
    def original(self) -> bytes:
        """The plaintext file's bytes before the voxels (header and extensions)."""
        return self.data[:self.layout.vox_offset]

    @property
    def trailing(self) -> bytes:
        return self.data[self.layout.vox_offset + self.layout.voxel_bytes:]

    @cached_property
    def array(self) -> np.ndarray:
        """The stored voxel bytes (dim1 rows × the rest, uint8)."""
        return self.layout.voxels(self.data)

    @cached_property
    def context(self) -> bytes:
        """Everything but the voxels, as the plaintext had it: header, extensions, trailing bytes."""
        return b"keras_dkg/nifti-context/v1\0" + self.original + self.trailing


class NiftiPlaintext(_Volume):
    """A plaintext volume: `array`, `context`, and `save_ciphertext`."""

    def save_ciphertext(self, target: str | os.PathLike, array: np.ndarray, meta: CipherMetadata,
                        overwrite: bool = False) -> Path:
        target = Path(target)
        _check_target(target, "ciphertext")
        layout = self.layout
        flag = self.data[layout.header_size:layout.header_size + 4]  # kept, so decryption restores it
        body = MARK + flag.hex().encode("ascii") + meta.to_json().encode("utf-8")
        esize = -(-(len(body) + 8) // 16) * 16
        extension = struct.pack(f"{layout.endian}ii", esize, EXTENSION_CODE) + body.ljust(esize - 8, b"\0")
        prefix = bytearray(self.original)
        prefix[layout.header_size:layout.header_size + 4] = b"\x01\0\0\0"
        _set_vox_offset(prefix, layout, layout.vox_offset + esize)
        cipher_bytes = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
        if len(cipher_bytes) != layout.voxel_bytes:
            raise OutputError(f"{target}: ciphertext has {len(cipher_bytes)} bytes, the volume {layout.voxel_bytes}")
        return _write(target, bytes(prefix) + extension + cipher_bytes + self.trailing, overwrite,
                      CIPHERTEXT_GZIP_LEVEL)


@dataclass
class NiftiCiphertext(_Volume):
    """An encrypted volume: `array` (encrypted voxel bytes), `meta`, `context`, and `write_plaintext`."""

    meta: CipherMetadata | None = None
    before_voxels: bytes = b""  # the plaintext's header and extensions, rebuilt from ours

    @property
    def original(self) -> bytes:
        return self.before_voxels

    def write_plaintext(self, target: str | os.PathLike, array: np.ndarray, overwrite: bool = False,
                        as_recorded: bool = False) -> Path:
        target = Path(target)
        _check_target(target, "plaintext")
        plain = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
        return _write(target, self.original + plain + self.trailing, overwrite)


def open_plaintext(path: str | os.PathLike) -> NiftiPlaintext:
    """Read a plaintext volume; AlreadyEncryptedError if it is one of our ciphertexts."""
    source = Path(path)
    data = read_bytes(source, "plaintext")
    layout = parse(data, str(source))
    if _our_extension(data, layout) is not None:
        raise AlreadyEncryptedError(f"{source}: already a keras_dkg ciphertext (NIfTI with a keras_dkg.cipher "
                                    "extension); decrypt it instead of encrypting it again")
    shape = "×".join(str(n) for n in layout.shape)
    check_padding(str(source), memoryview(data)[layout.vox_offset + layout.voxel_bytes:],
                  f"{layout.voxel_bytes} voxel bytes the header declares (dim {shape}, {np.dtype(layout.dtype).name})",
                  "correct dim in its header, or remove the extra bytes")
    return NiftiPlaintext(source, data, layout)


def open_ciphertext(path: str | os.PathLike) -> NiftiCiphertext:
    """Read an encrypted volume and rebuild the original header bytes it came from."""
    source = Path(path)
    data = read_bytes(source, "ciphertext", padding=None)  # older ciphertexts may hold any trailing bytes
    layout = parse(data, str(source))
    found = _our_extension(data, layout)
    if found is None:
        raise InputError(f"{source}: no keras_dkg.cipher extension (not encrypted by keras_dkg?)")
    offset, esize = found
    if offset + esize != layout.vox_offset:
        raise IntegrityError(f"{source}: the keras_dkg.cipher extension is not the last one (altered?)")
    body = data[offset + 8 + len(MARK):offset + esize].rstrip(b"\0")
    try:
        flag = bytes.fromhex(body[:8].decode("ascii"))
        meta = CipherMetadata.from_json(body[8:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, IntegrityError) as exc:
        raise IntegrityError(f"{source}: damaged keras_dkg.cipher extension ({exc})") from exc
    original = bytearray(data[:offset])
    original[layout.header_size:layout.header_size + 4] = flag
    _set_vox_offset(original, layout, offset)
    return NiftiCiphertext(source, data, layout, meta, bytes(original))


def volume_array(path: Path, what: str = "volume") -> tuple[np.ndarray, bytes]:
    """The scaled voxel values (what a viewer shows), spatial axes first, time last, and the file's bytes."""
    nibabel = _nibabel()
    raw, data = read_file(path, what)
    layout = parse(data, str(path))  # the same checks as for encryption, so errors read the same
    image_class = nibabel.Nifti1Image if layout.version == 1 else nibabel.Nifti2Image
    try:
        values = np.asarray(image_class.from_bytes(data).dataobj, dtype=np.float64)
    except Exception as exc:  # nibabel's own error types
        raise InputError(f"{path}: cannot read the volume's voxels ({short_error(exc)})") from exc
    if values.ndim < 3:
        values = values.reshape(*values.shape, *([1] * (3 - values.ndim)))
    return values.reshape(*values.shape[:3], -1), raw  # x, y, z, volumes
