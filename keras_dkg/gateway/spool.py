"""The local spool: ciphertexts that got Success and are not yet in the PACS.

    SPOOL/queue/<SOPInstanceUID>.dcm        waiting to be forwarded (durable: fsynced, renamed)
    SPOOL/queue/<SOPInstanceUID>.tries      refusals so far by the PACS (absent: none)
    SPOOL/quarantine/<SOPInstanceUID>.dcm   given up after N refusals, with .reason beside it

One file per SOP Instance UID makes the queue idempotent: a modality's resend replaces the
waiting ciphertext, and a forward that already succeeded is answered Success by the PACS
again (Orthanc keeps one copy). After a crash the queue is simply read again.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from keras_dkg.errors import OutputError
from keras_dkg.runtime.guards.atomic import write_bytes_atomic

SUFFIX = ".dcm"
_UID = re.compile(r"^[0-9.]{1,64}$")


class SpoolFull(OutputError):
    """The spool has less free space than the gateway keeps in reserve."""


def safe_uid(uid: str) -> str:
    """A SOP Instance UID as a file name (UIDs are digits and dots; anything else is refused)."""
    uid = str(uid).strip("\x00 ")
    if not _UID.match(uid) or uid.startswith(".") or ".." in uid:
        raise OutputError(f"SOP Instance UID {uid!r} is not a valid UID")
    return uid


class Spool:
    def __init__(self, folder: str | os.PathLike, min_free_bytes: int = 0):
        self.folder = Path(folder)
        self.queue = self.folder / "queue"
        self.quarantine_folder = self.folder / "quarantine"
        self.min_free_bytes = min_free_bytes
        for path in (self.queue, self.quarantine_folder):
            path.mkdir(parents=True, exist_ok=True)

    def free_bytes(self) -> int:
        stat = os.statvfs(self.queue)
        return stat.f_bavail * stat.f_frsize

    def check_space(self, needed: int) -> None:
        """Refuse (SpoolFull) when storing `needed` bytes would leave less than the reserve."""
        free = self.free_bytes()
        if free - needed < self.min_free_bytes:
            raise SpoolFull(f"{self.queue}: {free} bytes free, {needed} needed plus a reserve of {self.min_free_bytes}")

    def put(self, uid: str, data: bytes) -> Path:
        """Write a ciphertext durably (temporary file, fsync, rename, directory fsync)."""
        target = self.queue / f"{safe_uid(uid)}{SUFFIX}"
        self.check_space(len(data))
        write_bytes_atomic(target, data, overwrite=True)
        self.tries_path(target).unlink(missing_ok=True)  # a resend starts its count again
        fd = os.open(self.queue, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return target

    def pending(self) -> list[Path]:
        """Queued ciphertexts, oldest first."""
        found = []
        for path in self._files(self.queue):
            try:
                found.append((path.stat().st_mtime_ns, path))
            except FileNotFoundError:
                continue
        return [path for _, path in sorted(found)]

    @staticmethod
    def _files(folder: Path) -> list[Path]:
        """Ciphertexts in `folder` (not the hidden temporaries of a write a crash cut short)."""
        return [path for path in folder.glob(f"*{SUFFIX}") if not path.name.startswith(".")]

    def depth(self) -> int:
        return len(self._files(self.queue))

    def quarantined(self) -> int:
        return len(self._files(self.quarantine_folder))

    @staticmethod
    def tries_path(path: Path) -> Path:
        return path.with_suffix(".tries")

    def tries(self, path: Path) -> int:
        try:
            return int(self.tries_path(path).read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def add_try(self, path: Path) -> int:
        count = self.tries(path) + 1
        self.tries_path(path).write_text(str(count))
        return count

    def done(self, path: Path) -> None:
        """The PACS has it: forget it."""
        path.unlink(missing_ok=True)
        self.tries_path(path).unlink(missing_ok=True)

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a ciphertext the PACS keeps refusing aside, with the reason beside it."""
        target = self.quarantine_folder / path.name
        target.with_suffix(".reason").write_text(reason + "\n", encoding="utf-8")
        shutil.move(path, target)
        self.tries_path(path).unlink(missing_ok=True)
        return target
