"""A key store's audit log: append-only, hash-chained records of what was done with its keys.

`audit.jsonl`, one JSON object per line: `seq` (0, 1, …), `prev` (the previous record's
hash; the first record's is 64 zeros or the head of an archived log), the body — in the
clear in a plain store, `sealed` under the generation's audit key (with `gen`) in a
protected one — and `hash` = SHA-256 of the canonical JSON of everything else. Editing,
inserting, reordering or deleting a record breaks the chain at that record; in a protected
store a record cannot be forged either (its seal covers `seq` and `prev`). A chain alone
cannot show the loss of its newest records (truncation); the key store anchors it: each
index line names its record's log and `seq` (`keystore.check.anchor_problems`). Newest
read-only records can still go unseen: ship the log elsewhere as well when that matters
(docs/keys.md, "Threat model").

Records are appended by the key store under its lock, fsynced like the index. Actions:
init, create, encrypt (`new_key: true` when the key was made for this file: one record, not
two), release, decrypt, check, verify, rotate, protect, export, import; a Ray worker's
records, merged into the main chain, carry `merged_from` and `merged_seq`.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from keras_dkg.common import utc_timestamp
from keras_dkg.errors import KeyMaterialError
from keras_dkg.runtime.guards.atomic import append_whole_lines

AUDIT_NAME = "audit.jsonl"
GENESIS = "0" * 64
_TAIL_BYTES = 1 << 16


def who() -> dict:
    """The user, host and process that act."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid()}


def _hash(record: dict) -> str:
    body = {name: value for name, value in record.items() if name != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


@dataclass
class AuditCheck:
    """What `AuditLog.check` found: the records read, and the first broken link (None: all well)."""

    records: int
    broken: str | None
    head: str
    partial: bool = False  # a partial last line (a killed writer's), ignored; the next append removes it


class AuditLog:
    """One audit chain in the file `path` (a store's AUDIT_NAME, a worker's shard, …); `vault` seals bodies."""

    def __init__(self, path: str | os.PathLike, vault=None, genesis: str = GENESIS):
        self.path = Path(path)
        self.vault = vault
        self.genesis = genesis

    def _last(self) -> tuple[int, str, int]:
        """(next seq, hash of the last record, bytes of whole lines) — a partial last line is not counted."""
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                handle.seek(max(0, size - _TAIL_BYTES))
                tail = handle.read()
        except FileNotFoundError:
            return 0, self.genesis, 0
        end = tail.rfind(b"\n")
        if end < 0:
            return 0, self.genesis, 0
        start = tail.rfind(b"\n", 0, end) + 1
        try:
            last = json.loads(tail[start:end])
            return int(last["seq"]) + 1, str(last["hash"]), size - len(tail) + end + 1
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyMaterialError(f"{self.path}: the last audit record is damaged ({exc}); "
                                   "`dkg-keys audit` shows where") from exc

    def next_seq(self) -> int:
        """The sequence number the next record gets."""
        return self._last()[0]

    def append(self, action: str, **fields) -> None:
        """Add one record (the caller holds the store's lock)."""
        seq, prev, whole = self._last()
        body = {"action": action, "time": utc_timestamp(), "who": who(),
                **{name: value for name, value in fields.items() if value is not None}}
        record: dict = {"seq": seq, "prev": prev}
        if self.vault is not None:
            record["gen"] = self.vault.generation
            record["sealed"] = self.vault.seal_audit(body, seq, prev)
        else:
            record["body"] = body
        record["hash"] = _hash(record)
        data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        append_whole_lines(self.path, data, lambda _identity: whole, "audit log")

    def check(self, raw: bytes | None = None) -> tuple[AuditCheck, list[dict]]:
        """Walk the chain (of the file, or of `raw`: an archived log); return what was found and
        the bodies read up to the first broken link."""
        if raw is None:
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                return AuditCheck(0, None, self.genesis), []
            except OSError as exc:
                raise KeyMaterialError(f"{self.path}: cannot read the audit log ({exc.strerror or exc})") from exc
        bodies: list[dict] = []
        prev, lines = self.genesis, raw.split(b"\n")
        partial = lines.pop() != b""  # the bytes after the last newline: a write in progress or killed
        for number, line in enumerate(lines, start=1):
            where = f"{self.path}:{number}"
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError:
                return AuditCheck(number - 1, f"{where}: not a readable record (damaged or a partial write)", prev), bodies
            if record.get("seq") != number - 1:
                return AuditCheck(number - 1, f"{where}: sequence number {record.get('seq')!r}, expected "
                                  f"{number - 1} (a record was removed or inserted)", prev), bodies
            if record.get("prev") != prev:
                return AuditCheck(number - 1, f"{where}: does not follow the previous record (chain broken: "
                                  "a record before it was removed, reordered or altered)", prev), bodies
            if record.get("hash") != _hash(record):
                return AuditCheck(number - 1, f"{where}: record altered (its hash does not match)", prev), bodies
            if "sealed" in record:
                if self.vault is None:
                    return AuditCheck(number - 1, f"{where}: sealed record in a plain store", prev), bodies
                try:
                    body = self.vault.open_audit(record["sealed"], int(record.get("gen", -1)), record["seq"],
                                                 record["prev"], where)
                except (KeyMaterialError, ValueError, TypeError) as exc:
                    return AuditCheck(number - 1, f"{where}: sealed body does not open: forged or altered "
                                      f"({exc})", prev), bodies
            elif self.vault is not None:
                return AuditCheck(number - 1, f"{where}: a record in the clear in a protected store (forged)",
                                  prev), bodies
            else:
                body = record.get("body")
                if not isinstance(body, dict):
                    return AuditCheck(number - 1, f"{where}: record without a body", prev), bodies
            bodies.append({"seq": record["seq"], **body})
            prev = record["hash"]
        return AuditCheck(len(lines), None, prev, partial), bodies
