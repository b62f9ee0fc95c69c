"""Unlocking a protected key store: where the master secret comes from, and what it opens.

A protected store (docs/keys.md, "Custody") has `store.json`, its manifest: the store id,
the generation (+1 per rotation), the KDF and its parameters, the name of the current
index file and the **keyring** sealed under the key-encryption key (KEK). The KEK comes
from a passphrase (Argon2id) or from a 32-byte key file (HKDF); the keyring holds the
lookup key (key files are named by a keyed hash of the fingerprint) and one audit key per
generation. Every index line (with the key's data key, DEK) is sealed under the KEK; every
key image under its own DEK.

`Credentials` says where the secret comes from: `--key-file F`, else the environment
(`DKG_KEYSTORE_KEY_FILE`, `DKG_KEYSTORE_PASSPHRASE`), else a terminal prompt. Every
command reads it the same way (`Credentials.from_environment`). It keeps each KEK it
derived, so a process runs the KDF once per store however many keys it opens, and a
batch passes it (pickled, KEK included) to its workers instead of deriving again.
"""

from __future__ import annotations

import getpass
import json
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

from keras_dkg.errors import InputError, KeyMaterialError
from keras_dkg.runtime import sealing

MANIFEST_NAME = "store.json"
STORE_FORMAT = "keras_dkg.keystore/2"
PASSPHRASE_ENV = "DKG_KEYSTORE_PASSPHRASE"
NEW_PASSPHRASE_ENV = "DKG_KEYSTORE_NEW_PASSPHRASE"
BUNDLE_PASSPHRASE_ENV = "DKG_KEYSTORE_BUNDLE_PASSPHRASE"
KEY_FILE_ENV = "DKG_KEYSTORE_KEY_FILE"
MIN_PASSPHRASE = 8


@dataclass
class Credentials:
    """Where a store's master secret comes from (see module docstring); KEKs derived are kept."""

    passphrase: str | None = None
    key_file: str | None = None
    passphrase_env: str = PASSPHRASE_ENV
    what: str = "key store passphrase"
    confirm: bool = False  # ask twice (a new passphrase)
    _keks: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_environment(cls, key_file: str | os.PathLike | None = None, passphrase_env: str = PASSPHRASE_ENV,
                         what: str = "key store passphrase", confirm: bool = False) -> Credentials:
        key_file = key_file or (os.environ.get(KEY_FILE_ENV) if passphrase_env == PASSPHRASE_ENV else None)
        return cls(passphrase=os.environ.get(passphrase_env), key_file=str(key_file) if key_file else None,
                   passphrase_env=passphrase_env, what=what, confirm=confirm)

    @property
    def kind(self) -> str:
        return "key-file" if self.key_file else "passphrase"

    def secret(self) -> bytes:
        """The key file's 32 bytes, or the passphrase (environment, else asked on the terminal)."""
        if self.key_file:
            return read_key_file(self.key_file)
        if self.passphrase is None:
            self.passphrase = _prompt(self.what, self.passphrase_env, self.confirm)
        if len(self.passphrase) < MIN_PASSPHRASE:
            raise InputError(f"the {self.what} is too short ({len(self.passphrase)} characters; "
                             f"at least {MIN_PASSPHRASE})")
        return self.passphrase.encode("utf-8")

    def for_workers(self) -> Credentials:
        """A copy with the derived KEKs but without the passphrase: what a batch hands its workers."""
        return Credentials(passphrase=None, key_file=self.key_file, passphrase_env=self.passphrase_env,
                           what=self.what, _keks=dict(self._keks))

    def kek(self, kdf: dict, label: str) -> bytes:
        """The KEK for these KDF parameters (derived once, then kept)."""
        expected = "key-file" if kdf.get("name") == "hkdf-sha256" else "passphrase"
        if expected != self.kind:
            hint = "--key-file F (or DKG_KEYSTORE_KEY_FILE)" if expected == "key-file" else \
                f"its passphrase ({self.passphrase_env}, or a prompt), not --key-file"
            raise KeyMaterialError(f"{label}: this store is protected by a {expected.replace('-', ' ')}: give {hint}")
        cache_key = json.dumps(kdf, sort_keys=True)
        if cache_key not in self._keks:
            self._keks[cache_key] = sealing.derive_kek(self.secret(), kdf, label)
        return self._keks[cache_key]


def _prompt(what: str, variable: str, confirm: bool) -> str:
    if not sys.stdin.isatty():
        raise KeyMaterialError(f"the key store is protected: set {variable} (or give --key-file), "
                               f"or run in a terminal to be asked for the {what}")
    first = getpass.getpass(f"{what}: ")
    if confirm and getpass.getpass(f"{what} (again): ") != first:
        raise InputError(f"the two {what}s differ")
    return first


def read_key_file(path: str | os.PathLike) -> bytes:
    """A master key file: exactly 32 bytes (`dkg-keys init --key-file F` makes one)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"{path}: cannot read the master key file ({exc.strerror or exc})") from exc
    if len(data) != sealing.KEY_BYTES:
        raise KeyMaterialError(f"{path}: a master key file holds exactly {sealing.KEY_BYTES} bytes, "
                               f"this one {len(data)}")
    return data


def write_key_file(path: str | os.PathLike) -> None:
    """32 random bytes, mode 0600, never over an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{path}: exists; a new store gets a new key file (give an existing one to "
                         "commands that open the store)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot create the master key file ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(sealing.random_key())
        handle.flush()
        os.fsync(handle.fileno())


def is_protected(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MANIFEST_NAME).is_file()


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyMaterialError(f"{path}: cannot read the key store manifest ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyMaterialError(f"{path}: damaged key store manifest ({exc})") from exc
    required = {"format": str, "store_id": str, "generation": int, "kdf": dict, "index": str, "keyring": str}
    if not isinstance(manifest, dict) or any(not isinstance(manifest.get(k), t) for k, t in required.items()):
        raise KeyMaterialError(f"{path}: not a keras_dkg key store manifest")
    if manifest["format"] != STORE_FORMAT:
        raise KeyMaterialError(f"{path}: key store format {manifest['format']!r}; this version reads {STORE_FORMAT}")
    if Path(manifest["index"]).name != manifest["index"]:
        raise KeyMaterialError(f"{path}: index {manifest['index']!r} is not a file of the store")
    return manifest


@dataclass
class Vault:
    """An unlocked protected store: what seals and opens its index lines, keys and audit records."""

    folder: Path
    manifest: dict
    kek: bytes
    lookup: bytes
    audit_keys: dict[int, bytes]

    @property
    def store_id(self) -> str:
        return self.manifest["store_id"]

    @property
    def generation(self) -> int:
        return self.manifest["generation"]

    def _aad(self, what: str, *parts) -> bytes:
        return "\x1f".join([STORE_FORMAT, what, self.store_id, *map(str, parts)]).encode("utf-8")

    def seal_entry(self, entry: dict) -> str:
        data = json.dumps(entry, sort_keys=True).encode("utf-8")
        return sealing.b64(sealing.seal(self.kek, data, self._aad("index", self.generation)))

    def open_entry(self, text, label: str) -> dict:
        data = sealing.unseal(self.kek, sealing.unb64(text, label), self._aad("index", self.generation), label)
        return json.loads(data)

    def key_name(self, fingerprint: str) -> str:
        return sealing.keyed_name(self.lookup, fingerprint)

    def seal_key(self, dek: bytes, name: str, payload: bytes) -> bytes:
        return KEY_MAGIC + sealing.seal(dek, payload, self._aad("key", name))

    def open_key(self, dek: bytes, name: str, blob: bytes, label: str) -> bytes:
        if not blob.startswith(KEY_MAGIC):
            raise KeyMaterialError(f"{label}: not a sealed keras_dkg key")
        return sealing.unseal(dek, blob[len(KEY_MAGIC):], self._aad("key", name), label)

    def seal_audit(self, body: dict, seq: int, prev: str) -> str:
        data = json.dumps(body, sort_keys=True).encode("utf-8")
        return sealing.b64(sealing.seal(self.audit_keys[self.generation], data, self._aad("audit", seq, prev)))

    def open_audit(self, text, generation: int, seq: int, prev: str, label: str) -> dict:
        key = self.audit_keys.get(generation)
        if key is None:
            raise KeyMaterialError(f"{label}: sealed under generation {generation}, which this store's keyring lacks")
        return json.loads(sealing.unseal(key, sealing.unb64(text, label), self._aad("audit", seq, prev), label))


    def seal_archive(self, data: bytes) -> bytes:
        """An archived audit log (the plain log of a store that was then protected)."""
        return sealing.seal(self.audit_keys[self.generation], data, self._aad("audit-archive", self.generation))

    def open_archive(self, blob: bytes, generation: int, label: str) -> bytes:
        key = self.audit_keys.get(generation)
        if key is None:
            raise KeyMaterialError(f"{label}: sealed under generation {generation}, which this store's keyring lacks")
        return sealing.unseal(key, blob, self._aad("audit-archive", generation), label)


KEY_MAGIC = b"DKGKEY2\n"
RAW_PIXELS = b"RAW1"  # sealed payload: RAW1 ‖ height, width, channels (3 × uint32 BE) ‖ the uint8 pixels


def pack_pixels(pixels) -> bytes:
    """A key's pixels as the sealed payload (no PNG: sealing random bytes needs no codec)."""
    height, width, channels = pixels.shape
    return RAW_PIXELS + struct.pack(">III", height, width, channels) + pixels.tobytes()


def unpack_pixels(payload: bytes, label: str):
    import numpy as np

    header = len(RAW_PIXELS) + 12
    if not payload.startswith(RAW_PIXELS) or len(payload) < header:
        raise KeyMaterialError(f"{label}: not a sealed key payload")
    height, width, channels = struct.unpack(">III", payload[len(RAW_PIXELS):header])
    if height * width * channels != len(payload) - header:
        raise KeyMaterialError(f"{label}: sealed key payload of {len(payload) - header} bytes for a "
                               f"{height}x{width}x{channels} key")
    return np.frombuffer(payload, np.uint8, offset=header).reshape(height, width, channels).copy()


def keyring_aad(store_id: str, generation: int) -> bytes:
    return "\x1f".join([STORE_FORMAT, "keyring", store_id, str(generation)]).encode("utf-8")


def seal_keyring(kek: bytes, store_id: str, generation: int, lookup: bytes, audit_keys: dict[int, bytes]) -> str:
    data = json.dumps({"lookup": lookup.hex(), "audit": {str(g): k.hex() for g, k in audit_keys.items()}})
    return sealing.b64(sealing.seal(kek, data.encode("utf-8"), keyring_aad(store_id, generation)))


def unlock(folder: str | os.PathLike, credentials: Credentials | None = None, manifest: dict | None = None) -> Vault:
    """Open a protected store's keyring; a wrong passphrase or key file is one KeyMaterialError."""
    folder = Path(folder)
    manifest = manifest or read_manifest(folder)
    credentials = credentials or Credentials.from_environment()
    label = str(folder)
    kek = credentials.kek(manifest["kdf"], label)
    blob = sealing.unb64(manifest["keyring"], f"{folder / MANIFEST_NAME}")
    try:
        data = sealing.unseal(kek, blob, keyring_aad(manifest["store_id"], manifest["generation"]), label)
    except KeyMaterialError:
        raise KeyMaterialError(f"{folder}: wrong {credentials.kind.replace('-', ' ')} for this key store "
                               "(its keyring does not open); nothing was read or written") from None
    keyring = json.loads(data)
    return Vault(folder, manifest, kek, bytes.fromhex(keyring["lookup"]),
                 {int(g): bytes.fromhex(k) for g, k in keyring["audit"].items()})
