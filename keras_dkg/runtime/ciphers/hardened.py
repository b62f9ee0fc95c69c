"""`cipher="hardened"`: the DeepKeyGen key image as key material for a standard AEAD.

The paper's XOR (`cipher="xor"`) falls to one known plaintext (K = P ⊕ C) and to key
reuse (C1 ⊕ C2 = P1 ⊕ P2). This mode keeps the key image as the only secret but never
exposes its bytes (docs/hardened.md):

    salt   = 32 random bytes, nonce = 12 random bytes          (fresh for every encryption)
    subkey = HKDF-SHA-256(ikm = all key-image bytes, salt, info = INFO)           # 32 bytes
    aad    = AAD_LABEL ‖ len‖canonical metadata (everything but the tag) ‖ len‖context
    C ‖ T  = ChaCha20-Poly1305(subkey).encrypt(nonce, plaintext bytes, aad)      # len: 8-byte BE

C (as long as the plaintext's bytes) becomes the ciphertext image, so it keeps the
plaintext's shape and dtype; the 16-byte Poly1305 tag T is `CipherMetadata.tag` and
`CipherMetadata.aead` = {alg, kdf, salt, nonce} (hex). The canonical metadata in the AAD
covers format version, cipher, key fingerprint, the key's nonce, dtype, shape, byte
order, `extra` and these AEAD parameters; `context` is the container's (DICOM: the hash of
every non-pixel element). The Poly1305 tag is the one authentication of this mode: no
HMAC is computed (it would be keyed by the same key image and add nothing).

`cryptography` is imported on first use; without it the mode fails with a DkgError
naming `pip install 'keras-dkg[hardened]'`. The mode registers itself with
`keras_dkg.runtime.cipher` through `register_keystream` when cipher's registry (CIPHER_MODULES) first needs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np

from keras_dkg.errors import DkgError, InputError, IntegrityError, KeyMaterialError
from keras_dkg.runtime.ciphers.metadata import CipherMetadata

NAME = "hardened"


ALGORITHM = "chacha20-poly1305"
KDF = "hkdf-sha256"
SALT_BYTES = 32
NONCE_BYTES = 12  # 96-bit ChaCha20-Poly1305 nonce (RFC 8439)
TAG_BYTES = 16
SUBKEY_BYTES = 32
MIN_KEY_BYTES = 32  # the key image is HKDF input: at least 256 bits of (hopefully random) material
INFO = b"keras_dkg/hardened/v1/chacha20-poly1305 key"
AAD_LABEL = b"keras_dkg/hardened/v1/aad"


# cryptography's one-shot AEAD API takes at most 2**31 - 1 bytes (ciphertext and tag together)
MAX_BYTES = 2**31 - 1 - TAG_BYTES
INSTALL_HINT = "pip install 'keras-dkg[hardened]'"
AEAD_FIELDS = ("alg", "kdf", "nonce", "salt")
_HEX_DIGITS = {"salt": 2 * SALT_BYTES, "nonce": 2 * NONCE_BYTES}
_HEX = {name: re.compile(f"[0-9a-f]{{{digits}}}") for name, digits in _HEX_DIGITS.items()}
_TAG_HEX = re.compile(f"[0-9a-f]{{{2 * TAG_BYTES}}}")


def _crypto():
    """(ChaCha20Poly1305, HKDF, SHA256, InvalidTag) from `cryptography`, or a DkgError saying how to install it."""
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        from cryptography.hazmat.primitives.hashes import SHA256
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError as exc:
        raise DkgError(
            f"cipher 'hardened' needs the 'cryptography' package (ChaCha20-Poly1305, HKDF): {INSTALL_HINT}"
        ) from exc
    return ChaCha20Poly1305, HKDF, SHA256, InvalidTag


def require_cryptography() -> None:
    """DkgError with the install hint unless `cryptography` is importable (CLIs check before any work)."""
    _crypto()


def available() -> bool:
    """Whether `cryptography` is importable (the mode works)."""
    try:
        _crypto()
    except DkgError:
        return False
    return True


def derive_key(key: np.ndarray, salt: bytes) -> bytes:
    """HKDF-SHA-256 of the whole key image's C-order bytes: the 256-bit ChaCha20-Poly1305 key."""
    _, hkdf, sha256, _ = _crypto()
    return hkdf(algorithm=sha256(), length=SUBKEY_BYTES, salt=bytes(salt), info=INFO).derive(
        np.ascontiguousarray(key).tobytes()
    )


def associated_data(meta: CipherMetadata, context: bytes) -> bytes:
    """The AEAD's associated data: label, canonical metadata (tag left out), context; length-prefixed."""
    out = bytearray(AAD_LABEL)
    for part in (meta.canonical_bytes(), bytes(context)):
        out += len(part).to_bytes(8, "big") + part
    return bytes(out)


def _parameters(meta: CipherMetadata) -> tuple[bytes, bytes, bytes]:
    """(salt, nonce, tag) from the metadata; IntegrityError unless exactly as this module writes them."""
    aead = meta.aead
    if not isinstance(aead, dict) or sorted(aead) != sorted(AEAD_FIELDS):
        raise IntegrityError(f"hardened ciphertext metadata lacks its AEAD parameters {list(AEAD_FIELDS)} (altered?)")
    if aead["alg"] != ALGORITHM or aead["kdf"] != KDF:
        raise IntegrityError(
            f"hardened ciphertext names alg {aead['alg']!r}, kdf {aead['kdf']!r}; this version knows "
            f"{ALGORITHM} with {KDF} (altered, or written by another version)"
        )
    for name, pattern in _HEX.items():
        if not isinstance(aead[name], str) or not pattern.fullmatch(aead[name]):
            raise IntegrityError(f"hardened ciphertext metadata: AEAD {name} is not {_HEX_DIGITS[name]} lowercase "
                                 "hex digits (altered?)")
    if not isinstance(meta.tag, str) or not _TAG_HEX.fullmatch(meta.tag):
        raise IntegrityError(f"hardened ciphertext metadata: tag is not {2 * TAG_BYTES} hex digits (altered?)")
    return bytes.fromhex(aead["salt"]), bytes.fromhex(aead["nonce"]), bytes.fromhex(meta.tag)


class HardenedCipher:
    """The AEAD `cipher.encrypt_array`/`decrypt_array` call for `cipher="hardened"`.

    `random_bytes(n)` supplies salt and nonce: `os.urandom` (the default, and the only
    choice for real data).
    """

    def __init__(self, random_bytes: Callable[[int], bytes] = os.urandom):
        self.random_bytes = random_bytes

    def seal(self, key: np.ndarray, data: np.ndarray, meta: CipherMetadata, context: bytes) -> np.ndarray:
        chacha, *_ = _crypto()
        if key.size < MIN_KEY_BYTES:
            raise KeyMaterialError(
                f"key too small for cipher 'hardened': {key.shape[0]}x{key.shape[1]} key has {key.size} bytes, "
                f"HKDF needs at least {MIN_KEY_BYTES}"
            )
        if data.size > MAX_BYTES:
            raise InputError(
                f"plaintext has {data.size} bytes; cipher 'hardened' encrypts at most {MAX_BYTES} bytes per "
                "image (one AEAD message): split it"
            )
        salt, nonce = bytes(self.random_bytes(SALT_BYTES)), bytes(self.random_bytes(NONCE_BYTES))
        if len(salt) != SALT_BYTES or len(nonce) != NONCE_BYTES:
            raise DkgError("random source returned the wrong number of bytes")
        meta.aead = {"alg": ALGORITHM, "kdf": KDF, "nonce": nonce.hex(), "salt": salt.hex()}
        sealed = chacha(derive_key(key, salt)).encrypt(nonce, np.ascontiguousarray(data), associated_data(meta, context))
        meta.tag = sealed[-TAG_BYTES:].hex()
        return np.frombuffer(sealed, dtype=np.uint8, count=data.size).copy()

    def open(self, key: np.ndarray, data: np.ndarray, meta: CipherMetadata, context: bytes) -> np.ndarray:
        chacha, _, _, invalid_tag = _crypto()
        salt, nonce, tag = _parameters(meta)
        if data.size > MAX_BYTES:
            raise IntegrityError(f"ciphertext has {data.size} bytes, more than any hardened ciphertext (altered?)")
        try:
            plain = chacha(derive_key(key, salt)).decrypt(
                nonce, np.ascontiguousarray(data).tobytes() + tag, associated_data(meta, context)
            )
        except invalid_tag:
            raise IntegrityError(
                "authentication failed: the ciphertext pixels, its metadata (tag, nonce, salt, …) or its "
                "container were altered (ChaCha20-Poly1305 tag mismatch); nothing was decrypted"
            ) from None
        return np.frombuffer(plain, dtype=np.uint8).copy()


#: what the cipher registry (ciphers.registry.CIPHERS) loads for cipher="hardened"
HARDENED = HardenedCipher()
