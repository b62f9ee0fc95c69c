"""Atomic writes and durable appends: a reader never sees a partial file.

Writes go to a temporary file in the target folder, are fsynced and then linked into
place, so an existing file is never replaced unless asked for, and two writers racing for
one name leave exactly one winner. Appends to logs (key index, audit) write whole lines and
cut back a killed writer's partial line first.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from keras_dkg.errors import OutputError


def _temporary_affixes(target: Path) -> tuple[str, str]:
    """The prefix and suffix of `atomic_output`'s temporary files for `target` (hidden, beside it)."""
    return f".{target.name}.", ".tmp" + target.suffix


def stale_temporaries(target: str | os.PathLike) -> None:
    """Remove the temporary files a killed writer of `target` left beside it (`atomic_output`'s)."""
    target = Path(target)
    prefix, suffix = _temporary_affixes(target)
    with contextlib.suppress(OSError):
        if target.parent.is_dir():
            for stale in target.parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
                stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it into place atomically.

    Without `overwrite`, an existing target is refused, and if another process creates
    the target meanwhile, this one fails cleanly instead of replacing it (os.link is
    atomic and never overwrites). On any error the temporary file is removed.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{target}: output folder {folder} does not exist")
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: exists; refusing to overwrite (use --overwrite)")
    try:
        prefix, suffix = _temporary_affixes(target)
        handle, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write in {folder} ({exc.strerror})") from exc
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        _fsync(temporary)
        if overwrite:
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)
            except FileExistsError as exc:
                raise OutputError(f"{target}: was created by someone else meanwhile; not replaced") from exc
    except OSError as exc:
        raise OutputError(f"{target}: write failed ({exc.strerror or exc})") from exc
    finally:
        temporary.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write bytes atomically (see `atomic_output`)."""
    with atomic_output(path, overwrite=overwrite) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def append_whole_lines(path: Path, data: bytes, committed, what: str, mode: int = 0o600) -> tuple[int, int]:
    """Append `data` (whole lines) to a log file, durably; return the file's (st_dev, st_ino).

    `committed(identity)` gives how many bytes of the opened file are whole lines the caller
    has read: anything past them is a killed writer's partial line and is cut off first. On an
    error the file is cut back to that length, so no partial line is left (disk full, …).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, mode)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from exc
    length = None
    try:
        info = os.fstat(fd)
        identity = (info.st_dev, info.st_ino)
        length = committed(identity)
        if info.st_size > length:
            os.ftruncate(fd, length)  # a partial line left by a killed writer
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        if length is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, length)
        raise OutputError(f"{path}: cannot append to the {what} ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
    return identity
