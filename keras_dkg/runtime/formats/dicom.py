"""DICOM as a cipher container: encrypt the pixel samples, keep every other element.

pydicom is optional (`pip install 'keras-dkg[dicom]'`) and imported lazily, so
`keras_dkg.runtime` imports without it; the format registry (formats.registry) imports this
module when a DICOM file is first opened.
The rules (docs/formats.md):

* **What is encrypted.** The Pixel Data (7FE0,0010) bytes that hold the image samples,
  exactly as stored: 12-bit samples in 16-bit words keep their unused high bits, signed
  samples their two's-complement bytes; any bit depth (1, 8, 16, 32), sample count,
  photometric interpretation, planar configuration and frame count works unchanged. The
  cipher sees them as one image: the frames (and colour planes, for planar
  configuration 1) stacked vertically, `(frames·rows, columns[, samples])` with the
  stored integer type (`uint8` rows for 1-bit data), so a single-frame H×W 16-bit slice
  gets exactly `key_size_for((H, W), uint16)` and a multi-frame object one key of its
  stacked size: one key, one nonce, one tag per file.
* **Bytes after the samples** (the pad byte of an odd-length value, or zero padding some
  writers leave, at most `inputs.MAX_PADDING_BYTES`) are not samples: they stay as they
  are, are bound into the tag and are restored exactly. Any other bytes beyond the image
  the elements describe (Pixel Data twice Rows×Columns×frames) would stay unencrypted:
  such a file is refused.
* **Everything else is authenticated.** A SHA-256 of the preamble, the file meta (group
  length aside) and every data element but the pixel data and our metadata element,
  serialised Explicit VR Little Endian, plus the trailing bytes, is the `context` of the
  tag, so editing any element (a name, a window, a private tag, a sequence item) is
  detected on decryption.
* **Where the metadata goes.** A private block in group 0009 reserved by the creator
  "KERAS_DKG 1": (0009,xx01) UT = the CipherMetadata JSON, (0009,xx02) UT = what
  decryption restores (original transfer syntax, decoder used, byte counts).
* **Transfer syntaxes.** Compressed (encapsulated) pixel data is decoded first — RLE by
  pydicom itself, JPEG / JPEG-LS / JPEG 2000 by an installed plugin (Pillow, pylibjpeg,
  gdcm, pyjpegls) — otherwise refused with the syntax's name and what to install;
  big-endian files (retired) are refused. The ciphertext is always written as Explicit VR
  Little Endian, uncompressed. Decryption gives back the original transfer syntax when it
  was Implicit/Explicit VR Little Endian or Deflated, otherwise the decoded pixels as
  Explicit VR Little Endian.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from keras_dkg.common import short_error
from keras_dkg.errors import (
    AlreadyEncryptedError,
    DkgError,
    InputError,
    IntegrityError,
    OutputError,
)
from keras_dkg.runtime.ciphers.metadata import PLAINTEXT_DTYPES, CipherMetadata, key_size_for
from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array
from keras_dkg.runtime.formats.images import refuse_dicom_bomb, write_image
from keras_dkg.runtime.guards.atomic import write_bytes_atomic
from keras_dkg.runtime.guards.inputs import check_padding

PRIVATE_GROUP = 0x0009
PRIVATE_CREATOR = "KERAS_DKG 1"
METADATA_ELEMENT = 0x01  # (0009,xx01) UT: CipherMetadata JSON (the one element outside the context)
INFO_ELEMENT = 0x02  # (0009,xx02) UT: container info JSON (inside the context)
CONTEXT_LABEL = b"keras_dkg/dicom-context/v1\x00"
CONTAINER_FORMAT = "keras_dkg.dicom/1"
PIXEL_DATA = 0x7FE00010
FILE_META_GROUP_LENGTH = 0x00020000
TRANSFER_SYNTAX = 0x00020010
FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)  # Float / Double Float Pixel Data
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
# Transfer syntaxes a decrypted file is written back in (uid -> implicit VR?); any other
# (compressed) original comes back decoded, as Explicit VR Little Endian.
RESTORABLE_SYNTAXES = {IMPLICIT_LE: True, EXPLICIT_LE: False, DEFLATED_LE: False}
DECODER_HINT = (
    "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (JPEG, JPEG-LS, JPEG 2000), "
    "or python-gdcm"
)


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - exercised where pydicom is absent
        raise InputError("DICOM files need pydicom; pip install 'keras-dkg[dicom]'") from exc
    return pydicom


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class PixelLayout:
    """How the image samples sit in Pixel Data: the cipher's view of them."""

    shape: tuple[int, ...]
    dtype: str
    image_bytes: int  # bytes holding samples; anything after them is "trailing"

    def view(self, data: bytes | np.ndarray) -> np.ndarray:
        """The first `image_bytes` of `data` as the (little-endian) sample array."""
        raw = np.frombuffer(data, dtype=np.uint8, count=self.image_bytes)
        return raw.view(np.dtype(self.dtype).newbyteorder("<")).reshape(self.shape).astype(self.dtype, copy=False)


def pixel_layout(dataset) -> PixelLayout:
    """The stacked-frames layout of a native (uncompressed) dataset's samples."""
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    bits = int(dataset.BitsAllocated)
    signed = int(dataset.get("PixelRepresentation", 0) or 0) == 1
    if min(rows, columns, samples, frames, bits) <= 0:
        raise ValueError(f"image of {frames}x{rows}x{columns}x{samples}, {bits} bits has no pixels")
    if samples == 3 and str(dataset.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
        samples = 2  # native 4:2:2 stores Y1 Y2 Cb Cr: two samples per pixel
    planar = samples > 1 and int(dataset.get("PlanarConfiguration", 0) or 0) == 1
    image_bytes = math.ceil(rows * columns * samples * frames * bits / 8)
    dtype = f"{'' if signed else 'u'}int{bits}"
    if bits % 8 == 0 and dtype in PLAINTEXT_DTYPES:
        if samples == 1:
            shape: tuple[int, ...] = (frames * rows, columns)
        elif planar:
            shape = (frames * samples * rows, columns)
        else:
            shape = (frames * rows, columns, samples)
        return PixelLayout(shape, dtype, image_bytes)
    # 1-bit (or 64-bit) data: the bytes as an image as high as the stacked frames allow
    height = frames * rows
    while image_bytes % height:
        height -= 1
    return PixelLayout((height, image_bytes // height), "uint8", image_bytes)


# --------------------------------------------------------------------------- reading


@dataclass
class DicomPlaintext:
    """A readable DICOM image: native `dataset`, its Pixel Data bytes, their layout, `info`."""

    dataset: Any
    pixel_bytes: bytes
    layout: PixelLayout
    info: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def nbytes(self) -> int:
        return len(self.pixel_bytes)

    @property
    def trailing(self) -> bytes:
        return self.pixel_bytes[self.layout.image_bytes:]

    def plain_array(self) -> np.ndarray:
        """What the cipher encrypts (see the module docstring)."""
        return self.layout.view(self.pixel_bytes)

    def key_size(self) -> tuple[int, int]:
        return key_size_for(self.layout.shape, self.layout.dtype)


@dataclass
class DicomCiphertext:
    """An encrypted DICOM file as read back."""

    dataset: Any
    cipher_pixels: np.ndarray
    meta: CipherMetadata
    info: dict
    context: bytes
    path: Path | None = None


def _label(path: Path | None) -> str:
    return str(path) if path is not None else "<DICOM bytes>"


def _short_exc(exc: BaseException) -> str:
    return short_error(exc, 300, sep="; ")  # pydicom's messages list one cause a line


def _read_dataset(source: Path | bytes, label: str):
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    def read(force: bool):
        handle = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(handle, force=force)

    try:
        return read(False)
    except InvalidDicomError:
        pass  # no 128-byte preamble + "DICM": accept a bare dataset only if it is an image
    except FileNotFoundError as exc:
        raise InputError(f"{label}: no such file") from exc
    except OSError as exc:
        raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InputError(f"{label}: not a readable DICOM file ({_short_exc(exc)})") from exc
    try:
        dataset = read(True)
        if PIXEL_DATA not in dataset or "Rows" not in dataset:
            raise ValueError("no image elements")
        return dataset
    except Exception as exc:
        raise InputError(f"{label}: not a DICOM file (no DICM header and no image dataset)") from exc


def _match_encoding(dataset) -> None:
    """Some files say Explicit VR but are encoded Implicit (pydicom reads them anyway);
    record the encoding really read, so that writing converts their raw elements."""
    implicit, little = getattr(dataset, "original_encoding", (None, None))
    for tag in dataset.keys():
        element = dataset.get_item(tag)
        if getattr(element, "is_raw", False):
            if element.is_implicit_VR != implicit:
                dataset.set_original_encoding(element.is_implicit_VR, little, dataset.original_character_set)
            return


def _transfer_syntax(dataset) -> str:
    file_meta = getattr(dataset, "file_meta", None)
    uid = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if uid:
        return str(uid)
    implicit, little = getattr(dataset, "original_encoding", (None, None))
    if little is False:
        return BIG_ENDIAN
    return IMPLICIT_LE if implicit else EXPLICIT_LE


def _syntax_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


def find_private_block(dataset, create: bool = False):
    """Our private block in group 0009, or None (created when `create`)."""
    try:
        return dataset.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=create)
    except KeyError:
        return None


def _decode_compressed(dataset, uid: str, label: str) -> str:
    """Decode encapsulated pixel data in place; return the decoder plugin(s) available."""
    from pydicom.pixels import get_decoder

    syntax = _syntax_name(uid)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise InputError(
            f"{label}: pixel data is compressed as {syntax}, which no pydicom decoder supports; "
            "decompress the file first (e.g. dcmdjpeg, gdcmconv --raw)"
        ) from exc
    if not decoder.is_available:
        raise InputError(
            f"{label}: pixel data is compressed as {syntax} and no decoder for it is installed; "
            f"install one ({DECODER_HINT}) or decompress the file first"
        )
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    plugins = ",".join(decoder.available_plugins)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset.decompress(as_rgb=False, generate_instance_uid=False)
    except Exception as exc:
        reason = _short_exc(exc).replace("Unable to decode as exceptions were raised by all available plugins:; ", "")
        raise InputError(
            f"{label}: cannot decode {syntax} pixel data with the installed decoder(s) {plugins} "
            f"({reason}); install another ({DECODER_HINT}) or decompress the file first"
        ) from exc
    # pydicom leaves decoded 4:2:2 data labelled YBR_FULL_422, but the decoded samples are
    # full-resolution YBR; native YBR_FULL_422 would mean subsampled storage.
    if photometric == "YBR_FULL_422":
        full = math.prod((int(dataset.Rows), int(dataset.Columns), 3, int(dataset.get("NumberOfFrames", 1) or 1)))
        if len(dataset.PixelData) >= full * int(dataset.BitsAllocated) // 8:
            dataset.PhotometricInterpretation = "YBR_FULL"
    return plugins


def read_dicom(source: str | os.PathLike | bytes, *, label: str | None = None) -> DicomPlaintext:
    """Read a DICOM image to encrypt: decode compressed pixel data, check it, refuse what we cannot keep."""
    path = None if isinstance(source, bytes | bytearray) else Path(source)
    name = label or _label(path)
    if path is not None:
        if not path.is_file():
            raise InputError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise InputError(f"{name}: file is empty (0 bytes)")
    dataset = _read_dataset(bytes(source) if path is None else path, name)
    _match_encoding(dataset)
    if find_private_block(dataset) is not None:
        raise AlreadyEncryptedError(
            f"{name}: already encrypted by keras_dkg (private creator {PRIVATE_CREATOR!r} present); "
            "decrypt it instead of encrypting it again"
        )
    for tag in FLOAT_PIXEL_TAGS:
        if tag in dataset:
            raise InputError(f"{name}: float pixel data (7FE0,{tag & 0xFFFF:04X}) is not supported")
    if PIXEL_DATA not in dataset:
        raise InputError(f"{name}: no Pixel Data (7FE0,0010) element; not an image")
    missing = [k for k in ("Rows", "Columns", "BitsAllocated") if k not in dataset]
    if missing:
        raise InputError(f"{name}: image is missing required element(s) {', '.join(missing)}")
    refuse_dicom_bomb(name, dataset)  # before a decoder allocates Rows x Columns x frames
    uid = _transfer_syntax(dataset)
    if uid == BIG_ENDIAN or getattr(dataset, "original_encoding", (None, True))[1] is False:
        raise InputError(
            f"{name}: transfer syntax {_syntax_name(uid)} (big endian, retired) is not supported; "
            "convert it to Explicit VR Little Endian first (e.g. dcmconv +te in.dcm out.dcm)"
        )
    from pydicom.uid import UID

    info: dict[str, Any] = {"format": CONTAINER_FORMAT, "transfer_syntax": uid, "decoded_by": None}
    if UID(uid).is_encapsulated:
        info["decoded_by"] = _decode_compressed(dataset, uid, name)
    try:
        pixel_bytes = bytes(dataset.PixelData)
        layout = pixel_layout(dataset)
    except Exception as exc:
        raise InputError(f"{name}: damaged image description or pixel data ({_short_exc(exc)})") from exc
    if len(pixel_bytes) < layout.image_bytes:
        raise InputError(
            f"{name}: Pixel Data holds {len(pixel_bytes)} bytes but the image needs "
            f"{layout.image_bytes} (truncated or damaged)"
        )
    _check_extent(name, dataset, pixel_bytes, layout)
    info.update(pixel_bytes=len(pixel_bytes), image_bytes=layout.image_bytes)
    return DicomPlaintext(dataset, pixel_bytes, layout, info, path)


def _check_extent(name: str, dataset, pixel_bytes: bytes, layout: PixelLayout) -> None:
    """Pixel Data longer than the image its elements describe: only the pad byte of an odd-length
    value or zero padding may follow the samples; anything else would be left unencrypted."""
    extra = memoryview(pixel_bytes)[layout.image_bytes:]
    if len(extra) == 1 and layout.image_bytes % 2:
        return  # the pad byte that makes an odd-length value even (PS3.5 8.1.1)
    described = (f"{int(dataset.get('NumberOfFrames', 1) or 1)} frame(s) of {dataset.Rows}×{dataset.Columns}, "
                 f"{int(dataset.get('SamplesPerPixel', 1) or 1)} sample(s) of {dataset.BitsAllocated} bits")
    check_padding(name, extra, f"{layout.image_bytes} bytes of samples the image elements describe ({described})",
                  "correct Rows, Columns, NumberOfFrames or BitsAllocated, or remove the extra Pixel Data bytes")


# --------------------------------------------------------------------------- context


def _serialise_elements(dataset, skip: set[int]) -> bytes:
    """The dataset's elements minus `skip`, encoded Explicit VR LE by pydicom (raw values kept)."""
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    # Copy the elements as they are: raw ones stay raw, so the bytes read are what is
    # hashed (Dataset.__setitem__ would decode private ones).
    subset = Dataset({tag: dataset.get_item(tag) for tag in dataset.keys() if int(tag) not in skip})
    encoding = getattr(dataset, "original_encoding", (None, None))
    if None not in encoding:
        subset.set_original_encoding(encoding[0], encoding[1], getattr(dataset, "original_character_set", None))
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_dataset(buffer, subset)
    return buffer.getvalue()


def _block_tags(dataset) -> tuple[set[int], int | None]:
    """(all tags of our private block, its metadata element's tag)."""
    block = find_private_block(dataset)
    if block is None:
        return set(), None
    tags = {(PRIVATE_GROUP << 16) | (block.block_start >> 8)}
    tags.update(int(t) for t in dataset.keys()
                if t.group == PRIVATE_GROUP and (t.element & 0xFF00) == block.block_start)
    return tags, int(block.get_tag(METADATA_ELEMENT))


def dataset_context(dataset, trailing: bytes) -> bytes:
    """`context` for the tag: SHA-256 over everything but the samples and the metadata element."""
    _, metadata_tag = _block_tags(dataset)
    digest = hashlib.sha256(CONTEXT_LABEL)
    preamble = getattr(dataset, "preamble", None) or b"\x00" * 128
    file_meta = getattr(dataset, "file_meta", None)
    parts = (
        bytes(preamble),
        _serialise_elements(file_meta, {FILE_META_GROUP_LENGTH}) if file_meta is not None else b"",
        _serialise_elements(dataset, {PIXEL_DATA, metadata_tag or 0}),
        bytes(trailing),
    )
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return CONTEXT_LABEL + digest.digest()


# --------------------------------------------------------------------------- writing


def _element(tag: int, vr: str, value):
    from pydicom.dataelem import DataElement

    return DataElement(tag, vr, value)


def _shallow_copy(dataset):
    """A new dataset sharing the element objects (we replace elements, never mutate them)."""
    from pydicom.dataset import Dataset, FileMetaDataset

    copy = Dataset(dict(dataset._dict))
    implicit, little = getattr(dataset, "original_encoding", (None, None))
    copy.set_original_encoding(implicit, little, getattr(dataset, "original_character_set", None))
    file_meta = getattr(dataset, "file_meta", None)
    copy.file_meta = FileMetaDataset(dict(file_meta._dict)) if file_meta is not None else FileMetaDataset()
    copy.preamble = getattr(dataset, "preamble", None)
    return copy


def _ensure_file_meta(dataset, uid: str, label: str) -> None:
    """A preamble and file meta (kept as they are when present) with transfer syntax `uid`."""
    from pydicom.dataset import validate_file_meta

    file_meta = dataset.file_meta
    created = len(file_meta) == 0
    for meta_key, key in (("MediaStorageSOPClassUID", "SOPClassUID"), ("MediaStorageSOPInstanceUID", "SOPInstanceUID")):
        if not file_meta.get(meta_key):
            value = dataset.get(key)
            if not value:
                raise InputError(f"{label}: no {key}; cannot write a DICOM file without it")
            setattr(file_meta, meta_key, value)
    file_meta[TRANSFER_SYNTAX] = _element(TRANSFER_SYNTAX, "UI", uid)
    if created:
        validate_file_meta(file_meta, enforce_standard=True)  # adds version and implementation UID
        file_meta.FileMetaInformationGroupLength = 0  # computed on writing
    if not getattr(dataset, "preamble", None):
        dataset.preamble = b"\x00" * 128


def _to_bytes(dataset, implicit: bool = False) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # enforce_file_format=False writes the file meta as it is (_ensure_file_meta
        # completed it); True would rewrite some of its elements.
        dataset.save_as(buffer, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


def _set_pixels(dataset, data: bytes) -> None:
    """Replace the Pixel Data value with a new element of the same VR (drops pydicom's pixel cache)."""
    dataset[PIXEL_DATA] = _element(PIXEL_DATA, dataset[PIXEL_DATA].VR, data)


def _output_dataset(plain: DicomPlaintext, label: str):
    """The ciphertext's dataset, minus pixels and metadata: original + private block + info."""
    dataset = _shallow_copy(plain.dataset)
    _ensure_file_meta(dataset, EXPLICIT_LE, label)
    block = find_private_block(dataset, create=True)
    block.add_new(INFO_ELEMENT, "UT", json.dumps(plain.info, sort_keys=True))
    return dataset


def plaintext_context(plain: DicomPlaintext) -> bytes:
    """The context the ciphertext file will give: built, written and read back here."""
    label = _label(plain.path)
    dataset = _output_dataset(plain, label)
    _set_pixels(dataset, b"")
    try:
        reread = _read_dataset(_to_bytes(dataset), label)
    except DkgError:
        raise
    except Exception as exc:  # pydicom cannot re-encode some element
        raise InputError(f"{label}: cannot re-encode the dataset as Explicit VR Little Endian ({_short_exc(exc)})") from exc
    return dataset_context(reread, plain.trailing)


def ciphertext_bytes(plain: DicomPlaintext, ciphertext: np.ndarray, meta: CipherMetadata,
                     context: bytes | None = None) -> bytes:
    """The encrypted DICOM file. It is read back and its context checked against the tag's
    before it is returned, so what is written always decrypts."""
    label = _label(plain.path)
    data_array = np.asarray(ciphertext)
    if list(data_array.shape) != list(plain.layout.shape) or data_array.dtype.name != plain.layout.dtype:
        raise OutputError(
            f"{label}: ciphertext is {data_array.shape} {data_array.dtype}, the DICOM image holds "
            f"{plain.layout.shape} {plain.layout.dtype}"
        )
    dataset = _output_dataset(plain, label)
    little = data_array.astype(data_array.dtype.newbyteorder("<"), copy=False)
    _set_pixels(dataset, np.ascontiguousarray(little).tobytes() + plain.trailing)
    block = find_private_block(dataset)
    block.add_new(METADATA_ELEMENT, "UT", meta.to_json())
    try:
        data = _to_bytes(dataset)
    except Exception as exc:
        raise InputError(f"{label}: cannot re-encode the dataset as Explicit VR Little Endian ({_short_exc(exc)})") from exc
    check = load_dicom_ciphertext(data, label=label)
    expected = plaintext_context(plain) if context is None else context
    if check.meta.to_json() != meta.to_json() or check.context != expected:
        raise OutputError(f"{label}: the DICOM elements did not survive a write/read round trip; not written")
    return data


def encrypt_dicom(plain: DicomPlaintext, key: np.ndarray, *, cipher: str = "xor",
                  nonce: str | None = None) -> tuple[bytes, CipherMetadata]:
    """Encrypt a read DICOM image; return (the ciphertext file's bytes, metadata)."""
    context = plaintext_context(plain)
    ciphertext, meta = encrypt_array(plain.plain_array(), key, cipher=cipher, nonce=nonce, context=context)
    return ciphertext_bytes(plain, ciphertext, meta, context), meta


def save_dicom_ciphertext(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write an encrypted DICOM file (bytes from `encrypt_dicom`) atomically."""
    return write_bytes_atomic(path, data, overwrite=overwrite)


# --------------------------------------------------------------------------- decrypting


def _json_element(dataset, tag: int | None, label: str, what: str) -> str:
    if tag is None or tag not in dataset:
        raise IntegrityError(f"{label}: the keras_dkg private block has lost its {what} element")
    value = dataset[tag].value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).rstrip("\x00 ")


def load_dicom_ciphertext(source: str | os.PathLike | bytes, *, label: str | None = None) -> DicomCiphertext:
    """Read an encrypted DICOM file: dataset, ciphertext samples, metadata, info and context."""
    path = None if isinstance(source, bytes | bytearray) else Path(source)
    name = label or _label(path)
    if path is not None and not path.is_file():
        raise InputError(f"{name}: no such file")
    dataset = _read_dataset(bytes(source) if path is None else path, name)
    block = find_private_block(dataset)
    if block is None:
        raise InputError(f"{name}: not encrypted by keras_dkg (no private creator {PRIVATE_CREATOR!r})")
    meta = CipherMetadata.from_json(_json_element(dataset, int(block.get_tag(METADATA_ELEMENT)), name, "metadata"))
    try:
        info = json.loads(_json_element(dataset, int(block.get_tag(INFO_ELEMENT)), name, "info"))
        layout = PixelLayout(tuple(int(v) for v in meta.shape), str(meta.dtype), int(info["image_bytes"]))
        np.dtype(layout.dtype)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{name}: the keras_dkg private block is damaged ({_short_exc(exc)})") from exc
    if PIXEL_DATA not in dataset:
        raise IntegrityError(f"{name}: the Pixel Data element was removed")
    pixel_bytes = bytes(dataset.PixelData)
    expected = math.prod(layout.shape) * np.dtype(layout.dtype).itemsize
    if expected != layout.image_bytes or len(pixel_bytes) < expected:
        raise IntegrityError(
            f"{name}: Pixel Data holds {len(pixel_bytes)} bytes, the metadata says {layout.shape} "
            f"{layout.dtype} ({expected} bytes): altered or truncated"
        )
    pixels = layout.view(pixel_bytes)
    context = dataset_context(dataset, pixel_bytes[expected:])
    return DicomCiphertext(dataset, pixels, meta, info, context, path)


def restore_plaintext(encrypted: DicomCiphertext, plain: np.ndarray) -> DicomPlaintext:
    """The original dataset from a ciphertext's dataset and its decrypted samples."""
    dataset = encrypted.dataset
    layout = PixelLayout(tuple(encrypted.meta.shape), encrypted.meta.dtype, int(encrypted.info["image_bytes"]))
    array = np.asarray(plain)
    if list(array.shape) != list(layout.shape) or array.dtype.name != layout.dtype:
        raise OutputError(
            f"{_label(encrypted.path)}: decrypted image is {array.shape} {array.dtype}, the DICOM "
            f"ciphertext holds {layout.shape} {layout.dtype}"
        )
    trailing = bytes(dataset.PixelData)[layout.image_bytes:]
    little = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
    pixel_bytes = little.tobytes() + trailing
    for tag in _block_tags(dataset)[0]:
        del dataset[tag]
    _set_pixels(dataset, pixel_bytes)
    info = dict(encrypted.info)
    original = info.get("transfer_syntax")
    if original in RESTORABLE_SYNTAXES and not info.get("decoded_by"):
        dataset.file_meta[TRANSFER_SYNTAX] = _element(TRANSFER_SYNTAX, "UI", original)
    return DicomPlaintext(dataset, pixel_bytes, layout, info, encrypted.path)


def decrypt_dicom(source: str | os.PathLike | bytes | DicomCiphertext, key: np.ndarray,
                  *, label: str | None = None) -> DicomPlaintext:
    """Verify and decrypt: the original pixel bytes, our private block removed."""
    encrypted = source if isinstance(source, DicomCiphertext) else load_dicom_ciphertext(source, label=label)
    plain = decrypt_array(encrypted.cipher_pixels, key, encrypted.meta, context=encrypted.context)
    return restore_plaintext(encrypted, plain)


def plaintext_bytes(plain: DicomPlaintext) -> bytes:
    """The DICOM file of a (decrypted) plaintext, in its transfer syntax (see module doc)."""
    uid = str(plain.dataset.file_meta.get("TransferSyntaxUID", EXPLICIT_LE))
    if uid not in RESTORABLE_SYNTAXES:
        plain.dataset.file_meta[TRANSFER_SYNTAX] = _element(TRANSFER_SYNTAX, "UI", EXPLICIT_LE)
    return _to_bytes(plain.dataset, implicit=RESTORABLE_SYNTAXES.get(uid, False))


def write_dicom_plaintext(path: str | os.PathLike, plain: DicomPlaintext, overwrite: bool = False) -> Path:
    """Write a decrypted DICOM file atomically."""
    return write_bytes_atomic(path, plaintext_bytes(plain), overwrite=overwrite)


# --------------------------------------------------------------------------- handles (runtime.formats)


@dataclass
class DicomPlaintextFile:
    """A DICOM plaintext read once: pixels, the context bound into the tag, and its ciphertext writer."""

    path: Path
    plain: DicomPlaintext

    @cached_property
    def array(self) -> np.ndarray:
        return self.plain.plain_array()

    @cached_property
    def context(self) -> bytes:
        return plaintext_context(self.plain)

    def save_ciphertext(self, target: str | os.PathLike, array: np.ndarray, meta: CipherMetadata,
                        overwrite: bool = False) -> Path:
        return save_dicom_ciphertext(target, ciphertext_bytes(self.plain, array, meta), overwrite=overwrite)


@dataclass
class DicomCiphertextFile:
    """A DICOM ciphertext read once: encrypted pixels, metadata, context, and the plaintext writer."""

    path: Path
    encrypted: DicomCiphertext

    @cached_property
    def array(self) -> np.ndarray:
        return self.encrypted.cipher_pixels

    @property
    def meta(self) -> CipherMetadata:
        return self.encrypted.meta

    @cached_property
    def context(self) -> bytes:
        return self.encrypted.context

    def write_plaintext(self, target: str | os.PathLike, array: np.ndarray, overwrite: bool = False,
                        as_recorded: bool = False) -> Path:
        """The decrypted DICOM file; its pixels only when `target` is named .png/.tif (one file's
        choice). `as_recorded` (a batch, whose outputs keep the input's name): DICOM, whatever the name."""
        from keras_dkg.runtime.formats.detect import output_format

        if not as_recorded and output_format("dicom", target) != "dicom":  # its pixels as PNG/TIFF
            return write_image(Path(target), array, overwrite=overwrite)
        return write_dicom_plaintext(target, restore_plaintext(self.encrypted, array), overwrite=overwrite)


def open_plaintext(path: str | os.PathLike) -> DicomPlaintextFile:
    return DicomPlaintextFile(Path(path), read_dicom(Path(path)))


def open_ciphertext(path: str | os.PathLike) -> DicomCiphertextFile:
    return DicomCiphertextFile(Path(path), load_dicom_ciphertext(Path(path)))
