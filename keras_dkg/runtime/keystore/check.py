"""`dkg-keys verify` and `audit`: is every key, index file and index line of a store accounted for?

`verify` exits non-zero for every state in which something could be a lost key: an index
file `store.json` does not account for (a restored old `store.json`, a moved index), a
sealed key in no index line (its data key lives only in that line), a cut last index line
that no interrupted append explains, an index line whose audit record is gone (a cut or
deleted log). docs/keys.md, "What verify says", lists each state.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from keras_dkg.common import file_lock
from keras_dkg.errors import InputError, KeyMaterialError
from keras_dkg.runtime.keystore import locks
from keras_dkg.runtime.keystore.audit import AUDIT_NAME, AuditLog
from keras_dkg.runtime.keystore.store import (
    INDEX_NAME,
    KEYS_FOLDER,
    LOCK_NAME,
    PENDING_PREFIX,
    SEALED_SUFFIX,
    SHARD_LOCK_SUFFIX,
    SHARD_SUFFIX,
    SHARDS_FOLDER,
    KeyStore,
    finish_pending,
)

NEXT_AUDIT = "audit.next.jsonl"
PROTECT_PENDING = "protect.pending.json"  # the sealed index a protect is writing (name, SHA-256)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def account(name: str, data: bytes) -> dict:
    """How `store.json` accounts for an index file it does not name: its name and SHA-256."""
    return {"file": name, "sha256": hashlib.sha256(data).hexdigest()}


def accounted(path: Path, manifest: dict) -> str | None:
    """Why the manifest accounts for this index file ("pending"/"replaced"), else None."""
    for field_name, why in (("pending_index", "pending"), ("replaced_index", "replaced")):
        record = manifest.get(field_name)
        if isinstance(record, dict) and record.get("file") == path.name:
            try:
                if hashlib.sha256(path.read_bytes()).hexdigest() == record.get("sha256"):
                    return why
            except OSError:
                return None
    return None


def unaccounted_indexes(folder: Path, manifest: dict) -> list[Path]:
    """Index files of the store that `manifest` neither names nor accounts for byte for byte."""
    return [p for p in sorted(folder.glob("index.*.jsonl"))
            if p.name != manifest["index"] and accounted(p, manifest) is None]


def store_manifest(store: KeyStore) -> dict:
    """`store.json`, or for a plain store what stands in for it (a protect's pending index)."""
    if store.vault is not None:
        return store.vault.manifest
    return {"index": INDEX_NAME, "generation": 0, "pending_index": _read_json(store.folder / PROTECT_PENDING)}


def unaccounted_message(path: Path, manifest: dict) -> str:
    number = path.name.split(".")[1] if path.name.count(".") == 2 else ""
    newer = number.isdigit() and int(number) > manifest["generation"]
    why = ("store.json may be an older copy (a partial restore): put back the newest store.json"
           if newer else "it may hold keys the current index lacks (an old or restored copy)")
    return (f"{path}: an index file store.json does not account for; {why}. Nothing deletes it; "
            "move it out of the store only once its keys are known to be elsewhere")


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
    """Every key opens and matches its fingerprint and record; every index file, line and key is accounted for."""
    result = Verification()
    _check_index_files(store, result)
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
    _check_key_files(store, referenced, result)
    result.errors += anchor_problems(store, entries)
    if store.vault is not None:
        for path in plain_leftovers(store.folder):
            result.errors.append(f"{path}: a plain file left by an interrupted `dkg-keys protect` (it leaks): "
                                 f"run `dkg-keys protect {store.folder}` again")
    store.record_use("verify", keys=result.keys, errors=len(result.errors))
    return result


def _check_index_files(store: KeyStore, result: Verification) -> None:
    """Index files store.json does not name, and a cut last line of the one it names."""
    manifest = store_manifest(store)
    for path in sorted(store.folder.glob("index.*.jsonl")):
        if path.name == manifest["index"]:
            continue
        why = accounted(path, manifest)
        if why == "pending":
            result.notes.append(f"{path}: written by a rotation or protect killed before its commit (store.json "
                                "records its digest: a copy of keys the index has, under a master key never used)")
        elif why == "replaced":
            result.errors.append(f"{path}: the previous index, left by an interrupted rotation (it opens under "
                                 f"the old master key): run `dkg-keys rotate {store.folder}` again")
        else:
            result.errors.append(unaccounted_message(path, manifest))
    with file_lock(store.folder / LOCK_NAME):  # no append of the main index is in progress
        _check_tail(store.index_path, result)
    for name in store._shard_names():
        shard = store.folder / SHARDS_FOLDER / f"{name}{SHARD_SUFFIX}"
        with locks.finished_shard(shard.with_suffix(SHARD_LOCK_SUFFIX)) as finished:
            if finished:  # (a live writer's shard may be mid-append)
                _check_tail(shard, result)


def _check_tail(path: Path, result: Verification) -> None:
    try:
        data = path.read_bytes()
    except OSError:
        return  # (opening the store reported a missing index already; a shard merged meanwhile)
    whole = data.rfind(b"\n") + 1
    if len(data) > whole:
        if locks.torn_append(path, whole, len(data)):
            result.notes.append(f"{path}: ends in an append a killed writer left half-done "
                                "(no ciphertext uses its key); the next write removes it")
        else:
            result.errors.append(locks.cut_line_message(path, len(data) - whole))


def _check_key_files(store: KeyStore, referenced: set[str], result: Verification) -> None:
    keys_folder = store.folder / KEYS_FOLDER
    for path in sorted(keys_folder.iterdir()) if keys_folder.is_dir() else []:
        if path.name.startswith(PENDING_PREFIX):
            final = path.name[len(PENDING_PREFIX):]
            if final in referenced:
                finish_pending(store.folder, f"{KEYS_FOLDER}/{final}")  # (atomic, idempotent: no lock needed)
                result.notes.append(f"{path}: named {final} now (its writer was killed after its index line)")
            elif store.vault is not None:
                result.notes.append(f"{path}: a key a run killed before its index line (its data key was never "
                                    "written: nothing can open it, no ciphertext uses it; safe to delete)")
            else:
                result.notes.append(f"{path}: a key a run killed before its index line (no ciphertext uses it)")
        elif path.name.startswith("."):
            result.notes.append(f"{path}: a temporary file of an interrupted write (safe to delete)")
        elif path.name in referenced:
            continue
        elif store.vault is not None and path.suffix == SEALED_SUFFIX:
            result.errors.append(f"{path}: a sealed key in no index line — its data key is only in that line: "
                                 "put back the index (or store.json) that lists it from a backup")
        elif store.vault is None:
            result.errors.append(f"{path}: a key file in no index line: put back the index that lists it from a "
                                 "backup (its record says what it encrypted; a store written before keys were "
                                 "stored under .pending. names may also hold one from a killed run)")


def anchor_problems(store: KeyStore, entries: list[dict] | None = None) -> list[str]:
    """Index lines whose audit record is gone: a log cut at its end or deleted shows here.

    Each line names (sealed, in a protected store) the audit log and sequence number of the
    record written with it; a shard's records, once merged, carry `merged_from`/`merged_seq`.
    """
    entries = store._live_entries() if entries is None else entries
    logs = [store.audit, *store.audit_shards()]
    checks = {log.path.name: log.check() for log in logs}
    walked = {name: bodies for name, (_, bodies) in checks.items()}
    broken = {name for name, (check, _) in checks.items() if check.broken}  # reported as a break already
    merged = {(body.get("merged_from"), body.get("merged_seq")): body for body in walked[store.audit.path.name]}
    problems = []
    for entry in entries:
        anchor = entry.get("audit")
        if not isinstance(anchor, dict):
            continue  # written before lines named their records
        name, seq = anchor.get("log"), anchor.get("seq")
        bodies = walked.get(name)
        if bodies is not None and isinstance(seq, int) and 0 <= seq < len(bodies):
            body = bodies[seq]
        else:
            body = merged.get((name, seq))
        if body is None and (name in broken or (store.audit.path.name in broken and (name, seq) not in merged
                                                and name not in walked)):
            continue  # past a broken link: unknown, not missing
        if body is None:
            problems.append(f"{store.folder / str(name)}: record {seq}, written with key {entry['fingerprint'][:23]}…'s "
                            "newest index line, is missing: the audit log was cut or deleted")
        elif body.get("fingerprint") != entry["fingerprint"]:
            problems.append(f"{store.folder / str(name)}: record {seq} names another key than the index line that "
                            "names it: the audit log was replaced")
    anchor = store.vault.manifest.get("audit_anchor") if store.vault is not None else None
    if isinstance(anchor, dict) and isinstance(anchor.get("seq"), int) \
            and len(walked[store.audit.path.name]) <= anchor["seq"]:
        problems.append(f"{store.audit.path}: ends before record {anchor['seq']}, which store.json recorded at the "
                        "last rotation: the audit log was cut or deleted")
    return problems


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
    problems += anchor_problems(store)
    return problems, records, count
