"""The paper's cipher: XOR with the key image's own bytes, plus an HMAC-SHA-256 tag.

Encryption XORs the plaintext's raw bytes with the first N key bytes — never tiled, so the
key must hold at least as many bytes as the plaintext. The tag authenticates everything
decryption relies on: HMAC-SHA-256, keyed by HKDF-SHA-256 of the whole key, over the
canonical JSON of the metadata (tag left out), the caller's `context` bytes and the
ciphertext bytes, each length-prefixed (docs/cipher.md).
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

from keras_dkg.errors import KeyMaterialError
from keras_dkg.runtime.ciphers.metadata import CipherMetadata, key_size_for

_TAG_LABEL = b"keras_dkg/cipher-tag/v1"


_HKDF_SALT = b"keras_dkg"


def xor_keystream(key: np.ndarray, nbytes: int, meta: CipherMetadata) -> np.ndarray:
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
