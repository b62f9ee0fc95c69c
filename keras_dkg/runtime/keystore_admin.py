"""What `dkg-keys` does to a store as a whole: init, protect, rotate, verify, export, import, audit.

Each operation that changes the kind or the master key of a store has one commit point,
the atomic replacement of `store.json` (docs/keys.md, "Custody"):

* **rotate** writes the whole index again under the new key-encryption key as
  `index.<generation+1>.jsonl` (every data key rewrapped; key files untouched), then
  replaces `store.json`, then deletes the old index. Killed before the commit, the store
  opens with the old master key; after it, with the new one. Never neither.
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
from dataclasses import dataclass, field
from pathlib import Path

from keras_dkg.common import utc_timestamp
from keras_dkg.errors import InputError, KeyMaterialError, OutputError
from keras_dkg.runtime import sealing
from keras_dkg.runtime.audit import AUDIT_NAME, GENESIS, AuditLog
from keras_dkg.runtime.custody import (
    MANIFEST_NAME,
    STORE_FORMAT,
    Credentials,
    Vault,
    check_key_file_outside,
    is_protected,
    seal_keyring,
    write_key_file,
)
from keras_dkg.runtime.imageio import write_bytes_atomic
from keras_dkg.runtime.keystore import (
    INDEX_NAME,
    KEYS_FOLDER,
    LOCK_NAME,
    PRIVATE_MODE,
    SEALED_SUFFIX,
    KeyStore,
    write_sealed_key,
)
from keras_dkg.runtime.outputs import OutputGuard

ROTATE_PHASES = ("derive", "index", "commit", "cleanup")
PROTECT_PHASES = ("keys", "index", "archive", "commit", "cleanup")
NEXT_AUDIT = "audit.next.jsonl"


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
                 fail_after: str | None = None) -> dict:
    """A new master key: every data key rewrapped, key files and ciphertexts untouched (module docstring)."""
    store = KeyStore(folder, credentials=credentials)
    if store.vault is None:
        raise InputError(f"{folder}: a plain key store has no master key to rotate; `dkg-keys protect` it first")
    _prepare_credentials(new_credentials, creating=True, folder=folder)
    old = store.vault
    store.merge_shards()  # every line in the one index that is sealed again
    with store._locked():
        _remove_stale_indexes(store.folder, keep=old.manifest["index"])
        generation = old.generation + 1
        audit_keys = {**old.audit_keys, generation: sealing.random_key()}
        vault = _new_vault(store.folder, new_credentials, generation, old.store_id, old.lookup, audit_keys,
                           {**old.manifest, "rotated": utc_timestamp()})
        _phase("derive", fail_after)
        entries = store._live_entries()
        write_bytes_atomic(store.folder / vault.manifest["index"],
                           b"".join(_sealed_line(vault, entry) for entry in entries), overwrite=True)
        _phase("index", fail_after)
        _write_manifest(store.folder, vault.manifest)
        _phase("commit", fail_after)
        (store.folder / old.manifest["index"]).unlink(missing_ok=True)
        _phase("cleanup", fail_after)
        AuditLog(store.folder / AUDIT_NAME, vault, vault.manifest.get("audit_genesis", GENESIS)).append(
            "rotate", generation=generation, keys=len(entries), protection=new_credentials.kind)
    return {"generation": generation, "keys": len(entries)}


def _remove_stale_indexes(folder: Path, keep: str) -> None:
    """Index files of killed rotations (under the old or an unused master key)."""
    for path in folder.glob("index.*.jsonl"):
        if path.name != keep:
            path.unlink(missing_ok=True)


def protect_store(folder: str | os.PathLike, credentials: Credentials, fail_after: str | None = None) -> dict:
    """Turn a plain store into a protected one in place (module docstring); finish an interrupted run."""
    folder = Path(folder)
    if is_protected(folder):
        store = KeyStore(folder, credentials=credentials)
        return {"keys": len(store._live_entries()), "finished": _finish_protect(store.folder, fail_after)}
    plain = KeyStore(folder)
    _prepare_credentials(credentials, creating=True, folder=folder)
    plain.merge_shards()
    with plain._locked():
        _remove_stale_indexes(plain.folder, keep=INDEX_NAME)
        vault = _new_vault(plain.folder, credentials, 1, uuid.uuid4().hex, sealing.random_key(),
                           {1: sealing.random_key()}, {"created": utc_timestamp(), "protected": utc_timestamp()})
        lines = []
        for entry in plain._live_entries():
            key = plain.load(entry["fingerprint"])
            record = {**key.record, "used_for": entry.get("used_for", [])}
            new = write_sealed_key(plain.folder, vault, key, record)
            new.update(shape=entry.get("shape"), nonce=entry.get("nonce"), created=entry.get("created"))
            lines.append(_sealed_line(vault, new))
        _phase("keys", fail_after)
        write_bytes_atomic(plain.folder / vault.manifest["index"], b"".join(lines), overwrite=True)
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
        _finish_protect(plain.folder, fail_after)
    return {"keys": len(lines), "finished": True}


def _finish_protect(folder: Path, fail_after: str | None) -> bool:
    """Delete what a protect left of the plain store; True when there was something to do."""
    leftovers = plain_leftovers(folder)
    if (folder / NEXT_AUDIT).exists():
        os.replace(folder / NEXT_AUDIT, folder / AUDIT_NAME)  # the sealed log replaces the plain one
    for path in leftovers:
        if path.name != AUDIT_NAME:
            path.unlink(missing_ok=True)
    _phase("cleanup", fail_after)
    return bool(leftovers)


def plain_leftovers(folder: Path) -> list[Path]:
    """The plain files of a protected store (a `protect` that was interrupted)."""
    found = [folder / INDEX_NAME] if (folder / INDEX_NAME).exists() else []
    keys = folder / KEYS_FOLDER
    if keys.is_dir():
        found += sorted(p for p in keys.iterdir() if p.suffix.lower() in (".png", ".json"))
    if (folder / NEXT_AUDIT).exists():
        found.append(folder / AUDIT_NAME)  # the plain log; the sealed one waits as NEXT_AUDIT
    return found


@dataclass
class Verification:
    """What `verify_store` found: errors (exit 1) and notes (worth knowing, harmless)."""

    keys: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verify_store(store: KeyStore) -> Verification:
    """Every key opens and matches its fingerprint and record; no dangling line, no plaintext leftover."""
    result = Verification()
    entries = store._live_entries()
    result.keys = len(entries)
    referenced = set()
    for entry in entries:
        referenced.add(Path(entry["key_file"]).name)
        if entry.get("record_file"):
            referenced.add(Path(entry["record_file"]).name)
        try:
            key = store.load(entry["fingerprint"])
            if list(key.shape) != list(entry.get("shape") or key.shape):
                result.errors.append(f"{entry['key_file']}: shape {list(key.shape)} but the index says {entry['shape']}")
            if store.vault is None:
                recorded = {use.get("plaintext_sha256") for use in key.record.get("used_for", [])}
                indexed = {use.get("plaintext_sha256") for use in entry.get("used_for", [])}
                if recorded != indexed:
                    result.errors.append(f"{entry['key_file']}: its record and the index list different uses")
        except (KeyMaterialError, InputError) as exc:
            result.errors.append(str(exc))
    keys_folder = store.folder / KEYS_FOLDER
    for path in sorted(keys_folder.iterdir()) if keys_folder.is_dir() else []:
        if path.name.startswith("."):
            result.notes.append(f"{path}: a temporary file of an interrupted write (safe to delete)")
        elif path.name not in referenced and (store.vault is None or path.suffix == SEALED_SUFFIX):
            result.notes.append(f"{path}: in no index line (a run killed between the key and its line; "
                                "no ciphertext uses it)")
    if store.vault is not None:
        for path in plain_leftovers(store.folder):
            result.errors.append(f"{path}: a plain file left by an interrupted `dkg-keys protect` (it leaks): "
                                 f"run `dkg-keys protect {store.folder}` again")
        for path in store.folder.glob("index.*.jsonl"):
            generation = path.name.split(".")[1]
            if path.name == store.vault.manifest["index"]:
                continue
            if generation.isdigit() and int(generation) > store.vault.generation:
                result.notes.append(f"{path}: written by a rotation killed before its commit (under a master key "
                                    "never used; the next rotation removes it)")
            else:
                result.errors.append(f"{path}: an older index left by an interrupted rotation (it opens under the "
                                     f"old master key): run `dkg-keys rotate {store.folder}` again")
    store.record_use("verify", keys=result.keys, errors=len(result.errors))
    return result


def audit_store(store: KeyStore) -> tuple[list[str], list[dict], int]:
    """(problems, records, count): the chain of the audit log, and of the archived plain log if any."""
    problems: list[str] = []
    records: list[dict] = []
    count = 0
    archive = store.vault.manifest.get("audit_archive") if store.vault is not None else None
    if archive:
        path = store.folder / archive["file"]
        try:
            raw = store.vault.open_archive(path.read_bytes(), int(archive["generation"]), str(path))
        except (OSError, KeyMaterialError) as exc:
            problems.append(f"{path}: the archived plain audit log does not open ({exc})")
        else:
            check, bodies = AuditLog(path).check(raw)
            count += check.records
            records += bodies
            if check.broken:
                problems.append(f"{path} (archived log): {check.broken.split(': ', 1)[-1]}")
            elif check.head != store.vault.manifest.get("audit_genesis"):
                problems.append(f"{path}: the archived log does not end where the current log begins")
    for log in [store.audit, *store.audit_shards()]:  # each worker's shard is a chain of its own
        check, bodies = log.check()
        count += check.records
        records += bodies
        if check.broken:
            problems.append(check.broken)
    return problems, records, count


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
