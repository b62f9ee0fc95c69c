"""Key custody: the key store (store: KeyStore), its protection under a master key
(custody, sealing), the hash-chained audit log (audit), writers' and shards' locks (locks),
verification (check) and the administration behind dkg-keys (admin).

`keras_dkg.runtime.keystore` was the store module; its names are still here.

Its public names are imported from their modules on first use (`common.lazy_exports`).
"""

from keras_dkg.common import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "store": (
        "AUDIT_SHARD_SUFFIX",
        "INDEX_NAME",
        "KEYS_FOLDER",
        "KeyStore",
        "LOCK_NAME",
        "PENDING_PREFIX",
        "PRIVATE_MODE",
        "SEALED_SUFFIX",
        "SHARDS_FOLDER",
        "SHARD_LOCK_SUFFIX",
        "SHARD_SUFFIX",
        "finish_pending",
        "is_key_store",
        "key_use",
        "mark_key_file_used",
        "pending_path",
        "store_of_key",
        "write_sealed_key",
    ),
    "custody": (
        "BUNDLE_PASSPHRASE_ENV",
        "Credentials",
        "KEY_FILE_ENV",
        "KEY_FILE_FLAGS",
        "KEY_FILE_LIMIT",
        "KEY_MAGIC",
        "MANIFEST_NAME",
        "MIN_PASSPHRASE",
        "NEW_PASSPHRASE_ENV",
        "PASSPHRASE_ENV",
        "RAW_PIXELS",
        "SECRET_VARIABLES",
        "STORE_FORMAT",
        "Vault",
        "check_key_file_outside",
        "is_protected",
        "keyring_aad",
        "normalize_passphrase",
        "pack_pixels",
        "read_key_file",
        "read_manifest",
        "require_protected",
        "seal_keyring",
        "unlock",
        "unpack_pixels",
        "write_key_file",
    ),
    "admin": (
        "InjectedFailure",
        "PROTECT_PHASES",
        "ROTATE_PHASES",
        "export_keys",
        "import_keys",
        "init_store",
        "protect_store",
        "rotate_store",
    ),
})
