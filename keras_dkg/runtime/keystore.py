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
are safe. A line counts once its newline is written: a reader ignores a trailing partial
line (a write in progress, or one a killed process left), and the next writer, holding
the lock, cuts it off before appending. A `KeyStore` object keeps what it has read and
reads only the bytes appended since, so a lookup costs O(new lines), not O(n).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path

from keras_dkg.common import file_lock, utc_timestamp
from keras_dkg.errors import KeyMaterialError, OutputError
from keras_dkg.runtime.imageio import write_bytes_atomic
from keras_dkg.runtime.keys import (
    Key,
    check_uses,
    load_key,
    mark_key_used,
    read_record,
    record_path_for,
    register_use,
    release_key_use,
)

INDEX_NAME = "index.jsonl"
KEYS_FOLDER = "keys"
LOCK_NAME = ".lock"
PRIVATE_MODE = 0o600  # the index and lock name plaintext files: for the owner only, like the keys


def _short(fingerprint: str) -> str:
    return fingerprint.split(":", 1)[-1][:16]


class KeyStore:
    """Keys by fingerprint, with their use recorded (see module docstring).

    `create=True` makes the folder (and `keys/`, and an empty index) when missing; it is
    safe when several processes create the same store at once. Without it the folder
    must be a key store already (it has `index.jsonl`).
    """

    def __init__(self, folder: str | os.PathLike, create: bool = False):
        self.folder = Path(folder)
        self.index_path = self.folder / INDEX_NAME
        self._lock_path = self.folder / LOCK_NAME
        self._reset(None)
        if create:
            try:
                (self.folder / KEYS_FOLDER).mkdir(parents=True, exist_ok=True)
                for path in (self.index_path, self._lock_path):  # an empty index marks a key store
                    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE))
            except FileExistsError as exc:
                raise KeyMaterialError(f"{self.folder}: exists and is not a key store folder") from exc
            except OSError as exc:
                raise OutputError(f"{self.folder}: cannot create the key store ({exc.strerror or exc})") from exc
        elif not self.folder.is_dir():
            raise KeyMaterialError(f"{self.folder}: no such key store folder")
        elif not self.index_path.is_file():
            raise KeyMaterialError(f"{self.folder}: not a keras_dkg key store (no {INDEX_NAME}); wrong --keys folder?")

    # ---- reading ---------------------------------------------------------------------

    def _reset(self, identity) -> None:
        self._entries: dict[str, dict] = {}  # fingerprint -> newest entry; insertion order = first added
        self._offset = 0  # bytes of committed (newline-terminated) lines read so far
        self._lines = 0  # committed lines read so far (superseded ones included)
        self._identity = identity  # (st_dev, st_ino) of the index file read
        self._tail = b""  # the last committed line read: still there, or the file was replaced

    def _refresh(self) -> None:
        """Read the lines appended since the last call (all of them after a compaction)."""
        try:
            handle = open(self.index_path, "rb")
        except FileNotFoundError:
            self._reset(None)
            return
        except OSError as exc:
            raise KeyMaterialError(f"{self.index_path}: cannot read the key store index ({exc.strerror or exc})") from exc
        with handle:
            stat = os.fstat(handle.fileno())
            identity = (stat.st_dev, stat.st_ino)
            if identity != self._identity or stat.st_size < self._offset or not self._tail_matches(handle):
                self._reset(identity)  # first read, or replaced by a compaction (even on a reused inode)
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n")
        if end < 0:
            return  # nothing new, or only a partial line
        parsed = []
        for number, raw in enumerate(data[:end].split(b"\n"), start=self._lines + 1):
            if not raw.strip():
                parsed.append(None)
                continue
            try:
                entry = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                reason = getattr(exc, "msg", None) or getattr(exc, "reason", None) or str(exc)
                raise KeyMaterialError(f"{self.index_path}:{number}: damaged index line ({reason})") from exc
            if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str) \
                    or not isinstance(entry.get("key_file"), str):
                raise KeyMaterialError(f"{self.index_path}:{number}: not a key store entry "
                                       "(no fingerprint or key_file string)")
            check_uses(entry.get("used_for", []), f"{self.index_path}:{number}")
            if Path(entry["key_file"]).is_absolute() or ".." in Path(entry["key_file"]).parts:
                raise KeyMaterialError(f"{self.index_path}:{number}: key_file {entry['key_file']!r} points outside "
                                       "the key store")
            parsed.append(entry)
        for entry in parsed:
            if entry is not None:
                self._entries[entry["fingerprint"]] = entry
        self._lines += len(parsed)
        self._offset += end + 1
        self._tail = data[data.rfind(b"\n", 0, end) + 1:end + 1]

    def _tail_matches(self, handle) -> bool:
        if not self._tail:
            return True
        handle.seek(self._offset - len(self._tail))
        return handle.read(len(self._tail)) == self._tail

    def entries(self) -> list[dict]:
        """The current entry of every key, in the order keys were added."""
        self._refresh()
        return [copy.deepcopy(entry) for entry in self._entries.values()]

    def find(self, fingerprint: str) -> dict:
        self._refresh()
        entry = self._entries.get(fingerprint)
        if entry is None:
            raise KeyMaterialError(f"{self.folder}: no key with fingerprint {fingerprint[:23]}… in this key store")
        return copy.deepcopy(entry)

    def load(self, fingerprint: str) -> Key:
        """The verified key with this fingerprint."""
        key = load_key(self.folder / self.find(fingerprint)["key_file"])
        if key.fingerprint != fingerprint:
            raise KeyMaterialError(f"{self.folder}: index entry for {fingerprint[:23]}… points at another key")
        return key

    # ---- writing (always under the lock) ---------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock and bring the in-memory index up to date."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(file_lock(self._lock_path))
            except OSError as exc:
                raise OutputError(f"{self._lock_path}: cannot lock the key store ({exc.strerror or exc})") from exc
            self._refresh()
            yield

    def _append(self, entry: dict) -> None:
        """Append one entry line (caller holds the lock and has just refreshed)."""
        data = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
        try:
            fd = os.open(self.index_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, PRIVATE_MODE)
        except OSError as exc:
            raise OutputError(f"{self.index_path}: cannot write the key store index ({exc.strerror or exc})") from exc
        try:
            stat = os.fstat(fd)
            if (stat.st_dev, stat.st_ino) != self._identity:
                self._reset((stat.st_dev, stat.st_ino))  # created just now
            if stat.st_size > self._offset:
                os.ftruncate(fd, self._offset)  # a partial line left by a killed writer
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._offset)  # no partial line (disk full, ...)
            raise OutputError(f"{self.index_path}: cannot append to the key store index ({exc.strerror or exc})") from exc
        finally:
            os.close(fd)
        self._entries[entry["fingerprint"]] = copy.deepcopy(entry)
        self._offset += len(data)
        self._lines += 1
        self._tail = data
        self._compact_if_worth_it()

    def _compact_if_worth_it(self) -> None:
        """Rewrite the index with live entries only once at least half of its lines are superseded."""
        live = len(self._entries)
        if self._lines - live < max(live, 1):
            return
        data = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in self._entries.values()).encode("utf-8")
        write_bytes_atomic(self.index_path, data, overwrite=True)
        stat = self.index_path.stat()
        self._identity, self._offset, self._lines = (stat.st_dev, stat.st_ino), len(data), live
        self._tail = data[data.rfind(b"\n", 0, len(data) - 1) + 1:]

    def add(self, key: Key, plaintext_sha256: str | None = None, plaintext: str | None = None,
            allow_reuse: bool = False) -> dict:
        """Store a key (idempotent for the same key) and return its index entry.

        With `plaintext_sha256` and `plaintext`, the key's first use is recorded in the same
        step (one index line, one record write), as `mark_used` would.
        """
        with self._locked():
            existing = self._entries.get(key.fingerprint)
            if existing is not None:
                if plaintext_sha256 is not None:
                    self._mark_used_locked(key.fingerprint, plaintext_sha256, str(plaintext), allow_reuse)
                return copy.deepcopy(self._entries[key.fingerprint])
            relative = Path(KEYS_FOLDER) / f"{_short(key.fingerprint)}.png"
            record = copy.deepcopy(key.record)
            used_for = record.setdefault("used_for", [])
            if plaintext_sha256 is not None:
                register_use(used_for, plaintext_sha256, str(plaintext), allow_reuse, str(self.folder / relative))
            target = self.folder / relative
            if target.exists():
                # stored by a run killed before its index line: adopt it when it is this key
                if load_key(target).fingerprint != key.fingerprint:
                    raise KeyMaterialError(f"{target}: holds another key; the key store is inconsistent")
                for use in used_for:
                    mark_key_used(target, use["plaintext_sha256"], use["plaintext"], allow_reuse)
                used_for = read_record(record_path_for(target)).get("used_for", used_for)
            else:
                Key(key.pixels, record).save(target)
            entry = {
                "fingerprint": key.fingerprint,
                "key_file": relative.as_posix(),
                "record_file": record_path_for(relative).as_posix(),
                "shape": key.record["shape"],
                "nonce": key.record.get("nonce"),
                "created": key.record.get("created", utc_timestamp()),
                "used_for": used_for,
            }
            self._append(entry)
            return copy.deepcopy(entry)

    def mark_used(self, fingerprint: str, plaintext_sha256: str, plaintext: str, allow_reuse: bool = False) -> bool:
        """Record that a key encrypts `plaintext`; refuse another plaintext unless allowed.

        Returns True when this call recorded a new use (False: this plaintext was recorded already).
        """
        with self._locked():
            return self._mark_used_locked(fingerprint, plaintext_sha256, plaintext, allow_reuse)

    def _mark_used_locked(self, fingerprint: str, plaintext_sha256: str, plaintext: str, allow_reuse: bool) -> bool:
        entry = copy.deepcopy(self._entries.get(fingerprint))
        if entry is None:
            raise KeyMaterialError(f"{self.folder}: no key with fingerprint {fingerprint[:23]}…")
        label = f"{self.folder}/{entry['key_file']}"
        if not register_use(entry.setdefault("used_for", []), plaintext_sha256, plaintext, allow_reuse, label):
            return False
        # the record first: it refuses a use the index does not know of (made with --key)
        mark_key_used(self.folder / entry["key_file"], plaintext_sha256, plaintext, allow_reuse)
        self._append(entry)
        return True

    def release_use(self, fingerprint: str, plaintext_sha256: str) -> None:
        """Undo `mark_used` for a plaintext whose ciphertext was not written after all."""
        with self._locked():
            entry = copy.deepcopy(self._entries.get(fingerprint))
            if entry is None:
                return
            used_for = entry.get("used_for", [])
            entry["used_for"] = [use for use in used_for if use.get("plaintext_sha256") != plaintext_sha256]
            release_key_use(self.folder / entry["key_file"], plaintext_sha256)
            if len(entry["used_for"]) != len(used_for):
                self._append(entry)


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
