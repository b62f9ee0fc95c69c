"""The protected key store's cryptography: AES-256-GCM seals, Argon2id and HKDF (docs/keys.md, "Custody").

A seal is `nonce (12 random bytes) ‖ AES-256-GCM ciphertext ‖ tag (16)`, bound to its
place by the associated data (store id, generation, file name …), so a sealed line or key
moved to another store or another place fails to open instead of opening as something
else. Random 96-bit nonces keep the collision risk below 2⁻³² up to 2³² seals per key
(NIST SP 800-38D); a store seals one index line per change, far below that.

Every primitive comes from `cryptography`, imported on first use (a plain store works
without it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from keras_dkg.errors import DkgError, KeyMaterialError

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
SALT_BYTES = 16
AEAD_NAME = "aes-256-gcm"
# RFC 9106's second recommended Argon2id setting (64 MiB, 3 passes, 4 lanes): ~0.18 s here
ARGON2_DEFAULTS = {"name": "argon2id", "iterations": 3, "lanes": 4, "memory_kib": 65536}
INSTALL_HINT = "pip install 'keras-dkg[keys]'"


def _crypto():
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise DkgError(f"a protected key store needs the 'cryptography' package: {INSTALL_HINT}") from exc
    return AESGCM, InvalidTag


def require_cryptography() -> None:
    """DkgError with the install hint unless `cryptography` is importable."""
    _crypto()


def random_key() -> bytes:
    return os.urandom(KEY_BYTES)


def seal(key: bytes, data: bytes, aad: bytes) -> bytes:
    """nonce ‖ AES-256-GCM(key, data, aad) ‖ tag."""
    aesgcm, _ = _crypto()
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aesgcm(key).encrypt(nonce, data, aad)


def unseal(key: bytes, blob: bytes, aad: bytes, label: str) -> bytes:
    """The data of `seal`; KeyMaterialError when the key, the place or a byte is wrong."""
    aesgcm, invalid_tag = _crypto()
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise KeyMaterialError(f"{label}: sealed data is truncated ({len(blob)} bytes)")
    try:
        return aesgcm(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except invalid_tag:
        raise KeyMaterialError(f"{label}: does not open under this key store's master key "
                               "(damaged, truncated, altered, or from another store)") from None


def derive_kek(secret: bytes, kdf: dict, label: str) -> bytes:
    """The key-encryption key from a passphrase (Argon2id) or a key file (HKDF-SHA-256)."""
    _crypto()
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    try:
        salt = bytes.fromhex(kdf["salt"])
        if kdf["name"] == "argon2id":
            from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

            return Argon2id(salt=salt, length=KEY_BYTES, iterations=int(kdf["iterations"]),
                            lanes=int(kdf["lanes"]), memory_cost=int(kdf["memory_kib"])).derive(secret)
        if kdf["name"] == "hkdf-sha256":
            return HKDF(algorithm=SHA256(), length=KEY_BYTES, salt=salt,
                        info=b"keras_dkg.keystore/2 key-file").derive(secret)
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyMaterialError(f"{label}: unusable key derivation parameters {kdf!r} ({exc})") from exc
    raise KeyMaterialError(f"{label}: unknown key derivation {kdf.get('name')!r}")


def new_kdf(passphrase: bool) -> dict:
    """Fresh KDF parameters (a new salt) for a passphrase or a key file."""
    salt = os.urandom(SALT_BYTES).hex()
    return {**ARGON2_DEFAULTS, "salt": salt} if passphrase else {"name": "hkdf-sha256", "salt": salt}


def keyed_name(key: bytes, value: str) -> str:
    """A file name for `value` that says nothing about it without `key` (HMAC-SHA-256, 128 bits)."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text, label: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (TypeError, ValueError) as exc:
        raise KeyMaterialError(f"{label}: sealed field is not base64 ({exc})") from exc
