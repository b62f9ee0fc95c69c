"""The local Ray a batch starts dies with the batch, even when the batch is SIGKILLed.

`ray.init()` without an address starts GCS, a raylet, its agents and the workers as the
driver's descendants. Killed with SIGKILL, the driver runs no `ray.shutdown()`: GCS, the
raylet and the workers follow it within seconds, but the raylet's dashboard and
runtime-env agents were measured alive for more than 60 s (Ray 2.60: they try to report
the raylet's death to the dead GCS first). So the driver starts this watcher once its Ray
starts (`start`, before `ray.init()`: Ray takes seconds to start, and a kill then must not
leak it either): a small stdlib-only process, the driver's child, whose stdin is a pipe
from the driver. Every `POLL_S` it notes the processes of that Ray — the driver's children
whose command line names the driver's Ray session folder (`session_<time>_<driver pid>`:
GCS, raylet, monitors), and all their descendants (agents, workers) — by pid and start time;
when the pipe ends without the word "done" — the kernel closes it when the driver dies,
however it dies — it sends SIGTERM to every process it noted (and to their descendants),
then SIGKILL to those still alive after `GRACE_S`, and exits. A batch that ends normally
shuts Ray down itself and then tells the watcher "done" (`Reaper.release`).

Linux only (it reads /proc); elsewhere `start` returns None and Ray's own fate sharing is
all there is. A cluster joined with `--ray-address` is never touched: its processes are
not the driver's descendants, and no watcher is started for it.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

POLL_S = 0.5  # how often the driver's descendants are noted
GRACE_S = 2.0  # SIGTERM, then SIGKILL after this long


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every process /proc shows."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:
                continue  # gone meanwhile
            fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) ": state ppid …
            table[int(name)] = (int(fields[1]), int(fields[19]))
    return table


def descendants(root: int, table: dict[int, tuple[int, int]] | None = None) -> dict[int, int]:
    """pid -> start time of every descendant of `root` (not `root` itself)."""
    table = _processes() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, pending = {}, list(children.get(root, ()))
    while pending:
        pid = pending.pop()
        if pid not in found:
            found[pid] = table[pid][1]
            pending.extend(children.get(pid, ()))
    return found


def _signal_all(noted: dict[int, int], number: int) -> dict[int, int]:
    """Send `number` to each noted process still alive as itself (same start time: no reused pid)."""
    table = _processes()
    alive = {pid: start for pid, start in noted.items() if table.get(pid, (0, None))[1] == start}
    for pid in list(alive):
        alive.update(descendants(pid, table))  # children a noted process made since the last look
    alive.pop(os.getpid(), None)
    for pid in alive:
        try:
            os.kill(pid, number)
        except OSError:
            pass  # exited meanwhile
    return alive


def reap(noted: dict[int, int]) -> None:
    """SIGTERM every noted process, SIGKILL the ones left after GRACE_S."""
    alive = _signal_all(noted, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        table = _processes()
        alive = {pid: start for pid, start in alive.items() if table.get(pid, (0, None))[1] == start}
    if alive:
        _signal_all(alive, signal.SIGKILL)


def _command_line(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def ray_processes(driver: int, table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """pid -> start time of the driver's local Ray: the driver's children whose command line names
    the session folder Ray makes for a head started by that pid (`session_<time>_<pid>`), and their
    descendants. Other children of the driver (a caller's own) are left alone."""
    mark = re.compile(rb"session_[0-9_-]+_%d(?![0-9])" % driver)
    found = {}
    for pid, (parent, start) in table.items():
        if parent == driver and mark.search(_command_line(pid)):
            found[pid] = start
            found.update(descendants(pid, table))
    return found


def watch(driver: int) -> int:
    """The watcher's loop (`python -m keras_dkg.runtime.batch.engines.ray_reaper DRIVER_PID`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C for the batch is the driver's to handle
    noted: dict[int, int] = {}
    received = b""
    while True:
        noted.update(ray_processes(driver, _processes()))
        ready, _, _ = select.select([sys.stdin.buffer], [], [], POLL_S)
        if not ready:
            continue
        chunk = os.read(sys.stdin.fileno(), 64)
        received += chunk
        if b"done" in received:
            return 0  # the batch shut its Ray down itself
        if not chunk:  # the pipe ended without "done": the driver is dead
            reap(noted)
            return 0


class Reaper:
    """The driver's handle on its watcher process."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    def release(self) -> None:
        """Ray was shut down by the batch: the watcher exits without killing anything."""
        try:
            self.process.stdin.write(b"done\n")
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start() -> Reaper | None:
    """Start the watcher for the local Ray this process is about to start (`ray.init()` next); None
    off Linux."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc/self"):
        return None
    argv = [sys.executable, "-m", "keras_dkg.runtime.batch.engines.ray_reaper", str(os.getpid())]
    process = subprocess.Popen(argv,
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, close_fds=True)
    return Reaper(process)


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1])))
