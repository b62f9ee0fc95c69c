"""The ciphers over raw pixel bytes: what a ciphertext records (metadata), the paper's XOR
with an HMAC tag (xor), the hardened AEAD (hardened, docs/hardened.md) and the one registry
that looks them up by name (registry: encrypt_array / decrypt_array).
"""

from keras_dkg.runtime.ciphers.metadata import (
    FORMAT_VERSION,
    KEY_DTYPE,
    PLAINTEXT_DTYPES,
    SIZE_MULTIPLE,
    CipherMetadata,
    check_plaintext,
    digest,
    fingerprint,
    from_raw_bytes,
    key_size_for,
    plaintext_digest,
    raw_bytes,
)
from keras_dkg.runtime.ciphers.registry import (
    CIPHERS,
    KEYSTREAMS,
    KNOWN_CIPHERS,
    AeadCipher,
    Keystream,
    decrypt_array,
    encrypt_array,
    encrypt_with,
    is_aead,
    keystream_for,
    register_keystream,
)
from keras_dkg.runtime.ciphers.xor import (
    compute_tag,
    xor_bytes,
    xor_keystream,
)

__all__ = [
    "CipherMetadata",
    "FORMAT_VERSION",
    "KEY_DTYPE",
    "PLAINTEXT_DTYPES",
    "SIZE_MULTIPLE",
    "check_plaintext",
    "digest",
    "fingerprint",
    "from_raw_bytes",
    "key_size_for",
    "plaintext_digest",
    "raw_bytes",
    "compute_tag",
    "xor_bytes",
    "xor_keystream",
    "AeadCipher",
    "CIPHERS",
    "KEYSTREAMS",
    "KNOWN_CIPHERS",
    "Keystream",
    "decrypt_array",
    "encrypt_array",
    "encrypt_with",
    "is_aead",
    "keystream_for",
    "register_keystream",
]
