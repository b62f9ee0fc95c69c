"""Signals that stop a batch cleanly.

`stop_on_signals()` (the CLI wraps a batch in it) turns SIGINT and SIGTERM into
`Stopped(signum)`, a KeyboardInterrupt: it is never caught by a per-file
`except Exception`, and the batch writes its partial report on the way out. A second
signal gets the default action (the user insists: die now).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
