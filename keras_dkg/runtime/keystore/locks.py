"""Who may write a key store when: the writers' lock, shard locks, and append intents.

* **The writers' lock** `DIR/.writers.lock`: every writer (a `dkg-encrypt`, a batch driver
  and each of its workers, a Ray actor writing a shard) holds it *shared* for its whole
  life; `dkg-keys rotate` and `protect` take it *exclusive*, waiting at most a bounded time,
  so they never run while a writer could still append under the old master key.
  One process keeps one descriptor per store (flock locks belong to the open file, so a
  second descriptor of the same process would wait for itself).
* **A shard lock** `DIR/shards/<name>.lock`: the shard's one writer holds it exclusive for
  its life; a merge takes only shards whose lock it can get, i.e. whose writer is gone.
* **An append intent** `.<file>.append` beside each index file: (offset, length) written
  before an append and cleared after it. A partial last line is cut by the next writer
  only when the intent proves it is that interrupted append; any other cut line is an
  error (a file cut or restored short loses a key: it is reported, never trimmed).

All of it is `fcntl.flock` on local files: it holds for processes of one machine and on
file systems that pass flock through (NFSv4, CephFS, Lustre with `flock`); docs/keys.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from keras_dkg.errors import KeyMaterialError, OutputError

WRITERS_LOCK = ".writers.lock"
DEFAULT_WAIT_S = 30.0
_POLL_S = 0.05

try:
    import fcntl
except ImportError:  # pragma: no cover - no cross-process locks off POSIX
    fcntl = None

_registry_lock = threading.Lock()
_held: dict[str, list] = {}  # lock path -> [fd, shared holders in this process, exclusive?]


def _lock_key(folder) -> str:
    """One name per store in this process, however the folder was spelled (relative, absolute)."""
    return os.path.abspath(Path(folder) / WRITERS_LOCK)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OutputError(f"{path}: cannot open the key store's lock ({exc.strerror or exc})") from exc


def _flock(fd: int, operation: int, deadline: float) -> bool:
    """Take `operation` on `fd`, polling until `deadline` (time.monotonic); False when it did not come."""
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)


class _ReleasedWhenCollected:
    """A hold whose finaliser releases it and never raises (the OS drops a dead process's locks anyway)."""

    def release(self) -> None:
        raise NotImplementedError

    def __del__(self):
        try:  # not contextlib.suppress: at interpreter exit module globals may already be None
            self.release()
        except Exception:  # noqa: BLE001, S110 - a finaliser must not raise
            pass


class WriterHold(_ReleasedWhenCollected):
    """This object's share of the writers' lock of one store (`release` or garbage collection ends it)."""

    def __init__(self, folder: Path, wait_s: float = DEFAULT_WAIT_S):
        self.path = _lock_key(folder)
        self.active = False
        if fcntl is None:
            return
        with _registry_lock:
            entry = _held.get(self.path)
            if entry is not None:
                if entry[2]:
                    raise KeyMaterialError(f"{folder}: this process is rotating or protecting the key store")
                entry[1] += 1
                self.active = True
                return
            fd = _open(Path(self.path))
            if not _flock(fd, fcntl.LOCK_SH, time.monotonic() + wait_s):
                os.close(fd)
                raise KeyMaterialError(f"{folder}: the key store is being rotated or protected by another "
                                       f"process (waited {wait_s:g} s); run the command again when it is done")
            _held[self.path] = [fd, 1, False]
            self.active = True

    def release(self) -> None:
        if not self.active:
            return
        self.active = False
        with _registry_lock:
            entry = _held.get(self.path)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0 and not entry[2]:
                os.close(entry[0])
                del _held[self.path]


@contextlib.contextmanager
def exclusive(folder: Path, wait_s: float = DEFAULT_WAIT_S, what: str = "rotate") -> Iterator[None]:
    """Hold the writers' lock exclusive: no writer of any process is alive while inside."""
    if fcntl is None:
        yield
        return
    path = _lock_key(folder)
    with _registry_lock:
        entry = _held.get(path)
        if entry is None:
            entry = _held[path] = [_open(Path(path)), 0, False]
        elif entry[2]:
            raise KeyMaterialError(f"{folder}: this process holds the key store exclusively already")
        got = _flock(entry[0], fcntl.LOCK_EX, time.monotonic() + wait_s)
        if not got:
            _restore(path, entry)
            raise KeyMaterialError(f"{folder}: cannot {what} while writers are using the key store (a batch, an "
                                   f"encryption, a gateway; waited {wait_s:g} s): run it when they are done")
        entry[2] = True
    try:
        yield
    finally:
        with _registry_lock:
            entry[2] = False
            _restore(path, entry)


def _restore(path: str, entry: list) -> None:
    """Back to what this process's own writers hold: shared, or nothing."""
    if entry[1] > 0:
        fcntl.flock(entry[0], fcntl.LOCK_SH)  # (a failed conversion may have dropped it: take it again)
    else:
        os.close(entry[0])
        _held.pop(path, None)


def holds_exclusive(folder: Path) -> bool:
    entry = _held.get(_lock_key(folder))
    return bool(entry and entry[2])


class ShardHold(_ReleasedWhenCollected):
    """The exclusive lock of one shard, held by its writer for its life."""

    def __init__(self, path: Path):
        self.fd = None
        if fcntl is None:
            return
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise KeyMaterialError(f"{path}: another live writer uses this shard name") from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def finished_shard(path: Path, wait_s: float = 0.0) -> Iterator[bool]:
    """Yield True holding the shard's lock when its writer is gone (within `wait_s`), else False."""
    if fcntl is None:
        yield True
        return
    fd = _open(path)
    try:
        yield _flock(fd, fcntl.LOCK_EX, time.monotonic() + wait_s)
    finally:
        os.close(fd)


# ---- append intents -------------------------------------------------------------------

def intent_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.append")


def begin_append(path: Path, offset: int, length: int) -> None:
    """Say where the next append goes, before it is made (not fsynced: see `torn_append`)."""
    _write_small(intent_path(path), json.dumps({"offset": offset, "length": length}).encode())


def end_append(path: Path) -> None:
    _write_small(intent_path(path), b"{}")


def _write_small(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the key store's append record ({exc.strerror or exc})") from exc


def torn_append(path: Path, whole: int, size: int) -> bool:
    """Whether the bytes of `path` past `whole` (its last newline) are an append that was interrupted.

    True only when the intent names an append starting at `whole` that is longer than what
    is there. After a power loss the intent may not have reached the disk: then a torn
    append reads as a cut file, an error a person looks at; never the other way round.
    """
    try:
        intent = json.loads(intent_path(path).read_bytes() or b"{}")
    except (OSError, ValueError):
        return False
    return (isinstance(intent, dict) and intent.get("offset") == whole
            and isinstance(intent.get("length"), int) and size - whole < intent["length"])


def check_tail(path: Path, whole: int, size: int, what: str = "index") -> None:
    """Refuse to write past a cut last line that `torn_append` does not explain."""
    if size > whole and not torn_append(path, whole, size):
        raise KeyMaterialError(cut_line_message(path, size - whole, what))


def cut_line_message(path: Path, extra: int, what: str = "index") -> str:
    return (f"{path}: the last {what} line is cut ({extra} bytes after the last whole line) and no interrupted "
            "append explains it: the file was cut or restored short; put back a complete copy from a backup "
            "(nothing was written)")
