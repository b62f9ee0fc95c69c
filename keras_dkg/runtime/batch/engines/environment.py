"""Workers never see the key store passphrase.

A spawned process copies its parent's environment (and /proc/PID/environ shows it for the
process's whole life), so `without_secrets` takes the passphrase variables out of the
environment while a worker starts (`scrubbed_spawn_context` for the local pool; the Ray
engine starts Ray inside it and blanks them in its actors' runtime env). Workers get the
derived key instead (`custody.Credentials.for_workers`).
"""

from __future__ import annotations

import contextlib
import multiprocessing.context
import os
import threading
from collections.abc import Iterator

from keras_dkg.runtime.keystore.custody import SECRET_VARIABLES

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
