"""What a ciphertext records and the cipher checks: CipherMetadata, digests, key sizes.

A key is an H×W×3 uint8 image; a plaintext an integer H×W or H×W×C array whose raw
little-endian bytes are what is encrypted (`raw_bytes`). `key_size_for` is the smallest
key holding as many bytes as the plaintext (a key is never tiled, docs/cipher.md).
`CipherMetadata` travels inside every ciphertext file: format version, cipher, key
fingerprint, the key's nonce, dtype, shape, tag, AEAD parameters; it is read strictly
(unknown or mistyped fields are an IntegrityError).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import numpy as np

from keras_dkg.common import short_error
from keras_dkg.errors import InputError, IntegrityError

KEY_DTYPE = np.uint8


FORMAT_VERSION = 1
SIZE_MULTIPLE = 4  # the generator needs H, W divisible by 4


# Pixel types the cipher accepts: integers only (floats have no lossless image container).
PLAINTEXT_DTYPES = frozenset({"uint8", "uint16", "int8", "int16", "uint32", "int32"})


def digest(data: bytes) -> str:
    """"sha256:<hex>" of some bytes (the one fingerprint format used everywhere)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fingerprint(key: np.ndarray) -> str:
    """"sha256:<hex>" of a key's raw C-order bytes."""
    return digest(np.ascontiguousarray(key).tobytes())


def plaintext_digest(plain: np.ndarray) -> str:
    """"sha256:<hex>" of an image's dtype, shape and raw bytes: what "the same plaintext" means
    for key-reuse tracking (a re-saved file with the same pixels is the same plaintext)."""
    array = np.asarray(plain)
    header = f"{array.dtype.name}:{'x'.join(map(str, array.shape))}:".encode("ascii")
    return digest(header + raw_bytes(array).tobytes())


def _ceil_to(value: int, multiple: int = SIZE_MULTIPLE) -> int:
    return -(-int(value) // multiple) * multiple


def key_size_for(shape, dtype) -> tuple[int, int]:
    """Smallest key (h, w), both multiples of 4, h = ceil4(H), whose h*w*3 bytes cover the plaintext.

    `shape` is the plaintext's (H, W) or (H, W, C); `dtype` its pixel type.
    """
    dims = tuple(int(v) for v in shape)
    if len(dims) not in (2, 3) or min(dims) <= 0:
        raise InputError(f"plaintext shape must be H×W or H×W×C with positive sizes, got {dims}")
    nbytes = math.prod(dims) * np.dtype(dtype).itemsize
    height = _ceil_to(dims[0])
    width = _ceil_to(-(-nbytes // (3 * height)))
    return height, width


@dataclasses.dataclass
class CipherMetadata:
    """What a ciphertext carries beside its pixels (JSON-serialisable, authenticated by `tag`)."""

    format_version: int
    cipher: str
    key_fingerprint: str
    nonce: str | None
    dtype: str
    shape: list[int]
    byte_order: str = "little"
    tag: str = ""
    extra: dict = dataclasses.field(default_factory=dict)
    # AEAD parameters (cipher "hardened" only: alg, kdf, salt, nonce); absent from the JSON
    # when None, so XOR metadata (and its tag) is byte-for-byte what it always was.
    aead: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        if fields["aead"] is None:
            del fields["aead"]
        return fields

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def canonical_bytes(self) -> bytes:
        """The bytes the tag covers: sorted compact ASCII JSON of every field but `tag`."""
        fields = self.to_dict()
        del fields["tag"]
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")

    @classmethod
    def from_json(cls, text: str | bytes | dict) -> CipherMetadata:
        """Parse metadata; anything malformed is an IntegrityError (it is authenticated data).

        Every field must be present (`aead` may be left out) and of its JSON type; any
        other input — bad UTF-8, bad JSON, absurd nesting, wrong types — is refused the
        same way, never with another exception.
        """
        try:
            fields = json.loads(text) if isinstance(text, str | bytes | bytearray) else dict(text)
            names = {f.name for f in dataclasses.fields(cls)}
            if not isinstance(fields, dict) or not names - _OPTIONAL_FIELDS <= set(fields) <= names:
                raise ValueError(f"expected fields {sorted(names)}")
            _check_field_types(fields)
            meta = cls(**fields)
            meta.shape = list(meta.shape)
        except (TypeError, ValueError, RecursionError, OverflowError) as exc:
            raise IntegrityError(f"ciphertext metadata is damaged ({short_error(exc)})") from exc
        if meta.format_version != FORMAT_VERSION:
            raise IntegrityError(
                f"ciphertext metadata format_version {meta.format_version!r} is not {FORMAT_VERSION} "
                "(altered, or written by another keras_dkg version)"
            )
        return meta


_OPTIONAL_FIELDS = frozenset({"aead"})
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "format_version": (int,), "cipher": (str,), "key_fingerprint": (str,), "nonce": (str, type(None)),
    "dtype": (str,), "shape": (list,), "byte_order": (str,), "tag": (str,), "extra": (dict,),
    "aead": (dict, type(None)),
}


def _check_field_types(fields: dict) -> None:
    """ValueError unless every metadata field has its JSON type (bool is not an int here)."""
    for name, value in fields.items():
        if (isinstance(value, bool) and bool not in _FIELD_TYPES[name]) or not isinstance(value, _FIELD_TYPES[name]):
            raise ValueError(f"{name} must be {' or '.join(t.__name__ for t in _FIELD_TYPES[name])}, "
                             f"got {type(value).__name__}")
        if isinstance(value, str):
            value.encode("utf-8")  # a lone surrogate (JSON "\ud800"): UnicodeEncodeError, a ValueError
    shape = fields["shape"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape):
        raise ValueError("shape must be a list of non-negative integers")
    if fields["byte_order"] != "little":
        raise ValueError(f"byte_order must be 'little', got {fields['byte_order']!r}")


def check_plaintext(plain: np.ndarray) -> np.ndarray:
    """The array, if the cipher can encrypt it (an integer dtype it knows, 2-D or 3-D, not empty)."""
    array = np.asarray(plain)
    if array.dtype.name not in PLAINTEXT_DTYPES:
        raise InputError(
            f"cannot encrypt {array.dtype} pixels; expected one of {', '.join(sorted(PLAINTEXT_DTYPES))}"
        )
    if array.ndim not in (2, 3) or array.size == 0:
        raise InputError(f"plaintext must be a non-empty H×W or H×W×C image, got shape {array.shape}")
    return array


def raw_bytes(array: np.ndarray) -> np.ndarray:
    """The array's bytes in little-endian order, as a flat uint8 array."""
    little = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=little).view(np.uint8).reshape(-1)


def from_raw_bytes(data: np.ndarray, dtype: str, shape: list[int]) -> np.ndarray:
    native = np.dtype(dtype)
    return data.view(native.newbyteorder("<")).reshape(shape).astype(native, copy=False)
