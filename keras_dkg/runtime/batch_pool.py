"""Worker processes that never outlive their batch, and signals that stop a batch cleanly.

A `--jobs N` batch runs N spawned workers. Without care, SIGTERM to the parent orphans
them (they keep running and hold the caller's stdout), and Ctrl-C makes the parent wait
for every queued task before it stops. So:

* `stop_on_signals()` (the CLI wraps a batch in it) turns SIGINT and SIGTERM into
  `Stopped(signum)`, a KeyboardInterrupt: it is never caught by a per-file
  `except Exception`, and the batch writes its partial report on the way out. A second
  signal gets the default action (the user insists: die now).
* `start_worker` (the pool initializer) makes a worker ignore SIGINT (Ctrl-C reaches
  the whole process group; the parent alone decides) and, on Linux, asks the kernel to
  SIGKILL it when the parent dies, whatever killed the parent (prctl PR_SET_PDEATHSIG).
* `stop_pool` cancels queued tasks and terminates the workers instead of waiting for them.
* Workers never see the key store passphrase: a spawned process copies its parent's
  environment (and /proc/PID/environ shows it for the process's whole life), so
  `without_secrets` takes the passphrase variables out of the environment while a worker
  starts (`scrubbed_spawn_context` for the local pool; the Ray engine starts Ray inside it
  and blanks them in its actors' runtime env). Workers get the derived key instead
  (`custody.Credentials.for_workers`).

A worker killed mid-write leaves only what `--resume` understands: a hidden temporary
file (removed by the parent and by the next run), or a stored key without ciphertext.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing.context
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

from keras_dkg.runtime.custody import SECRET_VARIABLES

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SECRETS_LOCK = threading.Lock()
_SECRETS_HELD: dict = {"depth": 0, "saved": {}}


@contextlib.contextmanager
def without_secrets() -> Iterator[None]:
    """The key store passphrase variables out of os.environ inside the block (put back after it).

    Processes started inside the block do not inherit them. Nested and concurrent blocks
    share one removal: the variables come back when the last block ends.
    """
    with _SECRETS_LOCK:
        if _SECRETS_HELD["depth"] == 0:
            _SECRETS_HELD["saved"] = {name: os.environ.pop(name) for name in SECRET_VARIABLES if name in os.environ}
        _SECRETS_HELD["depth"] += 1
    try:
        yield
    finally:
        with _SECRETS_LOCK:
            _SECRETS_HELD["depth"] -= 1
            if _SECRETS_HELD["depth"] == 0:
                os.environ.update(_SECRETS_HELD["saved"])
                _SECRETS_HELD["saved"] = {}


class _ScrubbedProcess(multiprocessing.context.SpawnProcess):
    def start(self) -> None:
        with without_secrets():
            super().start()


class _ScrubbedSpawnContext(multiprocessing.context.SpawnContext):
    Process = _ScrubbedProcess


def scrubbed_spawn_context() -> multiprocessing.context.SpawnContext:
    """The "spawn" start method, with every process started without the passphrase variables (and the
    resource tracker that a pool's queues start, before the first worker, started the same way)."""
    from multiprocessing import resource_tracker

    with without_secrets():
        resource_tracker.ensure_running()
    return _ScrubbedSpawnContext()


class Stopped(KeyboardInterrupt):
    """A stop signal arrived (see `stop_on_signals`)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_of(exc: BaseException) -> int:
    """The signal behind an interruption: its own for `Stopped`, SIGINT for a plain Ctrl-C."""
    return getattr(exc, "signum", signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT/SIGTERM raise `Stopped` in the main thread while inside the block (no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for number in STOP_SIGNALS:  # a second signal: the default action, at once
            signal.signal(number, signal.SIG_DFL)
        raise Stopped(signum)

    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _die_with_parent(parent: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: stop_pool still ends us
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def start_worker(parent: int) -> None:
    """Pool initializer, before the batch's own: ignore Ctrl-C, die with the parent process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)


def stop_pool(pool: ProcessPoolExecutor, grace_s: float = 2.0) -> None:
    """Cancel what is queued and end the workers now: SIGTERM, then SIGKILL after `grace_s`."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)
