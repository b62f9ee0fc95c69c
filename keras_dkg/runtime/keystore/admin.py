"""What `dkg-keys` does to a store as a whole: init, protect, rotate, verify, export, import, audit.

Each operation that changes the kind or the master key of a store has one commit point,
the atomic replacement of `store.json` (docs/keys.md, "Custody"):

* **rotate** waits for every writer to end (`locks.exclusive`), merges the
  shards, records in `store.json` the name and SHA-256 of the index it is about to write
  (`pending_index`), writes the whole index again under the new key-encryption key as
  `index.<generation+1>.jsonl` (every data key rewrapped; key files untouched), then
  replaces `store.json` (which records the old index's name and SHA-256 as
  `replaced_index`), then deletes the old index. Killed before the commit, the store
  opens with the old master key; after it, with the new one. Never neither.

An index file `store.json` does not name is deleted only when `store.json` accounts for
it byte for byte (`pending_index`, `replaced_index`); any other is an error that `verify`
reports and `rotate`/`protect` refuse to run past — it may be the real index beside a
restored old `store.json`.
* **protect** writes a sealed copy of every key, the sealed index and the sealed archive of
  the plain audit log beside the plain files, then writes `store.json`, then deletes the
  plain files. Killed before the commit the store is still plain; after it, protected with
  plaintext leftovers that no command writes past (`protect` again finishes the job).

`fail_after=PHASE` raises `InjectedFailure` right after that phase: the tests kill an
operation at each phase this way.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from keras_dkg.common import utc_timestamp
from keras_dkg.errors import InputError, KeyMaterialError, OutputError
from keras_dkg.runtime.guards.atomic import write_bytes_atomic
from keras_dkg.runtime.guards.outputs import OutputGuard
from keras_dkg.runtime.keystore import locks, sealing
from keras_dkg.runtime.keystore.audit import AUDIT_NAME, GENESIS, AuditLog
from keras_dkg.runtime.keystore.check import (  # noqa: F401 (verify/audit are part of this API)
    NEXT_AUDIT,
    PROTECT_PENDING,
    Verification,
    account,
    audit_store,
    plain_leftovers,
    store_manifest,
    unaccounted_indexes,
    unaccounted_message,
    verify_store,
)
from keras_dkg.runtime.keystore.custody import (
    MANIFEST_NAME,
    STORE_FORMAT,
    Credentials,
    Vault,
    check_key_file_outside,
    is_protected,
    seal_keyring,
    write_key_file,
)
from keras_dkg.runtime.keystore.store import (
    INDEX_NAME,
    KEYS_FOLDER,
    LOCK_NAME,
    PRIVATE_MODE,
    KeyStore,
    finish_pending,
    write_sealed_key,
)

ROTATE_PHASES = ("derive", "index", "commit", "cleanup")
PROTECT_PHASES = ("keys", "index", "archive", "commit", "cleanup")


class InjectedFailure(RuntimeError):
    """Raised by `fail_after` (tests only)."""


def _phase(name: str, fail_after: str | None) -> None:
    if fail_after == name:
        raise InjectedFailure(f"injected failure after phase {name!r}")


def _index_name(generation: int) -> str:
    return f"index.{generation}.jsonl"


def _write_manifest(folder: Path, manifest: dict) -> None:
    write_bytes_atomic(folder / MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(),
                       overwrite=True)


def _new_vault(folder: Path, credentials: Credentials, generation: int, store_id: str, lookup: bytes,
               audit_keys: dict[int, bytes], base: dict | None = None) -> Vault:
    kdf = sealing.new_kdf(passphrase=credentials.kind == "passphrase")
    kek = credentials.kek(kdf, str(folder))
    manifest = {**(base or {}), "format": STORE_FORMAT, "store_id": store_id, "generation": generation,
                "protection": credentials.kind, "kdf": kdf, "aead": sealing.AEAD_NAME, "kek_check": sealing.key_check(kek),
                "index": _index_name(generation), "keyring": seal_keyring(kek, store_id, generation, lookup, audit_keys)}
    return Vault(folder, manifest, kek, lookup, audit_keys)


def _sealed_line(vault: Vault, entry: dict) -> bytes:
    return (json.dumps({"sealed": vault.seal_entry(entry)}) + "\n").encode("utf-8")


def _prepare_credentials(credentials: Credentials, creating: bool, folder: str | os.PathLike) -> None:
    """A new store's key file is made when missing (never inside the store); a passphrase is asked (twice)
    before any write."""
    sealing.require_cryptography()
    check_key_file_outside(folder, credentials)
    if credentials.key_file and creating and not Path(credentials.key_file).exists():
        write_key_file(credentials.key_file)
    credentials.secret()


def init_store(folder: str | os.PathLike, credentials: Credentials) -> KeyStore:
    """A new, empty protected store (the folder must not exist or be empty)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder}: exists and is not an empty folder; a new key store needs its own folder "
                         "(`dkg-keys protect` converts a plain store)")
    _prepare_credentials(credentials, creating=True, folder=folder)
    try:
        (folder / KEYS_FOLDER).mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / LOCK_NAME, os.O_WRONLY | os.O_CREAT, PRIVATE_MODE))
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the key store ({exc.strerror or exc})") from exc
    vault = _new_vault(folder, credentials, 1, uuid.uuid4().hex, sealing.random_key(), {1: sealing.random_key()},
                       {"created": utc_timestamp()})
    write_bytes_atomic(folder / vault.manifest["index"], b"", overwrite=True)
    _write_manifest(folder, vault.manifest)  # the commit: from here on it is a protected store
    store = KeyStore(folder, credentials=credentials)
    store.record_use("init", protection=credentials.kind, kdf=vault.manifest["kdf"]["name"])
    return store


def rotate_store(folder: str | os.PathLike, credentials: Credentials, new_credentials: Credentials,
                 fail_after: str | None = None, wait_s: float = locks.DEFAULT_WAIT_S) -> dict:
    """A new master key: every data key rewrapped, key files and ciphertexts untouched (module docstring)."""
    store = KeyStore(folder, credentials=credentials)
    if store.vault is None:
        raise InputError(f"{folder}: a plain key store has no master key to rotate; `dkg-keys protect` it first")
    _prepare_credentials(new_credentials, creating=True, folder=folder)
    old = store.vault
    with locks.exclusive(store.folder, wait_s, "rotate"):  # no writer is alive until it is done
        store.merge_shards()  # every line in the one index that is sealed again
        with store._locked():
            _clear_accounted_indexes(store.folder, old.manifest)
            generation = old.generation + 1
            audit_keys = {**old.audit_keys, generation: sealing.random_key()}
            next_seq, head, _ = store.audit._last()
            vault = _new_vault(store.folder, new_credentials, generation, old.store_id, old.lookup, audit_keys,
                               {**old.manifest, "rotated": utc_timestamp(),
                                "audit_anchor": {"seq": next_seq - 1, "hash": head}})
            vault.manifest.pop("pending_index", None)
            _phase("derive", fail_after)
            entries = store._live_entries()
            data = b"".join(_sealed_line(vault, entry) for entry in entries)
            new_index = store.folder / vault.manifest["index"]
            _write_manifest(store.folder, {**old.manifest, "pending_index": account(new_index.name, data)})
            write_bytes_atomic(new_index, data, overwrite=True)
            _phase("index", fail_after)
            vault.manifest["replaced_index"] = account(old.manifest["index"], store.index_path.read_bytes())
            _write_manifest(store.folder, vault.manifest)
            _phase("commit", fail_after)
            (store.folder / old.manifest["index"]).unlink(missing_ok=True)
            locks.intent_path(store.folder / old.manifest["index"]).unlink(missing_ok=True)
            _phase("cleanup", fail_after)
            AuditLog(store.folder / AUDIT_NAME, vault, vault.manifest.get("audit_genesis", GENESIS)).append(
                "rotate", generation=generation, keys=len(entries), protection=new_credentials.kind)
    return {"generation": generation, "keys": len(entries)}


def _clear_accounted_indexes(folder: Path, manifest: dict) -> None:
    """Delete what killed rotations left (accounted for by `store.json`); refuse past anything else."""
    unaccounted = unaccounted_indexes(folder, manifest)
    if unaccounted:
        raise KeyMaterialError(unaccounted_message(unaccounted[0], manifest))
    for path in folder.glob("index.*.jsonl"):
        if path.name != manifest["index"] and path.name != INDEX_NAME:
            path.unlink()  # accounted for: a killed rotation's copy of keys the named index has


def protect_store(folder: str | os.PathLike, credentials: Credentials, fail_after: str | None = None,
                  wait_s: float = locks.DEFAULT_WAIT_S) -> dict:
    """Turn a plain store into a protected one in place (module docstring); finish an interrupted run."""
    folder = Path(folder)
    if is_protected(folder):
        store = KeyStore(folder, credentials=credentials)
        entries = store._live_entries()
        return {"keys": len(entries), "finished": _finish_protect(store.folder, entries, fail_after)}
    plain = KeyStore(folder)
    _prepare_credentials(credentials, creating=True, folder=folder)
    with locks.exclusive(plain.folder, wait_s, "protect"):
        return _protect_plain(plain, credentials, fail_after)


def _protect_plain(plain: KeyStore, credentials: Credentials, fail_after: str | None) -> dict:
    folder = plain.folder
    plain.merge_shards()
    with plain._locked():
        _clear_accounted_indexes(plain.folder, store_manifest(plain))
        vault = _new_vault(plain.folder, credentials, 1, uuid.uuid4().hex, sealing.random_key(),
                           {1: sealing.random_key()}, {"created": utc_timestamp(), "protected": utc_timestamp()})
        lines, news = [], []
        for entry in plain._live_entries():
            key = plain.load(entry["fingerprint"])
            record = {**key.record, "used_for": entry.get("used_for", [])}
            # under `.pending.` names until the commit: a killed protect's keys (a lookup key never
            # committed names them) are then plainly nobody's, not sealed keys in no index line
            new = write_sealed_key(plain.folder, vault, key, record, pending=True)
            new.update(shape=entry.get("shape"), nonce=entry.get("nonce"), created=entry.get("created"))
            lines.append(_sealed_line(vault, new))
            news.append(new)
        _phase("keys", fail_after)
        data = b"".join(lines)
        write_bytes_atomic(plain.folder / PROTECT_PENDING,
                           json.dumps(account(vault.manifest["index"], data)).encode(), overwrite=True)
        write_bytes_atomic(plain.folder / vault.manifest["index"], data, overwrite=True)
        _phase("index", fail_after)
        check, _ = plain.audit.check()
        if check.broken:
            raise KeyMaterialError(f"{folder}: the plain store's audit log is broken ({check.broken}); "
                                   "`dkg-keys audit` shows it — repair or move it aside before protecting")
        old_log = plain.audit.path.read_bytes() if plain.audit.path.exists() else b""
        archive = f"audit.archive.{vault.generation}.sealed"
        write_bytes_atomic(plain.folder / archive, vault.seal_archive(old_log), overwrite=True)
        vault.manifest.update(audit_genesis=check.head, audit_archive={"file": archive, "generation": 1,
                                                                       "records": check.records})
        (plain.folder / NEXT_AUDIT).unlink(missing_ok=True)
        AuditLog(plain.folder / NEXT_AUDIT, vault, check.head).append(
            "protect", keys=len(lines), archived_records=check.records, protection=credentials.kind)
        _phase("archive", fail_after)
        _write_manifest(plain.folder, vault.manifest)
        _phase("commit", fail_after)
        _finish_protect(plain.folder, news, fail_after)
    return {"keys": len(lines), "finished": True}


def _finish_protect(folder: Path, entries: list[dict], fail_after: str | None) -> bool:
    """Name the sealed keys, delete what a protect left of the plain store; True when there was something to do."""
    for entry in entries:
        finish_pending(folder, entry["key_file"])
    leftovers = plain_leftovers(folder)
    if (folder / NEXT_AUDIT).exists():
        os.replace(folder / NEXT_AUDIT, folder / AUDIT_NAME)  # the sealed log replaces the plain one
    for path in leftovers:
        if path.name != AUDIT_NAME:
            path.unlink(missing_ok=True)
    (folder / PROTECT_PENDING).unlink(missing_ok=True)
    _phase("cleanup", fail_after)
    return bool(leftovers)


def export_keys(store: KeyStore, fingerprints: Iterable[str], bundle: str | os.PathLike,
                bundle_credentials: Credentials) -> list[str]:
    """Copy selected keys into a new protected store `bundle` (its own master key) to share one study."""
    chosen = list(dict.fromkeys(fingerprints))
    if not chosen:
        raise InputError("nothing to export: name keys with --fingerprint FP or --for CIPHERTEXT")
    # the bundle is an output like any other (never inside a key store, never an input), and its key
    # file never lies in the store it is cut from
    OutputGuard(inputs={"key store": store.folder}).check_folder(bundle, "bundle folder")
    check_key_file_outside(store.folder, bundle_credentials)
    keys = [store.load(fp) for fp in chosen]  # every key opens before anything is written
    target = init_store(bundle, bundle_credentials)
    for key in keys:
        target.add(key, action="import")
    for key in keys:
        store.record_use("export", fingerprint=key.fingerprint, file=str(Path(bundle).resolve()))
    return chosen


def import_keys(store: KeyStore, bundle: str | os.PathLike, bundle_credentials: Credentials) -> tuple[int, int]:
    """Add a bundle's keys to `store` (keys it has already are left as they are); (added, present)."""
    if store.vault is None:  # the bundle's keys are sealed: written here they would be in the clear
        raise InputError(f"{store.folder}: a plain key store; importing would write the bundle's sealed keys in "
                         f"the clear: seal it first with `dkg-keys protect {store.folder}`")
    source = KeyStore(bundle, credentials=bundle_credentials)
    added = present = 0
    keys = [source.load(entry["fingerprint"]) for entry in source.entries()]
    for key in keys:
        try:
            store.find(key.fingerprint)
            present += 1
        except KeyMaterialError:
            store.add(key, action="import")
            added += 1
    source.record_use("export", file=str(store.folder.resolve()), keys=len(keys))
    return added, present
