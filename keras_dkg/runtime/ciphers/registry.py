"""encrypt_array / decrypt_array, and the one registry of ciphers they look names up in.

`CIPHERS` maps a cipher's name to "module:object", loaded on first use: "xor" (ciphers.xor,
XOR + HMAC) or "hardened" (ciphers.hardened, HKDF + ChaCha20-Poly1305, docs/hardened.md).
An implementation is a key-stream function (XORed here, HMAC-tagged) or an AeadCipher
(`seal`/`open`, its own tag, parameters in `CipherMetadata.aead`). The ciphertext keeps the
plaintext's shape and dtype. Decryption checks, in order: the key's fingerprint (wrong key
→ KeyMaterialError), the array's shape/dtype against the metadata, the key's size, then
the tag (IntegrityError); it never returns a wrong image.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Protocol

import numpy as np

from keras_dkg.common import import_object
from keras_dkg.errors import InputError, IntegrityError, KeyMaterialError
from keras_dkg.runtime.ciphers.metadata import (
    FORMAT_VERSION,
    KEY_DTYPE,
    PLAINTEXT_DTYPES,
    CipherMetadata,
    check_plaintext,
    fingerprint,
    from_raw_bytes,
    raw_bytes,
)
from keras_dkg.runtime.ciphers.xor import compute_tag, xor_bytes

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


#: The one cipher registry: name -> "module:object", its implementation (a key-stream function,
#: XORed and HMAC-tagged, or an AeadCipher), imported on first use: hardened needs `cryptography`
#: only when it runs, and no cipher module imports this one to register itself.
CIPHERS: dict[str, str] = {
    "xor": "keras_dkg.runtime.ciphers.xor:xor_keystream",
    "hardened": "keras_dkg.runtime.ciphers.hardened:HARDENED",
}
KNOWN_CIPHERS = tuple(CIPHERS)
#: implementations loaded so far, and any registered at run time (`register_keystream`)
KEYSTREAMS: dict[str, Keystream | AeadCipher] = {}


def register_keystream(name: str, keystream: Keystream | AeadCipher) -> None:
    """Make `cipher=name` available at run time (a plug-in, a test): a key-stream function or an AeadCipher."""
    KEYSTREAMS[name] = keystream


def keystream_for(cipher: str) -> Keystream | AeadCipher:
    """The implementation of `cipher`, loaded from CIPHERS on first use."""
    if cipher not in KEYSTREAMS and cipher in CIPHERS:
        try:
            KEYSTREAMS[cipher] = import_object(CIPHERS[cipher])
        except ImportError as exc:
            raise InputError(f"cipher {cipher!r} is not available in this install ({exc})") from exc
    if cipher in KEYSTREAMS:
        return KEYSTREAMS[cipher]
    raise InputError(f"unknown cipher {cipher!r}; expected one of {', '.join(KNOWN_CIPHERS)}")


def _check_key(key: np.ndarray) -> np.ndarray:
    array = np.asarray(key)
    if array.dtype != KEY_DTYPE or array.ndim != 3 or array.shape[2] != 3:
        raise KeyMaterialError(f"a key must be an H×W×3 uint8 image, got {array.shape} {array.dtype}")
    return np.ascontiguousarray(array)


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
    return encrypt_with(keystream_for(cipher), plain, key, cipher=cipher, nonce=nonce, context=context, extra=extra)


def encrypt_with(impl, plain, key, *, cipher: str, nonce, context: bytes, extra) -> tuple[np.ndarray, CipherMetadata]:
    """encrypt_array with the cipher implementation given (the hardened module's analysis hook)."""
    plain = check_plaintext(plain)
    key = _check_key(key)
    meta = CipherMetadata(
        format_version=FORMAT_VERSION, cipher=cipher, key_fingerprint=fingerprint(key),
        nonce=None if nonce is None else str(nonce), dtype=plain.dtype.name,
        shape=[int(v) for v in plain.shape], extra=dict(extra or {}),
    )
    data = raw_bytes(plain)
    if is_aead(impl):
        encrypted = impl.seal(key, data, meta, bytes(context))
    else:
        owned = not np.shares_memory(data, plain)  # raw_bytes made a copy: XOR into it, no second array
        encrypted = xor_bytes(data, impl(key, data.size, meta), out=data if owned else None)
        meta.tag = compute_tag(key, meta, context, encrypted)
    return from_raw_bytes(encrypted, meta.dtype, meta.shape), meta


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
    keystream = keystream_for(meta.cipher)
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
    data = raw_bytes(array)
    if is_aead(keystream):
        return from_raw_bytes(keystream.open(key, data, meta, bytes(context)), meta.dtype, meta.shape)
    if meta.aead is not None:
        raise IntegrityError(f"ciphertext metadata of cipher {meta.cipher!r} carries AEAD parameters (altered?)")
    stream = keystream(key, data.size, meta)
    expected = compute_tag(key, meta, context, data)
    if not hmac.compare_digest(expected.encode(), str(meta.tag).encode("utf-8")):
        raise IntegrityError(
            "authentication failed: the ciphertext pixels, its metadata or its container "
            "were altered (tag mismatch); nothing was decrypted"
        )
    owned = not np.shares_memory(data, array)  # raw_bytes copied it (byte order, layout): ours to reuse
    out = data if owned or (in_place and array.flags.writeable) else None
    return from_raw_bytes(xor_bytes(data, stream, out=out), meta.dtype, meta.shape)
