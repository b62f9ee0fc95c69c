"""The local engine: worker processes that never outlive their batch.

A `--jobs N` batch runs N spawned workers. Without care, SIGTERM to the parent orphans
them (they keep running and hold the caller's stdout), and Ctrl-C makes the parent wait
for every queued task before it stops. So `start_worker` (the pool initializer) makes a
worker ignore SIGINT (Ctrl-C reaches the whole process group; the parent alone decides)
and, on Linux, asks the kernel to SIGKILL it when the parent dies, whatever killed the
parent (prctl PR_SET_PDEATHSIG); `stop_pool` cancels queued tasks and terminates the
workers instead of waiting for them.

A worker killed mid-write leaves only what `--resume` understands: a hidden temporary
file (removed by the parent and by the next run), or a stored key without ciphertext.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
