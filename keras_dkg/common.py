"""Small helpers every layer shares: progress bars, quiet blocks, JSON values, locks, text.

Standard library only at import time (numpy and tqdm are used when the caller already has
them), so the TensorFlow-free runtime may import this module (tests/test_layering.py).

* `progress_bar`: a tqdm bar on stderr when tqdm is installed and the bar is wanted;
* `quiet`: hold back stdout and stderr, C++ logs included, for a block;
* `to_jsonable`: numpy values, paths, dataclasses, tuples and sets as JSON types;
* `file_lock`: an exclusive `fcntl.flock` on a file, blocking or not;
* `utc_timestamp`: now, ISO 8601 in UTC, to the second;
* `short_error`: an exception's message on one line, cut to a length;
* `printable`: text for one human-readable line, control characters escaped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any

__all__ = ["LockHeld", "file_lock", "printable", "progress_bar", "quiet", "short_error", "to_jsonable",
           "utc_timestamp"]


# --------------------------------------------------------------------------- progress


def progress_bar(total: int | None = None, iterable: Iterable | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, enabled: bool | None = True, leave: bool = True) -> Any:
    """A tqdm bar on stderr, or no bar.

    `enabled=None` shows the bar only when stderr is a terminal. Without a bar (not
    enabled, or tqdm not installed: it comes with the [analysis] extra) this returns
    `iterable` itself, or None when no iterable was given; callers then skip their
    `update`/`close` calls.
    """
    if enabled is None:
        enabled = sys.stderr is not None and sys.stderr.isatty()
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            enabled = False
    if not enabled:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr,
                dynamic_ncols=True, leave=leave)


# --------------------------------------------------------------------------- quiet


class _Captured:
    """The captured output of a `quiet` block, readable while the block runs."""

    def __init__(self, sink, stream):
        self._sink, self._stream = sink, stream

    def tail(self, lines: int = 8) -> str:
        self._stream.flush()
        self._sink.seek(0)
        text = self._sink.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(text[-lines:])


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[_Captured | None]:
    """Send stdout and stderr (file descriptors too, so C++ logs) to a temporary file.

    TensorFlow and the converters print pages of logs; the CLIs show them with --verbose.
    Inside the block, `.tail()` gives the last lines for an error message.
    """
    if not enabled:
        yield None
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    python_streams = sys.stdout, sys.stderr
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no standard descriptors (a daemon, pythonw): nothing to hold back
        yield None
        return
    with tempfile.TemporaryFile() as sink, open(sink.fileno(), "w", encoding="utf-8", closefd=False) as stream:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            sys.stdout = sys.stderr = stream
            yield _Captured(sink, stream)
        finally:
            stream.flush()
            sys.stdout, sys.stderr = python_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


# --------------------------------------------------------------------------- JSON


def to_jsonable(value: Any) -> Any:
    """A copy of `value` that `json.dumps(..., allow_nan=False)` accepts.

    numpy scalars and arrays become Python numbers and lists; NaN and ±inf become None
    (JSON has neither); paths become strings; tuples lists; sets sorted lists; dict keys
    strings; objects with a `to_dict()` and dataclasses their fields. Anything else is
    returned as it is.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None  # np.float64 is a float too
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [to_jsonable(v) for v in value]
        with contextlib.suppress(TypeError):
            items.sort()
        return items
    numpy = sys.modules.get("numpy")  # not imported: nothing here can be a numpy value
    if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        return to_jsonable(value.tolist())
    if isinstance(value, PurePath):
        return str(value)
    if callable(getattr(value, "to_dict", None)):
        return to_jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


# --------------------------------------------------------------------------- locks


class LockHeld(BlockingIOError):
    """A non-blocking `file_lock` found the lock held by another process."""


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, blocking: bool = True, remove: bool = False,
              mode: int = 0o600) -> Iterator[None]:
    """Hold an exclusive advisory lock (`fcntl.flock`) on `path` while inside the block.

    The file is created (with `mode`) when missing, and may be read-only. `blocking=False`
    raises `LockHeld` at once when another process holds the lock. `remove=True` deletes
    the file on exit, still holding the lock; a waiter that then locked the deleted file
    opens the new one instead (all holders of one path must agree on `remove`). An
    OSError from opening the file carries its `filename`; one from `flock` does not. Off
    POSIX there is no cross-process lock: the block just runs.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    operation = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
    while True:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, mode)
        try:
            fcntl.flock(fd, operation)
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise LockHeld(errno.EWOULDBLOCK, "locked by another process", str(path)) from None
            raise
        if not remove or _same_file(path, fd):
            break
        os.close(fd)  # the previous holder removed the file meanwhile: lock the new one
    try:
        yield
    finally:
        if remove:
            with contextlib.suppress(OSError):
                path.unlink()
        os.close(fd)  # releases the lock


def _same_file(path: Path, fd: int) -> bool:
    try:
        held, opened = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (opened.st_dev, opened.st_ino)


# --------------------------------------------------------------------------- text


def utc_timestamp() -> str:
    """Now in UTC, ISO 8601 to the second: '2024-05-01T12:34:56+00:00'."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def short_error(exc: BaseException, limit: int | None = 160, sep: str = " ") -> str:
    """An exception's message without its type, on one line, at most `limit` characters (+ "…").

    Whitespace runs become one space and the message's lines are joined with `sep`; an
    empty message gives the exception's type name instead.
    """
    lines = (" ".join(line.split()) for line in str(exc).splitlines())
    text = sep.join(line for line in lines if line) or type(exc).__name__
    return text if limit is None or len(text) <= limit else text[:limit] + "…"


# Characters a file name may hold that would break or disguise a line on a terminal: C0/C1
# controls (newline, carriage return, ESC …), DEL, line/paragraph separators, bidi overrides.
_UNPRINTABLE = frozenset((*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
                          *range(0x2066, 0x206A)))
_ESCAPES = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def printable(text: str) -> str:
    """`text` for one human-readable line: control characters escaped as `\\n`, `\\x1b`, `\\u202e` ….

    A file may be called "a.png\\ndkg-encrypt: encrypted 1 files" or carry terminal escape
    sequences; in a report or error line its name must read as one name, never as a line of
    its own or a rewritten terminal. (JSON reports escape such names themselves.)
    """
    if not any(ord(ch) in _UNPRINTABLE for ch in text):
        return text
    return "".join(_ESCAPES.get(ord(ch)) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
                   if ord(ch) in _UNPRINTABLE else ch for ch in text)


def import_object(spec: str) -> Any:
    """The object a plug-in registry names as "module:object", its module imported now (every
    registry of the project names its plug-ins so and loads them on first use)."""
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def lazy_exports(package: str, homes: dict[str, tuple[str, ...]]):
    """A package's public names, each imported from its module on first use (PEP 562).

    `homes` maps a module of `package` to the names it gives the package. Returns the
    package's `__getattr__`, `__dir__` and `__all__`: `from keras_dkg.runtime.keys import Key`
    works, and importing one module of a package does not import all the others (a command
    pays only for what it runs).
    """
    import importlib

    where = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)  # looked up once
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, sorted(where)
