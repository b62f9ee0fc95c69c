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
# what a manifest's Argon2id parameters may ask, checked before they are used (a hostile store.json must
# not make us allocate 4 TiB or run 10⁶ passes): inclusive ranges, and passes × memory at most 4 GiB
ARGON2_LIMITS = {"iterations": (1, 10), "lanes": (1, 16), "memory_kib": (8, 1 << 20)}
MAX_ARGON2_COST_KIB = 1 << 22
SALT_RANGE = (8, 64)  # bytes
NORMALIZATION = "nfc"  # passphrases normalised (custody.normalize_passphrase) before the KDF; older stores lack it
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


def check_kdf(kdf: dict, label: str) -> None:
    """KeyMaterialError unless `kdf` is one of ours with parameters in range (ARGON2_LIMITS, SALT_RANGE)."""
    def bad(why: str) -> KeyMaterialError:
        return KeyMaterialError(f"{label}: key derivation parameters {why}; refused before use (altered store.json?)")

    name = kdf.get("name")
    fields = {"argon2id": {"name", "salt", "normalization", *ARGON2_LIMITS}, "hkdf-sha256": {"name", "salt"}}
    if name not in fields:
        raise bad(f"name an unknown function {str(name)[:40]!r}")
    extra = sorted(set(kdf) - fields[name])
    if extra:
        raise bad(f"have unknown fields {extra[:5]}")
    salt = kdf.get("salt")
    if not isinstance(salt, str) or len(salt) % 2 or not SALT_RANGE[0] * 2 <= len(salt) <= SALT_RANGE[1] * 2 \
            or any(c not in "0123456789abcdefABCDEF" for c in salt):
        raise bad(f"have a salt that is not {SALT_RANGE[0]}-{SALT_RANGE[1]} bytes of hex")
    if name == "argon2id":
        for field, (low, high) in ARGON2_LIMITS.items():
            value = kdf.get(field)
            if type(value) is not int or not low <= value <= high:
                raise bad(f"ask {field} {str(value)[:40]} (allowed {low}..{high})")
        if kdf["memory_kib"] < 8 * kdf["lanes"] or kdf["memory_kib"] * kdf["iterations"] > MAX_ARGON2_COST_KIB:
            raise bad(f"ask {kdf['iterations']} passes over {kdf['memory_kib']} KiB in {kdf['lanes']} lanes "
                      f"(at least 8 KiB per lane, at most {MAX_ARGON2_COST_KIB} KiB in all passes)")
        if kdf.get("normalization", NORMALIZATION) != NORMALIZATION:
            raise bad(f"name an unknown passphrase normalisation {str(kdf['normalization'])[:40]!r}")


def derive_kek(secret: bytes, kdf: dict, label: str) -> bytes:
    """The key-encryption key from a passphrase (Argon2id) or a key file (HKDF-SHA-256); parameters checked first."""
    _crypto()
    check_kdf(kdf, label)
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
    if passphrase:
        return {**ARGON2_DEFAULTS, "salt": salt, "normalization": NORMALIZATION}
    return {"name": "hkdf-sha256", "salt": salt}


def key_check(key: bytes) -> str:
    """A check value of a KEK, bound to nothing else (custody.unlock tells a wrong secret from an altered
    manifest with it). It tests a guess no faster than the sealed keyring already does: the KDF dominates."""
    return hmac.new(key, b"keras_dkg.keystore/2 kek-check", hashlib.sha256).hexdigest()[:32]


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
