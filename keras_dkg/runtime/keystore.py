"""A folder of keys: `index.jsonl` plus `keys/<fingerprint16>.png` and `.json` records.

`dkg-encrypt --keys DIR` stores each fresh key here and `dkg-decrypt --keys DIR` finds
it again by the fingerprint in the ciphertext's metadata. The index holds one JSON
object per key (fingerprint, key file, record file, nonce, created, `used_for`: the
plaintexts it encrypted). Every read-modify-write of the index happens under a lock on
`DIR/.lock` and replaces the index atomically, so concurrent encryptions are safe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keras_dkg.errors import KeyMaterialError
from keras_dkg.runtime.imageio import write_bytes_atomic
from keras_dkg.runtime.keys import (
    Key,
    load_key,
    locked,
    mark_key_used,
    record_path_for,
    register_use,
    utc_now,
)

INDEX_NAME = "index.jsonl"
KEYS_FOLDER = "keys"
LOCK_NAME = ".lock"


def _short(fingerprint: str) -> str:
    return fingerprint.split(":", 1)[-1][:16]


class KeyStore:
    """Keys by fingerprint, with their use recorded (see module docstring)."""

    def __init__(self, folder: str | os.PathLike, create: bool = False):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            if not create:
                raise KeyMaterialError(f"{self.folder}: no such key store folder")
            self.folder.mkdir(parents=True)
        (self.folder / KEYS_FOLDER).mkdir(exist_ok=True)
        self.index_path = self.folder / INDEX_NAME
        self._lock_path = self.folder / LOCK_NAME

    def entries(self) -> list[dict]:
        """All index entries, in the order keys were added."""
        if not self.index_path.exists():
            return []
        entries = []
        for number, line in enumerate(self.index_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise KeyMaterialError(f"{self.index_path}:{number}: damaged index line ({exc.msg})") from exc
        return entries

    def _write(self, entries: list[dict]) -> None:
        text = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries)
        write_bytes_atomic(self.index_path, text.encode("utf-8"), overwrite=True)

    def add(self, key: Key) -> dict:
        """Store a key (idempotent for the same key) and return its index entry."""
        with locked(self._lock_path):
            entries = self.entries()
            for entry in entries:
                if entry["fingerprint"] == key.fingerprint:
                    return entry
            relative = Path(KEYS_FOLDER) / f"{_short(key.fingerprint)}.png"
            key.save(self.folder / relative)
            entry = {
                "fingerprint": key.fingerprint,
                "key_file": relative.as_posix(),
                "record_file": record_path_for(relative).as_posix(),
                "shape": key.record["shape"],
                "nonce": key.record.get("nonce"),
                "created": key.record.get("created", utc_now()),
                "used_for": [],
            }
            self._write([*entries, entry])
            return entry

    def find(self, fingerprint: str) -> dict:
        for entry in self.entries():
            if entry["fingerprint"] == fingerprint:
                return entry
        raise KeyMaterialError(f"{self.folder}: no key with fingerprint {fingerprint[:23]}… in this key store")

    def load(self, fingerprint: str) -> Key:
        """The verified key with this fingerprint."""
        key = load_key(self.folder / self.find(fingerprint)["key_file"])
        if key.fingerprint != fingerprint:
            raise KeyMaterialError(f"{self.folder}: index entry for {fingerprint[:23]}… points at another key")
        return key

    def mark_used(self, fingerprint: str, plaintext_sha256: str, plaintext: str, allow_reuse: bool = False) -> None:
        """Record that a key encrypts `plaintext`; refuse another plaintext unless allowed."""
        with locked(self._lock_path):
            entries = self.entries()
            entry = next((e for e in entries if e["fingerprint"] == fingerprint), None)
            if entry is None:
                raise KeyMaterialError(f"{self.folder}: no key with fingerprint {fingerprint[:23]}…")
            label = f"{self.folder}/{entry['key_file']}"
            if register_use(entry.setdefault("used_for", []), plaintext_sha256, plaintext, allow_reuse, label):
                mark_key_used(self.folder / entry["key_file"], plaintext_sha256, plaintext, allow_reuse)
                self._write(entries)
