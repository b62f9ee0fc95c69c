"""The ciphers over raw pixel bytes: what a ciphertext records (metadata), the paper's XOR
with an HMAC tag (xor), the hardened AEAD (hardened, docs/hardened.md) and the one registry
that looks them up by name (registry: encrypt_array / decrypt_array).

Its public names are imported from their modules on first use (`common.lazy_exports`).
"""

from keras_dkg.common import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "metadata": (
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
    ),
    "xor": (
        "compute_tag",
        "xor_bytes",
        "xor_keystream",
    ),
    "registry": (
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
    ),
})
