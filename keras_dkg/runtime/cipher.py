"""The XOR stream cipher over raw pixel bytes, with an HMAC-SHA-256 tag (docs/cipher.md).

A key is an H×W×3 uint8 image; its C-order bytes are the key stream. Encryption XORs
the plaintext's raw bytes (little-endian view) with the first N key bytes — never tiled,
so the key must hold at least as many bytes as the plaintext (`key_size_for`). The
ciphertext keeps the plaintext's shape and dtype, so it stays a viewable image.

The tag authenticates everything decryption relies on: it is HMAC-SHA-256, keyed by
HKDF-SHA-256 of the whole key, over the canonical JSON of the metadata (tag left out),
the caller's `context` bytes and the ciphertext bytes, each length-prefixed. Decryption
checks, in order: the key's fingerprint (wrong key → KeyMaterialError), the array's
shape/dtype against the metadata, the key's size, then the tag (IntegrityError); it
never returns a wrong image.

Ciphers are looked up in `KEYSTREAMS` (name → key-stream function, or an AEAD object with
`seal`/`open`). `cipher="hardened"` (keras_dkg/runtime/hardened.py, docs/hardened.md) is
such an AEAD: HKDF-SHA-256 of the key image, ChaCha20-Poly1305 under a fresh random nonce;
its Poly1305 tag replaces the HMAC and its parameters travel in `CipherMetadata.aead`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from keras_dkg.common import short_error
from keras_dkg.errors import InputError, IntegrityError, KeyMaterialError

KEY_DTYPE = np.uint8
FORMAT_VERSION = 1
SIZE_MULTIPLE = 4  # the generator needs H, W divisible by 4
# Pixel types the cipher accepts: integers only (floats have no lossless image container).
PLAINTEXT_DTYPES = frozenset({"uint8", "uint16", "int8", "int16", "uint32", "int32"})
_TAG_LABEL = b"keras_dkg/cipher-tag/v1"
_HKDF_SALT = b"keras_dkg"


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
    return digest(header + _raw_bytes(array).tobytes())


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


# name -> fn(key, nbytes, meta) -> uint8 key stream of exactly nbytes
Keystream = Callable[[np.ndarray, int, CipherMetadata], np.ndarray]


class AeadCipher(Protocol):
    """A cipher that authenticates itself (registered like a key stream, used instead of XOR + HMAC).

    seal(key, data, meta, context) -> ciphertext bytes (same length as `data`, flat uint8);
        fills `meta.aead` (its parameters) and `meta.tag` (its tag) — everything in the
        metadata but the tag, and `context`, must be authenticated.
    open(key, data, meta, context) -> plaintext bytes; IntegrityError when anything was altered.
    """

    def seal(self, key: np.ndarray, data: np.ndarray, meta: CipherMetadata, context: bytes) -> np.ndarray: ...

    def open(self, key: np.ndarray, data: np.ndarray, meta: CipherMetadata, context: bytes) -> np.ndarray: ...


def is_aead(cipher_impl) -> bool:
    return callable(getattr(cipher_impl, "seal", None)) and callable(getattr(cipher_impl, "open", None))


def _xor_keystream(key: np.ndarray, nbytes: int, meta: CipherMetadata) -> np.ndarray:
    """The paper's cipher: the key image's own bytes, used once, never repeated."""
    stream = key.reshape(-1)
    if stream.size < nbytes:
        need = key_size_for(meta.shape, meta.dtype)
        raise KeyMaterialError(
            f"key too small: {key.shape[0]}x{key.shape[1]} key has {stream.size} bytes, the "
            f"{'x'.join(map(str, meta.shape))} {meta.dtype} plaintext needs {nbytes}; a key is "
            f"never tiled — use a key of at least {need[0]}x{need[1]}"
        )
    return stream[:nbytes]


#: The one cipher registry: name -> the module that registers it when imported (None: built in).
CIPHER_MODULES: dict[str, str | None] = {"xor": None, "hardened": "keras_dkg.runtime.hardened"}
KNOWN_CIPHERS = tuple(CIPHER_MODULES)
KEYSTREAMS: dict[str, Keystream | AeadCipher] = {"xor": _xor_keystream}


def register_keystream(name: str, keystream: Keystream | AeadCipher) -> None:
    """Make `cipher=name` available: a key-stream function (XORed, HMAC tag) or an AeadCipher."""
    KEYSTREAMS[name] = keystream


def _keystream_for(cipher: str) -> Keystream | AeadCipher:
    """The implementation of `cipher`, its module imported on first use (hardened needs `cryptography`
    only when it runs, not on import)."""
    if cipher not in KEYSTREAMS and CIPHER_MODULES.get(cipher):
        import importlib

        importlib.import_module(CIPHER_MODULES[cipher])
    if cipher in KEYSTREAMS:
        return KEYSTREAMS[cipher]
    if cipher in KNOWN_CIPHERS:
        raise InputError(f"cipher {cipher!r} is not available in this install")
    raise InputError(f"unknown cipher {cipher!r}; expected one of {', '.join(KNOWN_CIPHERS)}")


def _check_key(key: np.ndarray) -> np.ndarray:
    array = np.asarray(key)
    if array.dtype != KEY_DTYPE or array.ndim != 3 or array.shape[2] != 3:
        raise KeyMaterialError(f"a key must be an H×W×3 uint8 image, got {array.shape} {array.dtype}")
    return np.ascontiguousarray(array)


def _raw_bytes(array: np.ndarray) -> np.ndarray:
    """The array's bytes in little-endian order, as a flat uint8 array."""
    little = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=little).view(np.uint8).reshape(-1)


def _from_raw_bytes(data: np.ndarray, dtype: str, shape: list[int]) -> np.ndarray:
    native = np.dtype(dtype)
    return data.view(native.newbyteorder("<")).reshape(shape).astype(native, copy=False)


def xor_bytes(data: np.ndarray, stream: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """XOR two equal-length flat uint8 arrays into `out` (`data` itself: in place; None: a new array).

    numpy's ufunc with `out=` runs near memory speed (tools/bench_keygen.py); the old cv2
    call allocated its result on every call and ran at a third of that.
    """
    return np.bitwise_xor(data, stream, out=np.empty_like(data) if out is None else out)


def _hkdf_sha256(key_material: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with SHA-256 (one block is all we need)."""
    prk = hmac.new(_HKDF_SALT, key_material, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def compute_tag(key: np.ndarray, meta: CipherMetadata, context: bytes, ciphertext_bytes: np.ndarray) -> str:
    """HMAC-SHA-256 (hex) of metadata-without-tag, context and ciphertext, keyed from the key."""
    mac_key = _hkdf_sha256(np.ascontiguousarray(key).tobytes(), _TAG_LABEL + b"/" + meta.cipher.encode())
    mac = hmac.new(mac_key, _TAG_LABEL, hashlib.sha256)
    for part in (meta.canonical_bytes(), bytes(context), ciphertext_bytes):
        view = memoryview(part).cast("B")
        mac.update(len(view).to_bytes(8, "big"))
        mac.update(view)
    return mac.hexdigest()


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


def encrypt_array(
    plain: np.ndarray,
    key: np.ndarray,
    *,
    cipher: str = "xor",
    nonce: str | None = None,
    context: bytes = b"",
    extra: dict | None = None,
) -> tuple[np.ndarray, CipherMetadata]:
    """Encrypt an integer image with a key image; return (ciphertext, metadata).

    The ciphertext has the plaintext's shape and dtype. `nonce` (the key's nonce) and
    `extra` are stored and authenticated; `context` is authenticated but not stored.
    """
    return _encrypt_with(_keystream_for(cipher), plain, key, cipher=cipher, nonce=nonce, context=context, extra=extra)


def _encrypt_with(impl, plain, key, *, cipher: str, nonce, context: bytes, extra) -> tuple[np.ndarray, CipherMetadata]:
    """encrypt_array with the cipher implementation given (the hardened module's analysis hook)."""
    plain = check_plaintext(plain)
    key = _check_key(key)
    meta = CipherMetadata(
        format_version=FORMAT_VERSION, cipher=cipher, key_fingerprint=fingerprint(key),
        nonce=None if nonce is None else str(nonce), dtype=plain.dtype.name,
        shape=[int(v) for v in plain.shape], extra=dict(extra or {}),
    )
    data = _raw_bytes(plain)
    if is_aead(impl):
        encrypted = impl.seal(key, data, meta, bytes(context))
    else:
        owned = not np.shares_memory(data, plain)  # _raw_bytes made a copy: XOR into it, no second array
        encrypted = xor_bytes(data, impl(key, data.size, meta), out=data if owned else None)
        meta.tag = compute_tag(key, meta, context, encrypted)
    return _from_raw_bytes(encrypted, meta.dtype, meta.shape), meta


def decrypt_array(
    ciphertext: np.ndarray, key: np.ndarray, meta: CipherMetadata, *, context: bytes = b"", in_place: bool = False
) -> np.ndarray:
    """Verify and decrypt; the result is bit-exact the plaintext (same dtype and shape).

    `in_place=True` lets the XOR overwrite `ciphertext` with the plaintext (one allocation
    less, for callers that own the array and are done with it). Raises KeyMaterialError for
    a wrong or too-small key and IntegrityError when the ciphertext, its metadata or the
    context was altered; nothing is overwritten then (the tag is checked first).
    """
    if meta.cipher not in KNOWN_CIPHERS:
        raise IntegrityError(f"ciphertext metadata names an unknown cipher {meta.cipher!r} (altered?)")
    keystream = _keystream_for(meta.cipher)
    key = _check_key(key)
    actual = fingerprint(key)
    if not hmac.compare_digest(actual.encode(), str(meta.key_fingerprint).encode("utf-8")):
        raise KeyMaterialError(
            f"wrong key: this ciphertext was made with key {str(meta.key_fingerprint)[:23]}…, "
            f"the key given is {actual[:23]}…"
        )
    array = np.asarray(ciphertext)
    if meta.dtype not in PLAINTEXT_DTYPES or array.dtype.name != meta.dtype or list(array.shape) != list(meta.shape):
        raise IntegrityError(
            f"ciphertext is {'x'.join(map(str, array.shape))} {array.dtype} but its metadata says "
            f"{'x'.join(map(str, meta.shape))} {meta.dtype} (altered or mismatched files)"
        )
    data = _raw_bytes(array)
    if is_aead(keystream):
        return _from_raw_bytes(keystream.open(key, data, meta, bytes(context)), meta.dtype, meta.shape)
    if meta.aead is not None:
        raise IntegrityError(f"ciphertext metadata of cipher {meta.cipher!r} carries AEAD parameters (altered?)")
    stream = keystream(key, data.size, meta)
    expected = compute_tag(key, meta, context, data)
    if not hmac.compare_digest(expected.encode(), str(meta.tag).encode("utf-8")):
        raise IntegrityError(
            "authentication failed: the ciphertext pixels, its metadata or its container "
            "were altered (tag mismatch); nothing was decrypted"
        )
    owned = not np.shares_memory(data, array)  # _raw_bytes copied it (byte order, layout): ours to reuse
    out = data if owned or (in_place and array.flags.writeable) else None
    return _from_raw_bytes(xor_bytes(data, stream, out=out), meta.dtype, meta.shape)

