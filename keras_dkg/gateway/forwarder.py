"""Send the spool to the PACS: retries with back-off, idempotent by SOP Instance UID, quarantine.

Worker threads take spooled ciphertexts (oldest first) and C-STORE them over a kept-open
association. Success (or a warning status) removes the file. The PACS unreachable, or the
association lost mid-send: the file goes back to the queue and the worker waits, doubling
the wait up to the largest back-off; nothing is counted against the instance. A refusal
status from the PACS counts one try; after `retries` tries the file is quarantined with
the PACS's answer as the reason (CTP's export queue works the same way). Because every
file is named by its SOP Instance UID and the PACS keeps one copy per UID, sending a file
twice (a crash between the PACS's Success and the unlink) stores it once.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from pathlib import Path

from keras_dkg.gateway.spool import Spool
from keras_dkg.gateway.status import Counters
from keras_dkg.gateway.upstream import SUCCESS_STATUSES, Pacs, PacsUnavailable, storage_classes

LOG = logging.getLogger("keras_dkg.gateway.forwarder")
IDLE_RELEASE = 1.0  # seconds without work before a worker releases its association


class _Queue:
    """Paths due at a time; each path queued at most once."""

    def __init__(self):
        self._heap: list[tuple[float, int, Path]] = []
        self._queued: set[Path] = set()
        self._count = 0
        self.changed = threading.Condition()
        self.busy = 0  # paths taken and not finished

    def put(self, path: Path, delay: float = 0.0) -> None:
        with self.changed:
            if path in self._queued:
                return
            self._count += 1
            self._queued.add(path)
            heapq.heappush(self._heap, (time.monotonic() + delay, self._count, path))
            self.changed.notify()

    def take(self, stopping: threading.Event, wait: float = 1.0) -> Path | None:
        """The next due path; None when none is due within `wait` seconds or when stopping."""
        deadline = time.monotonic() + wait
        with self.changed:
            while not stopping.is_set() and time.monotonic() < deadline:
                if self._heap and self._heap[0][0] <= time.monotonic():
                    _, _, path = heapq.heappop(self._heap)
                    self._queued.discard(path)
                    self.busy += 1
                    return path
                timeout = min(deadline, self._heap[0][0] if self._heap else deadline) - time.monotonic()
                self.changed.wait(max(timeout, 0.001))
            return None

    def finished(self) -> None:
        with self.changed:
            self.busy -= 1
            self.changed.notify_all()

    def idle(self) -> bool:
        with self.changed:
            return not self._heap and self.busy == 0


class Forwarder:
    def __init__(self, spool: Spool, pacs: Pacs, counters: Counters, workers: int = 2, retries: int = 8,
                 backoff: tuple[float, float] = (0.5, 30.0)):
        self.spool, self.pacs, self.counters = spool, pacs, counters
        self.retries, self.backoff = retries, backoff
        self.queue = _Queue()
        self.stopping = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"dkg-forwarder-{n}", daemon=True)
                         for n in range(workers)]
        self._classes = storage_classes()

    def start(self) -> None:
        """Queue whatever the spool holds (a restart resumes here), then start the workers."""
        for path in self.spool.pending():
            self.queue.put(path)
        for thread in self._threads:
            thread.start()

    def submit(self, path: Path) -> None:
        self.queue.put(path)

    def drain(self, timeout: float) -> bool:
        """Wait until the queue is empty (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.idle():
                return True
            time.sleep(0.05)
        return self.queue.idle()

    def stop(self) -> None:
        self.stopping.set()
        with self.queue.changed:
            self.queue.changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def _work(self) -> None:
        assoc = None
        wait = self.backoff[0]
        while not self.stopping.is_set():
            path = self.queue.take(self.stopping, wait=IDLE_RELEASE)
            if path is None:  # idle: let the PACS go (Orthanc waits for open associations to stop)
                if assoc is not None and assoc.is_established:
                    assoc.release()
                assoc = None
                continue
            try:
                if not path.exists():
                    continue  # a resend replaced it while queued, or another worker finished it
                if assoc is None or not assoc.is_established:
                    assoc = self.pacs.storage_association(self._classes)
                status = self._send(assoc, path)
            except (PacsUnavailable, OSError) as exc:
                status, assoc = None, None
                LOG.warning("forward %s: %s; retrying in %.1f s", path.name, exc, wait)
            finally:
                self.queue.finished()
            if status is None:  # unreachable or connection lost: back off, the file waits
                self.counters.add("retried")
                self.queue.put(path, delay=wait)
                self.stopping.wait(wait)
                wait = min(wait * 2, self.backoff[1])
                continue
            wait = self.backoff[0]
            self._settle(path, status)
        if assoc is not None and assoc.is_established:
            assoc.release()

    def _send(self, assoc, path: Path) -> int | None:
        """C-STORE one spooled file; its status, or None when the association failed."""
        from pydicom.filereader import read_file_meta_info

        sop_class = str(read_file_meta_info(path).MediaStorageSOPClassUID)
        accepted = any(str(c.abstract_syntax) == sop_class for c in assoc.accepted_contexts)
        if not accepted:  # a class the shared association does not carry: one of its own
            single = self.pacs.storage_association([sop_class])
            try:
                return self._status(single.send_c_store(path))
            finally:
                single.release()
        status = self._status(assoc.send_c_store(path))
        if status is None:
            assoc.abort()
        return status

    @staticmethod
    def _status(answer) -> int | None:
        return int(answer.Status) if answer is not None and "Status" in answer else None

    def _settle(self, path: Path, status: int) -> None:
        if status in SUCCESS_STATUSES:
            self.spool.done(path)
            self.counters.add("forwarded")
            LOG.info("forwarded %s (status 0x%04X)", path.stem, status)
            return
        tries = self.spool.add_try(path)
        reason = f"PACS answered 0x{status:04X} to C-STORE ({tries} of {self.retries} tries)"
        if tries >= self.retries:
            self.spool.quarantine(path, reason)
            self.counters.add("quarantined")
            LOG.error("quarantined %s: %s", path.stem, reason)
        else:
            self.counters.add("retried")
            LOG.warning("forward %s: %s", path.stem, reason)
            self.queue.put(path, delay=min(self.backoff[0] * 2 ** tries, self.backoff[1]))
