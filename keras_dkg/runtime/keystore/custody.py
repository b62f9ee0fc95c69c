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
command reads it the same way (`Credentials.from_environment`). It keeps each KEK that
opened a keyring, so a process runs the KDF once per store however many keys it opens, and
a batch passes it (pickled, KEK included, passphrase not) to its workers instead of
deriving again. Credentials are untrusted input (docs/keys.md, "Credentials"): a key file
must be a regular file of exactly 32 bytes (checked by type before it is read, so a FIFO or
`/dev/zero` is refused at once); a passphrase must be UTF-8 and is normalised as RFC 8265's
OpaqueString profile does (non-ASCII spaces → U+0020, then Unicode NFC), so the NFC and NFD
forms of one passphrase open the same store. Stores made before normalisation (their KDF
parameters lack `"normalization": "nfc"`) are opened with the passphrase exactly as typed,
then with its normal form. Credentials given for a folder that is no protected store are
refused (`require_protected`): a secret is never silently ignored.
"""

from __future__ import annotations

import getpass
import hmac
import json
import os
import struct
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from keras_dkg.errors import InputError, KeyMaterialError
from keras_dkg.runtime.guards.inputs import MAX_RECORD_BYTES, read_bounded
from keras_dkg.runtime.keystore import sealing

MANIFEST_NAME = "store.json"
STORE_FORMAT = "keras_dkg.keystore/2"
PASSPHRASE_ENV = "DKG_KEYSTORE_PASSPHRASE"
NEW_PASSPHRASE_ENV = "DKG_KEYSTORE_NEW_PASSPHRASE"
BUNDLE_PASSPHRASE_ENV = "DKG_KEYSTORE_BUNDLE_PASSPHRASE"
KEY_FILE_ENV = "DKG_KEYSTORE_KEY_FILE"
MIN_PASSPHRASE = 8
KEY_FILE_LIMIT = 4096  # bytes read at most from a --key-file (it must hold exactly sealing.KEY_BYTES)
# the option that names a key file instead of each passphrase variable (hints name the right one)
KEY_FILE_FLAGS = {PASSPHRASE_ENV: "--key-file", NEW_PASSPHRASE_ENV: "--new-key-file",
                  BUNDLE_PASSPHRASE_ENV: "--bundle-key-file"}
SECRET_VARIABLES = (PASSPHRASE_ENV, NEW_PASSPHRASE_ENV, BUNDLE_PASSPHRASE_ENV)  # never passed to a worker


def normalize_passphrase(text: str) -> str:
    """RFC 8265 OpaqueString's mappings: every non-ASCII space becomes U+0020, then Unicode NFC."""
    spaced = "".join(" " if unicodedata.category(c) == "Zs" else c for c in text)
    return unicodedata.normalize("NFC", spaced)


def _utf8(text: str, what: str, where: str) -> bytes:
    """The passphrase as UTF-8; one clear line for one that is not text (bytes the locale could not decode)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        shown = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else f"U+{ord(bad):04X}"
        raise InputError(f"the {what} from {where} is not valid UTF-8 ({shown} at character {exc.start + 1}); "
                         "give it as UTF-8 text") from None


@dataclass(repr=False)
class Credentials:
    """Where a store's master secret comes from (see module docstring); KEKs that opened a keyring are kept."""

    passphrase: str | None = None
    key_file: str | None = None
    passphrase_env: str = PASSPHRASE_ENV
    what: str = "key store passphrase"
    confirm: bool = False  # ask twice (a new passphrase)
    origin: str | None = None  # how the secret was named ("--key-file F", a variable); None: by the caller
    _keks: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_environment(cls, key_file: str | os.PathLike | None = None, passphrase_env: str = PASSPHRASE_ENV,
                         what: str = "key store passphrase", confirm: bool = False) -> Credentials:
        flag = KEY_FILE_FLAGS.get(passphrase_env, "--key-file")
        origin = f"{flag} {key_file}" if key_file else None
        if not key_file and passphrase_env == PASSPHRASE_ENV and os.environ.get(KEY_FILE_ENV):
            key_file, origin = os.environ[KEY_FILE_ENV], KEY_FILE_ENV
        passphrase = os.environ.get(passphrase_env)
        if origin is None and passphrase is not None:
            origin = passphrase_env
        return cls(passphrase=passphrase, key_file=str(key_file) if key_file else None,
                   passphrase_env=passphrase_env, what=what, confirm=confirm, origin=origin)

    def __repr__(self) -> str:  # never the passphrase, never a KEK
        return (f"Credentials({self.kind}, from {self.source or 'a prompt'}, "
                f"passphrase={'<hidden>' if self.passphrase is not None else None}, keks kept={len(self._keks)})")

    @property
    def kind(self) -> str:
        return "key-file" if self.key_file else "passphrase"

    @property
    def source(self) -> str | None:
        """How the secret was given (a flag, a variable, the caller), or None: only a prompt would ask for it."""
        if self.origin:
            return self.origin
        if self.key_file:
            return f"the key file {self.key_file}"
        return "a passphrase" if self.passphrase is not None else None

    def _text(self) -> str:
        """The passphrase (asked on the terminal when not given), checked for length and text."""
        if self.passphrase is None:
            self.passphrase, self.origin = _prompt(self.what, self.passphrase_env, self.confirm), "the prompt"
        normal = normalize_passphrase(self.passphrase)
        _utf8(normal, self.what, self.source)
        # a new passphrase counts its normal form; an existing store's, what was counted when it was made
        length = len(normal) if self.confirm else len(self.passphrase)
        if length < MIN_PASSPHRASE:
            raise InputError(f"the {self.what} is too short ({length} characters; at least {MIN_PASSPHRASE})")
        if self.confirm and any(unicodedata.category(c) == "Cc" for c in normal):
            raise InputError(f"the {self.what} holds a control character (a newline, a tab …); "
                             "RFC 8265 passwords do not: choose one without")
        return self.passphrase

    def secret(self) -> bytes:
        """The key file's 32 bytes, or the normalised passphrase as UTF-8 (asked on the terminal if not given)."""
        if self.key_file:
            return read_key_file(self.key_file)
        return normalize_passphrase(self._text()).encode("utf-8")

    def _secrets(self, kdf: dict) -> list[bytes]:
        """The secrets to try for these KDF parameters: one, except for a store made before normalisation."""
        if self.key_file or kdf.get("normalization") == sealing.NORMALIZATION:
            return [self.secret()]
        text = self._text()  # an older store: the passphrase as it was typed, then its normal form
        return list(dict.fromkeys([_utf8(text, self.what, self.source), self.secret()]))

    def for_workers(self) -> Credentials:
        """A copy with the derived KEKs but without the passphrase: what a batch hands its workers."""
        return Credentials(passphrase=None, key_file=self.key_file, passphrase_env=self.passphrase_env,
                           what=self.what, origin=self.origin, _keks=dict(self._keks))

    def _check_kind(self, kdf: dict, label: str) -> None:
        expected = "key-file" if kdf.get("name") == "hkdf-sha256" else "passphrase"
        if expected != self.kind:
            flag = KEY_FILE_FLAGS.get(self.passphrase_env, "--key-file")
            hint = f"{flag} F" + (f" (or {KEY_FILE_ENV})" if self.passphrase_env == PASSPHRASE_ENV else "") \
                if expected == "key-file" else f"its passphrase ({self.passphrase_env}, or a prompt), not {flag}"
            raise KeyMaterialError(f"{label}: this store is protected by a {expected.replace('-', ' ')}: give {hint}")

    def keks(self, kdf: dict, label: str) -> Iterator[bytes]:
        """The KEK kept for these KDF parameters, else each candidate derived in turn (see `_secrets`)."""
        self._check_kind(kdf, label)
        kept = self._keks.get(_kdf_key(kdf))
        if kept is not None:
            yield kept
            return
        for secret in self._secrets(kdf):
            yield sealing.derive_kek(secret, kdf, label)

    def keep(self, kdf: dict, kek: bytes) -> None:
        """Remember the KEK that opened a keyring for these KDF parameters."""
        self._keks[_kdf_key(kdf)] = kek

    def kek(self, kdf: dict, label: str) -> bytes:
        """The KEK for new KDF parameters (a store being made or rotated): derived once, then kept."""
        kek = next(self.keks(kdf, label))
        self.keep(kdf, kek)
        return kek


def _kdf_key(kdf: dict) -> str:
    return json.dumps(kdf, sort_keys=True)


def _prompt(what: str, variable: str, confirm: bool) -> str:
    if not sys.stdin.isatty():
        flag = KEY_FILE_FLAGS.get(variable, "--key-file")
        raise KeyMaterialError(f"the key store is protected: set {variable} (or give {flag}), "
                               f"or run in a terminal to be asked for the {what}")
    first = getpass.getpass(f"{what}: ")
    if confirm and normalize_passphrase(getpass.getpass(f"{what} (again): ")) != normalize_passphrase(first):
        raise InputError(f"the two {what}s differ")
    return first


def read_key_file(path: str | os.PathLike) -> bytes:
    """A master key file: a regular file of exactly 32 bytes (`dkg-keys init --key-file F` makes one).

    Refused by type before a byte is read (a folder, a FIFO that would block, a device such as
    /dev/zero that never ends) and by size (never more than KEY_FILE_LIMIT bytes read)."""
    data = read_bounded(path, KEY_FILE_LIMIT, "master key file")
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


def require_protected(folder: str | os.PathLike, credentials: Credentials | None) -> None:
    """One line when credentials were given (flag, environment, caller) for a folder that is no protected store.

    A secret that is given is meant to protect something: a typo'd --keys folder must not become
    a new plain store with keys and plaintext paths in the clear, and a plain store must not be
    used as if it were protected. Without credentials, plain stores work as before.
    """
    if credentials is None or credentials.source is None or is_protected(folder):
        return
    folder = Path(folder)
    if (folder / "index.jsonl").is_file():  # keystore.INDEX_NAME (keystore imports this module)
        raise KeyMaterialError(f"{folder}: a plain key store (keys in the clear), but {credentials.source} was "
                               f"given: seal it with `dkg-keys protect {folder}`, or leave out {credentials.source}")
    raise KeyMaterialError(f"no protected store at {folder}, but {credentials.source} was given: "
                           f"run `dkg-keys init {folder}` first, or check the folder name")


def check_key_file_outside(folder: str | os.PathLike, credentials: Credentials) -> None:
    """A store's key file is never inside the store: every copy of the store would carry its own key."""
    if credentials.key_file and Path(os.path.realpath(credentials.key_file)).is_relative_to(os.path.realpath(folder)):
        raise InputError(f"{credentials.key_file}: the master key file is inside the key store {folder}; every "
                         "copy or backup of the store would carry its key: keep it outside the store")


def read_manifest(folder: str | os.PathLike) -> dict:
    """`store.json`, checked before anything in it is used: types, bounds, and KDF parameters (`sealing.check_kdf`)."""
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(read_bounded(path, MAX_RECORD_BYTES, "key store manifest").decode("utf-8"))
    except InputError as exc:
        raise KeyMaterialError(str(exc)) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyMaterialError(f"{path}: damaged key store manifest ({exc})") from exc
    required = {"format": str, "store_id": str, "generation": int, "kdf": dict, "index": str, "keyring": str}
    if not isinstance(manifest, dict) or any(not isinstance(manifest.get(k), t) or isinstance(manifest.get(k), bool)
                                             for k, t in required.items()):
        raise KeyMaterialError(f"{path}: not a keras_dkg key store manifest")
    if not 1 <= manifest["generation"] < 2**31 or not 0 < len(manifest["store_id"]) <= 64:
        raise KeyMaterialError(f"{path}: generation {manifest['generation']} or store id of "
                               f"{len(manifest['store_id'])} characters out of range (altered manifest)")
    check = manifest.get("kek_check", "0" * 32)
    if not isinstance(check, str) or len(check) != 32 or any(c not in "0123456789abcdef" for c in check):
        raise KeyMaterialError(f"{path}: kek_check is not 32 hex digits (altered manifest)")
    sealing.check_kdf(manifest["kdf"], str(path))
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
    """Open a protected store's keyring; a wrong passphrase or key file is one KeyMaterialError.

    AEAD alone cannot tell a wrong passphrase from an altered manifest (both fail the tag). A
    store made since the manifest carries `kek_check` (a keyed hash of the KEK, bound to nothing
    else) can: a KEK that matches it but does not open the keyring means the store id, the
    generation or the keyring was altered or damaged. Altered KDF parameters or salt still read
    as a wrong passphrase (they change the KEK itself).
    """
    folder = Path(folder)
    manifest = manifest or read_manifest(folder)
    credentials = credentials or Credentials.from_environment()
    label = str(folder)
    blob = sealing.unb64(manifest["keyring"], f"{folder / MANIFEST_NAME}")
    check = manifest.get("kek_check")
    matched = False
    for kek in credentials.keks(manifest["kdf"], label):
        try:
            data = sealing.unseal(kek, blob, keyring_aad(manifest["store_id"], manifest["generation"]), label)
        except KeyMaterialError:
            matched = matched or (check is not None and hmac.compare_digest(sealing.key_check(kek), check))
            continue
        credentials.keep(manifest["kdf"], kek)
        break
    else:
        kind = credentials.kind.replace("-", " ")
        if matched:
            raise KeyMaterialError(f"{folder / MANIFEST_NAME}: the {kind} is right (it matches the manifest's check "
                                   "value) but the keyring does not open: the manifest's store id, generation or "
                                   "keyring was altered or damaged; restore store.json from a backup") from None
        if check is None:
            raise KeyMaterialError(f"{folder}: wrong {kind} for this key store, or its store.json was altered (its "
                                   "keyring does not open; a store made before the check value cannot tell which); "
                                   "nothing was read or written") from None
        raise KeyMaterialError(f"{folder}: wrong {kind} for this key store (its keyring does not open); "
                               "nothing was read or written") from None
    keyring = json.loads(data)
    return Vault(folder, manifest, kek, bytes.fromhex(keyring["lookup"]),
                 {int(g): bytes.fromhex(k) for g, k in keyring["audit"].items()})
