"""A folder of keys: an append-only `index.jsonl` plus `keys/<fingerprint16>.png` and `.json` records.

`dkg-encrypt --keys DIR` stores each fresh key here and `dkg-decrypt --keys DIR` finds
it again by the fingerprint in the ciphertext's metadata (docs/keys.md, "Key store").

The index is JSON lines, one object per line: fingerprint, key file, record file,
shape, nonce, created, `used_for` (the plaintexts the key encrypted). It is only ever
appended to: storing a key appends its entry, recording a use appends the key's whole
updated entry, and **a later line supersedes earlier lines with the same fingerprint**.
So storing n keys writes O(n) bytes (the old rewrite-on-every-change was O(n²) for a
batch). When at least half of the lines are superseded, the index is compacted (live
entries only, in the order keys were first added) by an atomic replace, which costs
O(n) and happens rarely enough that the total stays O(n).

Every change happens under an exclusive lock on `DIR/.lock`, so concurrent encryptions
are safe; every writer also holds the writers' lock shared for its life, so rotate and
protect wait for it, and a shard's writer holds the shard's own lock, so a merge leaves a
live shard alone (`keystore.locks`). A line counts once its newline is written: a reader
ignores a trailing partial line (a write in progress, or one a killed process left), and
the next writer cuts it off before appending only when the append intent proves it is a
torn append; any other cut line is an error, never trimmed. A `KeyStore` object keeps what it has read and
reads only the bytes appended since, so a lookup costs O(new lines), not O(n).

A **protected** store (`dkg-keys init`, or `dkg-keys protect` of a plain one) has the same
index mechanics, but its manifest `store.json` names the index file, every line is
`{"sealed": …}` (the entry, with the key's data key, under the key-encryption key) and each
key is `keys/<keyed name>.sealed` (its PNG under its data key); see `custody`. Both kinds
keep an audit log (`audit`) of what is done with their keys, written under the same lock.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from keras_dkg.common import file_lock, utc_timestamp
from keras_dkg.errors import DkgError, InputError, KeyMaterialError, OutputError
from keras_dkg.runtime.guards.atomic import append_whole_lines, write_bytes_atomic
from keras_dkg.runtime.guards.inputs import MAX_IMAGE_BYTES, read_bounded
from keras_dkg.runtime.keys.artifact import (
    Key,
    check_uses,
    load_key,
    mark_key_used,
    read_record,
    record_path_for,
    register_use,
    release_key_use,
    verify_key,
)
from keras_dkg.runtime.keystore import custody, locks, sealing
from keras_dkg.runtime.keystore.audit import AUDIT_NAME, GENESIS, AuditLog

INDEX_NAME = "index.jsonl"
KEYS_FOLDER = "keys"
LOCK_NAME = ".lock"
PRIVATE_MODE = 0o600  # the index and lock name plaintext files: for the owner only, like the keys
SEALED_SUFFIX = ".sealed"
SHARDS_FOLDER = "shards"  # one index file (and one audit chain) per worker of a multi-node batch
SHARD_SUFFIX = ".jsonl"
AUDIT_SHARD_SUFFIX = ".audit.jsonl"
SHARD_LOCK_SUFFIX = ".lock"
PENDING_PREFIX = ".pending."  # a sealed key written, its index line not yet: keys/.pending.<name>.sealed
_SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _check_shard_name(name: str | None) -> str | None:
    if name is not None and (not _SHARD_NAME.fullmatch(name) or name.endswith(".audit")):
        raise InputError(f"{name!r}: a shard name is letters, digits, '_', '.' and '-'")
    return name


class _Reader:
    """How far one index file has been read: committed bytes and lines, its identity, its last line."""

    def __init__(self, identity=None):
        self.identity = identity  # (st_dev, st_ino) of the file read
        self.offset = 0  # bytes of committed (newline-terminated) lines read so far
        self.lines = 0  # committed lines read so far (superseded ones included)
        self.tail = b""  # the last committed line read: still there, or the file was replaced

    def replaced(self, path: Path) -> bool:
        """Whether the file read so far is gone, another file, shorter, or rewritten (a compaction)."""
        if self.identity is None:
            return False
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if (stat.st_dev, stat.st_ino) != self.identity or stat.st_size < self.offset:
                    return True
                handle.seek(self.offset - len(self.tail))
                return handle.read(len(self.tail)) != self.tail
        except FileNotFoundError:
            return path.parent.name != SHARDS_FOLDER  # the main index gone: replaced; a merged shard is expected to go
        except OSError as exc:
            raise KeyMaterialError(f"{path}: cannot read the key store index ({exc.strerror or exc})") from exc

    def read_new(self, path: Path) -> list[tuple[int, bytes]]:
        """(line number, bytes) of the complete lines appended since the last call."""
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                self.identity = (stat.st_dev, stat.st_ino)
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeyMaterialError(f"{path}: cannot read the key store index ({exc.strerror or exc})") from exc
        end = data.rfind(b"\n")
        if end < 0:
            return []  # nothing new, or only a partial line
        raws = data[:end].split(b"\n")
        numbered = list(enumerate(raws, start=self.lines + 1))
        self.advance(data[:end + 1])
        return numbered

    def advance(self, data: bytes) -> None:
        """Count whole lines `data` (ending in a newline) as read."""
        self.offset += len(data)
        self.lines += data.count(b"\n")
        self.tail = data[data.rfind(b"\n", 0, len(data) - 1) + 1:]


def _short(fingerprint: str) -> str:
    return fingerprint.split(":", 1)[-1][:16]


def is_key_store(folder: str | os.PathLike) -> bool:
    """A plain store (`index.jsonl`) or a protected one (`store.json`)."""
    return (Path(folder) / INDEX_NAME).is_file() or custody.is_protected(folder)


class KeyStore:
    """Keys by fingerprint, with their use recorded (see module docstring).

    `create=True` makes the folder (and `keys/`, and an empty index) when missing; it is
    safe when several processes create the same store at once. Without it the folder
    must be a key store already (it has `index.jsonl`).
    """

    def __init__(self, folder: str | os.PathLike, create: bool = False,
                 credentials: custody.Credentials | None = None, shard: str | None = None,
                 writer: bool | None = None, wait_s: float = locks.DEFAULT_WAIT_S):
        self.folder = Path(folder)
        self.shard = _check_shard_name(shard)
        self.index_path = self.folder / INDEX_NAME
        self._lock_path = self.folder / LOCK_NAME
        self.vault: custody.Vault | None = None
        self._thread_lock = threading.RLock()  # threads of one process (the batch's writers) take turns
        self._hold: locks.WriterHold | None = None
        self._shard_hold: locks.ShardHold | None = None
        self.live_shards: list[str] = []  # shards the last merge left: their writers were alive
        self._reset()
        writer = (create or shard is not None) if writer is None else writer
        if writer and self.folder.is_dir():  # rotate/protect wait for every writer (keystore.locks)
            self._hold = locks.WriterHold(self.folder, wait_s)
        if custody.is_protected(self.folder):
            self._unlock(credentials)
        elif create:
            if not self.index_path.exists() and (self.folder / KEYS_FOLDER).is_dir() \
                    and any((self.folder / KEYS_FOLDER).iterdir()):
                raise KeyMaterialError(f"{self.folder}: keys/ holds keys but {INDEX_NAME} is missing (moved or "
                                       "not restored): put the index back; an empty one would hide every key")
            try:
                (self.folder / KEYS_FOLDER).mkdir(parents=True, exist_ok=True)
                for path in (self.index_path, self._lock_path):  # an empty index marks a key store
                    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE))
            except FileExistsError as exc:
                raise KeyMaterialError(f"{self.folder}: exists and is not a key store folder") from exc
            except OSError as exc:
                raise OutputError(f"{self.folder}: cannot create the key store ({exc.strerror or exc})") from exc
            if writer and self._hold is None:
                self._hold = locks.WriterHold(self.folder, wait_s)
        elif not self.folder.is_dir():
            raise KeyMaterialError(f"{self.folder}: no such key store folder")
        elif not self.index_path.is_file():
            raise KeyMaterialError(f"{self.folder}: not a keras_dkg key store (no {INDEX_NAME}); wrong --keys folder?")
        genesis = self.vault.manifest.get("audit_genesis", GENESIS) if self.vault is not None else GENESIS
        self.audit = AuditLog(self.folder / AUDIT_NAME, self.vault, genesis)
        self._write_path = self.index_path
        if self.shard is not None:  # this process writes only its own shard files (docs/scale.md)
            try:
                (self.folder / SHARDS_FOLDER).mkdir(exist_ok=True)
            except OSError as exc:
                raise OutputError(f"{self.folder}: cannot create {SHARDS_FOLDER}/ ({exc.strerror or exc})") from exc
            self._shard_hold = locks.ShardHold(self.folder / SHARDS_FOLDER / f"{self.shard}{SHARD_LOCK_SUFFIX}")
            self._write_path = self.folder / SHARDS_FOLDER / f"{self.shard}{SHARD_SUFFIX}"
            self.audit = AuditLog(self.folder / SHARDS_FOLDER / f"{self.shard}{AUDIT_SHARD_SUFFIX}", self.vault)
        self._audit_warned = False

    @property
    def protected(self) -> bool:
        return self.vault is not None

    def close(self) -> None:
        """Let rotate/protect run: this object writes no more (its shard can be merged)."""
        for hold in (self._shard_hold, self._hold):
            if hold is not None:
                hold.release()
        self._shard_hold = self._hold = None

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _unlock(self, credentials: custody.Credentials | None, tries: int = 3) -> None:
        """Open the manifest and its index; a reader that raced a rotation's commit reads the new one.

        A reader holds no lock: between its reading store.json and finding the index it names, a
        rotation may commit and remove that index. Then store.json has changed, and the store is
        opened again from it; an index missing under an unchanged store.json is the error it says.
        """
        for attempt in range(tries):
            self.vault = custody.unlock(self.folder, credentials)
            self.index_path = self.folder / self.vault.manifest["index"]
            try:
                self._check_index_named()
                return
            except KeyMaterialError:
                try:
                    now = custody.read_manifest(self.folder).get("index")
                except DkgError:
                    now = None
                if attempt == tries - 1 or now == self.vault.manifest["index"]:
                    raise

    def _check_index_named(self) -> None:
        """The index `store.json` names must be there: a missing one is an error, never an empty store."""
        expected = f"index.{self.vault.generation}.jsonl"
        if self.vault.manifest["index"] != expected:
            raise KeyMaterialError(f"{self.folder / custody.MANIFEST_NAME}: names index "
                                   f"{self.vault.manifest['index']!r}, but generation {self.vault.generation}'s "
                                   f"index is {expected} (store.json altered); put back the store's own store.json")
        if not self.index_path.is_file():
            newer = sorted(p.name for p in self.folder.glob("index.*.jsonl") if p.name != self.index_path.name)
            hint = (f"; {', '.join(newer)} is here: store.json may be an older copy — put back the newest "
                    "store.json") if newer else "; put it back from a backup"
            raise KeyMaterialError(f"{self.index_path}: the index store.json names is missing (the keys cannot "
                                   f"be opened without it){hint}")

    # ---- reading ---------------------------------------------------------------------

    def _reset(self) -> None:
        self._entries: dict[str, dict] = {}  # fingerprint -> newest entry; insertion order = first added
        self._readers: dict[Path, _Reader] = {}  # where each index file (main, shards) was read up to

    def _index_files(self) -> list[Path]:
        """The main index, then every worker's shard (SHARDS_FOLDER/*.jsonl), by name."""
        shards = self.folder / SHARDS_FOLDER
        found = sorted(p for p in shards.glob(f"*{SHARD_SUFFIX}") if not p.name.endswith(AUDIT_SHARD_SUFFIX)) \
            if shards.is_dir() else []
        return [self.index_path, *found]

    def _refresh(self) -> None:
        """Read the lines appended since the last call (everything again after a compaction)."""
        with self._thread_lock:
            self._refresh_unlocked()

    def _refresh_unlocked(self) -> None:
        if self.vault is not None and not self.index_path.exists():
            self._check_unchanged()  # a rotation replaced the index: say so, not "no such key"
            self._check_index_named()  # not rotated: the index is gone, which is an error, not an empty store
        files = self._index_files()
        if any(self._readers.get(path, _Reader()).replaced(path) for path in files):
            self._reset()  # a file was replaced (compaction) or cut: read it all again
        for path in files:
            reader = self._readers.setdefault(path, _Reader())
            for number, raw in reader.read_new(path):
                entry = self._parse(raw, f"{path}:{number}")
                if entry is not None:
                    self._entries[entry["fingerprint"]] = entry

    def _parse(self, raw: bytes, label: str) -> dict | None:
        if not raw.strip():
            return None
        try:
            entry = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = getattr(exc, "msg", None) or getattr(exc, "reason", None) or str(exc)
            raise KeyMaterialError(f"{label}: damaged index line ({reason})") from exc
        if self.vault is not None:
            entry = self._open_line(entry, label)
        if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str) \
                or not isinstance(entry.get("key_file"), str):
            raise KeyMaterialError(f"{label}: not a key store entry (no fingerprint or key_file string)")
        check_uses(entry.get("used_for", []), label)
        if Path(entry["key_file"]).is_absolute() or ".." in Path(entry["key_file"]).parts:
            raise KeyMaterialError(f"{label}: key_file {entry['key_file']!r} points outside the key store")
        return entry

    def _open_line(self, line, label: str) -> dict:
        if not isinstance(line, dict) or not isinstance(line.get("sealed"), str):
            raise KeyMaterialError(f"{label}: a line in the clear in a protected key store (altered or "
                                   "written by something else)")
        return self.vault.open_entry(line["sealed"], label)

    def _line(self, entry: dict) -> bytes:
        if self.vault is not None:
            return (json.dumps({"sealed": self.vault.seal_entry(entry)}) + "\n").encode("utf-8")
        return (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")

    def entries(self) -> list[dict]:
        """The current entry of every key, in the order keys were added (data keys left out)."""
        self._refresh()
        return [_public(entry) for entry in self._entries.values()]

    def find(self, fingerprint: str) -> dict:
        return _public(self._find(fingerprint))

    def _live_entries(self) -> list[dict]:
        """Every current entry with its data key (for rotation and protection, under the lock)."""
        self._refresh()
        return [copy.deepcopy(entry) for entry in self._entries.values()]

    def _find(self, fingerprint: str) -> dict:
        self._refresh()
        entry = self._entries.get(fingerprint)
        if entry is None:
            raise KeyMaterialError(f"{self.folder}: no key with fingerprint {fingerprint[:23]}… in this key store")
        return entry

    def resolve(self, prefix: str) -> str:
        """The one fingerprint that starts with `prefix` ("sha256:" optional, at least 8 hex digits)."""
        text = prefix.strip().lower()
        text = text if text.startswith("sha256:") else "sha256:" + text
        if len(text) < len("sha256:") + 8:
            raise InputError(f"{prefix!r}: give at least 8 hex digits of the fingerprint")
        self._refresh()
        matches = [fp for fp in self._entries if fp.startswith(text)]
        if len(matches) != 1:
            what = "no key" if not matches else f"{len(matches)} keys"
            raise KeyMaterialError(f"{self.folder}: {what} with a fingerprint starting {prefix!r}")
        return matches[0]

    def load(self, fingerprint: str) -> Key:
        """The verified key with this fingerprint."""
        entry = self._find(fingerprint)
        if self.vault is not None:
            key = self._open_key(entry)
        else:
            with contextlib.suppress(OutputError):  # (read-only media: the load below says what is missing)
                self._finish_names(entry)  # a writer killed between its line and the renames
            key = load_key(self.folder / entry["key_file"])
        if key.fingerprint != fingerprint:
            raise KeyMaterialError(f"{self.folder}: index entry for {fingerprint[:23]}… points at another key")
        return key

    def _open_key(self, entry: dict) -> Key:
        path = self.folder / entry["key_file"]
        label = str(path)
        if not path.is_file() and pending_path(path).is_file():
            path = pending_path(path)  # a writer killed between the line and the rename: the key is here
        if not path.is_file():
            raise KeyMaterialError(f"{path}: no such key file (the index names it: lost or moved)")
        blob = read_bounded(path, MAX_IMAGE_BYTES, "sealed key")
        name = Path(entry["key_file"]).stem
        payload = self.vault.open_key(sealing.unb64(entry.get("dek", ""), label), name, blob, label)
        record = {**entry.get("record", {}), "used_for": copy.deepcopy(entry.get("used_for", []))}
        return verify_key(custody.unpack_pixels(payload, label), record, label)

    def record_use(self, action: str, fingerprint: str | None = None, file: str | None = None, **fields) -> None:
        """Add an audit record (decrypt, verify, export, …); a store that cannot be written warns once."""
        try:
            with self._locked():
                self.audit.append(action, fingerprint=fingerprint, file=file, **fields)
        except (OutputError, KeyMaterialError) as exc:
            if not self._audit_warned:
                self._audit_warned = True
                print(f"warning: {self.folder}: the audit log was not written ({exc})", file=sys.stderr)

    # ---- writing (always under the lock) ---------------------------------------------

    @contextlib.contextmanager
    def _locked(self, appending: bool = False) -> Iterator[None]:
        """Hold the store's lock and bring the in-memory index up to date.

        `appending`: this block appends index lines, so first refuse a cut last line that no
        interrupted append explains (before a key file is written for nothing).
        """
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._thread_lock)
            if self._hold is None and not locks.holds_exclusive(self.folder):
                stack.callback(locks.WriterHold(self.folder).release)  # a one-off writer: this block
            if self.shard is None:  # a shard has one writer: no lock (none that works across nodes either)
                try:
                    stack.enter_context(file_lock(self._lock_path))
                except OSError as exc:
                    raise OutputError(f"{self._lock_path}: cannot lock the key store ({exc.strerror or exc})") from exc
            self._check_unchanged()
            self._refresh()
            if appending:
                self._check_write_tail()
            yield

    def _check_write_tail(self) -> None:
        path = self._write_path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        reader = self._readers.get(path)
        locks.check_tail(path, reader.offset if reader is not None else 0, size)

    def _check_unchanged(self) -> None:
        """Refuse to write when another process protected or rotated the store since it was opened."""
        if self.vault is None:
            if custody.is_protected(self.folder):
                raise KeyMaterialError(f"{self.folder}: the key store was protected by another process while "
                                       "this one had it open; run the command again")
            return
        if (self.folder / INDEX_NAME).exists():
            raise KeyMaterialError(f"{self.folder}: an interrupted `dkg-keys protect` left the plain store's files "
                                   f"here; run `dkg-keys protect {self.folder}` again to finish it")
        manifest = custody.read_manifest(self.folder)
        if (manifest["generation"], manifest["index"]) != (self.vault.generation, self.vault.manifest["index"]):
            raise KeyMaterialError(f"{self.folder}: the key store was rotated by another process while this one "
                                   "had it open; run the command again (with the new master key)")

    def _append(self, entry: dict) -> None:
        """Append one entry line to this writer's index file (main or shard; locked and just refreshed)."""
        self._append_bytes(self._write_path, self._line(entry))
        self._entries[entry["fingerprint"]] = copy.deepcopy(entry)
        if self.shard is None:
            self._compact_if_worth_it()

    def _append_bytes(self, path: Path, data: bytes) -> None:
        reader = self._readers.setdefault(path, _Reader())

        def committed(found) -> int:
            # a file other than the one read (created just now) has nothing committed yet
            whole = reader.offset if found == reader.identity else 0
            size = path.stat().st_size
            locks.check_tail(path, whole, size)  # only a provably torn append is cut off
            locks.begin_append(path, whole, len(data))
            return whole

        identity = append_whole_lines(path, data, committed, "key store index", PRIVATE_MODE)
        locks.end_append(path)
        if identity != reader.identity:
            reader.__init__(identity)
        reader.advance(data)

    def _compact_if_worth_it(self) -> None:
        """Rewrite the index with live entries only once at least half of its lines are superseded."""
        live = len(self._entries)
        lines = sum(reader.lines for reader in self._readers.values())
        if lines - live < max(live, 1) or len(self._index_files()) > 1:
            return  # (not while shards are unmerged: their lines would be counted twice)
        data = b"".join(self._line(entry) for entry in self._entries.values())
        write_bytes_atomic(self.index_path, data, overwrite=True)
        stat = self.index_path.stat()
        reader = self._readers[self.index_path] = _Reader((stat.st_dev, stat.st_ino))
        reader.advance(data)
        reader.lines = live

    def merge_shards(self, wait_for: tuple[str, ...] | list[str] = (), wait_s: float = 0.0) -> int:
        """Append every *finished* shard's lines to the main index and delete it; return the lines merged.

        A shard is finished when its lock (held by its writer for its life) can be taken: a
        live writer's shard is left for a later merge (`live_shards` names them), so no line
        appended after it was read is ever deleted. `wait_for` names shards worth waiting up
        to `wait_s` for (the caller's own, whose writers are ending). Run by the batch
        driver and by `dkg-keys` before a rotation. Killed between the append and the
        delete, the lines are there twice: identical entries, dropped by the next compaction.
        """
        if self.shard is not None:
            raise KeyMaterialError("a shard writer cannot merge shards (the driver does)")
        merged = 0
        self.live_shards = []
        with self._locked(appending=True):
            for name in self._shard_names():
                lock = self.folder / SHARDS_FOLDER / f"{name}{SHARD_LOCK_SUFFIX}"
                with locks.finished_shard(lock, wait_s if name in wait_for else 0.0) as finished:
                    if not finished:
                        self.live_shards.append(name)
                        continue
                    merged += self._merge_shard(name)
                    lock.unlink(missing_ok=True)  # held: no writer of this (unique) name comes back
            self._compact_if_worth_it()
        return merged

    def _shard_names(self) -> list[str]:
        shards = self.folder / SHARDS_FOLDER
        if not shards.is_dir():
            return []
        names = {p.name[:-len(AUDIT_SHARD_SUFFIX)] for p in shards.glob(f"*{AUDIT_SHARD_SUFFIX}")}
        names |= {p.name[:-len(SHARD_SUFFIX)] for p in shards.glob(f"*{SHARD_SUFFIX}")
                  if not p.name.endswith(AUDIT_SHARD_SUFFIX)}
        return sorted(names)

    def _merge_shard(self, name: str) -> int:
        """One finished shard: its index lines (every one opens first), then its audit chain."""
        path = self.folder / SHARDS_FOLDER / f"{name}{SHARD_SUFFIX}"
        merged = 0
        if path.exists():
            data = path.read_bytes()
            whole = data[:data.rfind(b"\n") + 1]
            locks.check_tail(path, len(whole), len(data))  # a killed worker's torn line only
            for number, raw in enumerate(whole.split(b"\n")[:-1], start=1):
                self._parse(raw, f"{path}:{number}")  # every line opens before any is merged
            if whole:
                self._append_bytes(self.index_path, whole)
                merged = whole.count(b"\n")
        audit = self.folder / SHARDS_FOLDER / f"{name}{AUDIT_SHARD_SUFFIX}"
        if audit.exists():
            self._merge_audit_shard(AuditLog(audit, self.vault))
        for done in (path, locks.intent_path(path)):
            done.unlink(missing_ok=True)
            self._readers.pop(done, None)
        return merged

    def audit_shards(self) -> list[AuditLog]:
        """The workers' own audit chains (SHARDS_FOLDER/*.audit.jsonl), not merged yet."""
        shards = self.folder / SHARDS_FOLDER
        paths = sorted(shards.glob(f"*{AUDIT_SHARD_SUFFIX}")) if shards.is_dir() else []
        return [AuditLog(path, self.vault) for path in paths]

    def _merge_audit_shard(self, log: AuditLog) -> None:
        """A worker's audit chain, checked, then appended record by record to the main chain."""
        check, bodies = log.check()
        if check.broken:
            raise KeyMaterialError(f"{check.broken}; not merged (the shard is left as it is)")
        for body in bodies:
            fields = {name: value for name, value in body.items() if name not in ("action", "seq")}
            self.audit.append(body["action"], **fields, merged_from=log.path.name, merged_seq=body["seq"])
        log.path.unlink()

    def add(self, key: Key, plaintext_sha256: str | None = None, plaintext: str | None = None,
            allow_reuse: bool = False, action: str = "create") -> dict:
        """Store a key (idempotent for the same key) and return its index entry.

        With `plaintext_sha256` and `plaintext`, the key's first use is recorded in the same
        step (one index line, one record write), as `mark_used` would. Uses the key's record
        lists already (an imported key) are kept; `action` names the audit record.
        """
        with self._locked(appending=True):
            existing = self._entries.get(key.fingerprint)
            if existing is not None:
                if plaintext_sha256 is not None:
                    self._mark_used_locked(key.fingerprint, plaintext_sha256, str(plaintext), allow_reuse)
                return _public(self._entries[key.fingerprint])
            record = copy.deepcopy(key.record)
            used_for = record.setdefault("used_for", [])
            if plaintext_sha256 is not None:
                register_use(used_for, plaintext_sha256, str(plaintext), allow_reuse,
                             f"{self.folder} key {key.fingerprint[:23]}…")
            if self.vault is not None:
                entry = write_sealed_key(self.folder, self.vault, key, record, pending=True)
            else:
                entry = self._write_plain(key, record, allow_reuse)
            entry.update(shape=key.record["shape"], nonce=key.record.get("nonce"),
                         created=key.record.get("created", utc_timestamp()))
            self._anchor(entry)
            self._append(entry)
            self._finish_names(entry)  # the line is durable: the key takes its name (see write_sealed_key)
            if plaintext_sha256 is not None:  # one record (one fsync) for a key made for one file
                self.audit.append("encrypt", fingerprint=key.fingerprint, file=str(plaintext), new_key=True)
            else:
                self.audit.append(action, fingerprint=key.fingerprint)
            return _public(entry)

    def _write_plain(self, key: Key, record: dict, allow_reuse: bool) -> dict:
        relative = Path(KEYS_FOLDER) / f"{_short(key.fingerprint)}.png"
        target = self.folder / relative
        used_for = record["used_for"]
        if target.exists():
            # stored by a run killed before its index line: adopt it when it is this key
            if load_key(target).fingerprint != key.fingerprint:
                raise KeyMaterialError(f"{target}: holds another key; the key store is inconsistent")
            for use in used_for:
                mark_key_used(target, use["plaintext_sha256"], use["plaintext"], allow_reuse)
            used_for = read_record(record_path_for(target)).get("used_for", used_for)
        else:  # under `.pending.` names until the index line is durable (see write_sealed_key)
            Key(key.pixels, record).save(pending_path(target), overwrite=True)
        return {"fingerprint": key.fingerprint, "key_file": relative.as_posix(),
                "record_file": record_path_for(relative).as_posix(), "used_for": used_for}

    def _finish_names(self, entry: dict) -> None:
        for name in (entry["key_file"], entry.get("record_file")):  # the PNG before its record
            if name:
                finish_pending(self.folder, name)

    def _anchor(self, entry: dict) -> None:
        """Name, in the (sealed) line, the audit record that goes with it: a log cut below it shows."""
        entry["audit"] = {"log": self.audit.path.name, "seq": self.audit.next_seq()}

    def mark_used(self, fingerprint: str, plaintext_sha256: str, plaintext: str, allow_reuse: bool = False) -> bool:
        """Record that a key encrypts `plaintext`; refuse another plaintext unless allowed.

        Returns True when this call recorded a new use (False: this plaintext was recorded already).
        """
        with self._locked(appending=True):
            return self._mark_used_locked(fingerprint, plaintext_sha256, plaintext, allow_reuse)

    def _mark_used_locked(self, fingerprint: str, plaintext_sha256: str, plaintext: str, allow_reuse: bool) -> bool:
        entry = copy.deepcopy(self._entries.get(fingerprint))
        if entry is None:
            raise KeyMaterialError(f"{self.folder}: no key with fingerprint {fingerprint[:23]}…")
        label = f"{self.folder}/{entry['key_file']}"
        if not register_use(entry.setdefault("used_for", []), plaintext_sha256, plaintext, allow_reuse, label):
            return False
        if self.vault is None:
            self._finish_names(entry)  # (a writer killed between its line and the rename)
            # the record first: it refuses a use the index does not know of (made with --key)
            mark_key_used(self.folder / entry["key_file"], plaintext_sha256, plaintext, allow_reuse)
        self._anchor(entry)
        self._append(entry)
        self.audit.append("encrypt", fingerprint=fingerprint, file=plaintext)
        return True

    def release_use(self, fingerprint: str, plaintext_sha256: str) -> None:
        """Undo `mark_used` for a plaintext whose ciphertext was not written after all."""
        with self._locked(appending=True):
            entry = copy.deepcopy(self._entries.get(fingerprint))
            if entry is None:
                return
            used_for = entry.get("used_for", [])
            entry["used_for"] = [use for use in used_for if use.get("plaintext_sha256") != plaintext_sha256]
            if self.vault is None:
                release_key_use(self.folder / entry["key_file"], plaintext_sha256)
            if len(entry["used_for"]) != len(used_for):
                self._anchor(entry)
                self._append(entry)
                released = [use.get("plaintext") for use in used_for if use.get("plaintext_sha256") == plaintext_sha256]
                self.audit.append("release", fingerprint=fingerprint, file=released[0] if released else None)


def write_sealed_key(folder: Path, vault: custody.Vault, key: Key, record: dict, pending: bool = False) -> dict:
    """The key's pixels under a fresh data key in `keys/<keyed name>.sealed`; its index entry (with the data key).

    `pending=True` writes `keys/.pending.<name>.sealed` instead; `finish_pending` renames it
    once its index line is durable. So a sealed key under its own name always has a line:
    one in no line is a lost index line (an error), while a killed writer leaves only a
    `.pending.` file (its data key was never written: nothing can open it).
    """
    name = vault.key_name(key.fingerprint)
    relative = Path(KEYS_FOLDER) / f"{name}{SEALED_SUFFIX}"
    dek = sealing.random_key()
    blob = vault.seal_key(dek, name, custody.pack_pixels(key.pixels))
    target = folder / relative
    # (protect writes final names: until its commit the store is plain and they are nobody's keys)
    write_bytes_atomic(pending_path(target) if pending else target, blob, overwrite=True)
    kept = {field: value for field, value in record.items() if field != "used_for"}
    return {"fingerprint": key.fingerprint, "key_file": relative.as_posix(), "record": kept,
            "dek": sealing.b64(dek), "used_for": record["used_for"]}


def pending_path(path: Path) -> Path:
    return path.with_name(f"{PENDING_PREFIX}{path.name}")


def finish_pending(folder: Path, key_file: str) -> None:
    """Give a sealed key whose index line is written its own name."""
    target = folder / key_file
    try:
        os.replace(pending_path(target), target)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"{target}: cannot name the stored key ({exc.strerror or exc})") from exc


def _public(entry: dict) -> dict:
    """An index entry without the key's data key and audit anchor (what lists, shows and callers see)."""
    return {name: copy.deepcopy(value) for name, value in entry.items() if name not in ("dek", "audit")}


def store_of_key(key_path: str | os.PathLike) -> KeyStore | None:
    """The key store that holds this key file (`DIR/keys/X.png` indexed in `DIR`), else None."""
    image_path = Path(key_path)
    if image_path.suffix.lower() == ".json":
        image_path = image_path.with_suffix(".png")
    folder = image_path.resolve().parent
    if folder.name != KEYS_FOLDER or not (folder.parent / INDEX_NAME).is_file():
        return None
    try:
        store = KeyStore(folder.parent)
        entry = store.find(read_record(record_path_for(image_path))["fingerprint"])
    except KeyMaterialError:
        return None
    if (store.folder / entry["key_file"]).resolve() != image_path.resolve():
        return None
    return store


def mark_key_file_used(key_path: str | os.PathLike, plaintext_sha256: str, plaintext: str,
                       allow_reuse: bool = False) -> None:
    """Record a use of a key given as a file (`--key KEY.png`).

    A key that lives in a key store is marked through the store, so its record and the
    store's index agree; any other key file only in its record (`keys.mark_key_used`).
    """
    store = store_of_key(key_path)
    if store is None:
        mark_key_used(key_path, plaintext_sha256, plaintext, allow_reuse)
        return
    fingerprint = read_record(record_path_for(Path(key_path).with_suffix(".png")))["fingerprint"]
    store.mark_used(fingerprint, plaintext_sha256, plaintext, allow_reuse)


@contextlib.contextmanager
def key_use(where: KeyStore | str | os.PathLike, fingerprint: str, plaintext_sha256: str, plaintext: str,
            allow_reuse: bool = False) -> Iterator[None]:
    """Reserve a key for `plaintext` while its ciphertext is written; undo the reservation if that fails.

    `where` is the key store that holds the key, or the key file (`--key KEY.png`; a key
    store's key file is marked through its store, see `mark_key_file_used`). The use is
    recorded *before* the block, so two processes cannot both take one key; when the
    block raises (disk full, read-only folder, output created meanwhile), a use this call
    added is removed again and the key is as it was.
    """
    store = where if isinstance(where, KeyStore) else store_of_key(where)
    if store is not None:
        added = store.mark_used(fingerprint, plaintext_sha256, plaintext, allow_reuse)
    else:
        added = mark_key_used(where, plaintext_sha256, plaintext, allow_reuse)
    try:
        yield
    except BaseException:
        if added:
            if store is not None:
                store.release_use(fingerprint, plaintext_sha256)
            else:
                release_key_use(where, plaintext_sha256)
        raise
