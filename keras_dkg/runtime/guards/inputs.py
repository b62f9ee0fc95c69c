"""Reading input files safely: regular files only, bounded by their declared size.

A path a user names may be a folder, a FIFO (reading it blocks forever), a device
(`/dev/zero` never ends) or a huge file. Every input goes through `regular_file` (refused
by type, with the type named) and its bytes through `read_bounded` (refused by size
*before* reading, and never more than the limit read even if the file grows meanwhile).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from keras_dkg.errors import InputError

# Upper bounds on what we read into memory at once, by kind of input.
MAX_IMAGE_BYTES = 2 << 30  # an image file (compressed or not); pixel counts are bounded separately
MAX_MODEL_BYTES = 1 << 30  # an exported generator (ours are ~2 MB)
MAX_RECORD_BYTES = 16 << 20  # a key record or other JSON side file
# Bytes a file may hold beyond the image its header declares (DICOM Pixel Data, NIfTI voxels):
# only zeros (padding carries no image), and at most this many; anything else is refused.
MAX_PADDING_BYTES = 64 << 10

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """'a folder', 'a FIFO (named pipe)', ... for a stat mode that is not a regular file."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """The path, if it names an existing regular file (symlinks followed); else one clear InputError."""
    target = Path(path)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        if os.path.islink(target):
            raise InputError(f"{target}: {what} is a dangling symbolic link (its target does not exist)") from None
        raise InputError(f"{target}: no such file") from None
    except OSError as exc:
        raise InputError(f"{target}: cannot read {what} ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{target}: is {file_kind(info.st_mode)}, not a regular file; expected {'an' if what[:1] in 'aeiou' else 'a'} {what}")
    return target


def read_bounded(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """All bytes of a regular file of at most `limit` bytes (checked before reading, and while reading).

    Opened non-blocking and checked again on the open descriptor: a path swapped for a FIFO
    between the check and the open is refused, not waited on."""
    target = regular_file(path, what)
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{target}: cannot read {what} ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"{target}: is {file_kind(info.st_mode)}, not a regular file; expected {what}")
            if info.st_size > limit:
                raise InputError(f"{target}: {what} is {info.st_size} bytes, over the {limit} byte limit")
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputError(f"{target}: cannot read {what} ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise InputError(f"{target}: {what} grew past the {limit} byte limit while being read")
    return data


def check_padding(label: str, extra: bytes | memoryview, declared: str, fix: str) -> None:
    """InputError unless `extra` (the bytes after what a header `declared`) is zero padding of at most
    MAX_PADDING_BYTES: any other bytes would be copied, unencrypted, into a ciphertext."""
    size = len(extra)
    if size > MAX_PADDING_BYTES:
        raise InputError(f"{label}: {size} bytes follow the {declared}, over the {MAX_PADDING_BYTES} bytes of zero "
                         f"padding accepted; they would be left unencrypted, so the file is refused ({fix})")
    if size and bytes(extra).count(0) != size:
        raise InputError(f"{label}: {size} bytes follow the {declared} and are not zero padding; they would be "
                         f"left unencrypted, so the file is refused ({fix})")
