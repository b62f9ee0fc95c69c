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
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from keras_dkg.errors import DkgError
from keras_dkg.runtime.batch import worker as batch_worker
from keras_dkg.runtime.batch.engines.environment import scrubbed_spawn_context
from keras_dkg.runtime.batch.report import INTERRUPTED, FileResult
from keras_dkg.runtime.guards.atomic import stale_temporaries

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


def run(report, settings: dict, chunks: list[list[str]], workers: int, bar, collect, generator=None) -> None:
    """Process every chunk into `report` (via `collect`): in this process when one worker (or one chunk)
    is enough, reusing the driver's `generator`, else on a pool of `workers` spawned processes."""
    if workers <= 1 or len(chunks) <= 1:
        _run_here(report, settings, chunks, bar, collect, generator)
    else:
        _run_pool(report, settings, chunks, workers, bar, collect)


def _init_pool_worker(parent: int, settings: dict) -> None:
    """The pool's initializer: a worker that never outlives the batch, then `worker.init_worker`."""
    start_worker(parent)  # ignore Ctrl-C, die with the parent
    batch_worker.init_worker(settings)


def _run_here(report, settings: dict, chunks: list[list[str]], bar, collect, generator) -> None:
    batch_worker.init_worker(settings, generator)
    for chunk in chunks:
        partial: dict[str, FileResult] = {}
        try:
            results, timing = batch_worker.run_chunk(settings["command"], chunk, partial)
        except BaseException:
            collect(report, [r for r in partial.values() if r.status != INTERRUPTED], {})
            _clean_outputs(settings, chunk)
            raise
        collect(report, results, timing)
        bar.update(results)


def _run_pool(report, settings: dict, chunks: list[list[str]], jobs: int, bar, collect) -> None:
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=scrubbed_spawn_context(),  # no passphrase inherited
                               initializer=_init_pool_worker, initargs=(os.getpid(), settings))
    futures = {}
    try:
        for chunk in chunks:  # one by one: stopped while submitting, `futures` still says what ran
            futures[pool.submit(batch_worker.run_chunk, settings["command"], chunk)] = chunk
        waiting = set(futures)
        while waiting:
            done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            for future in done:
                results, timing = _chunk_outcome(future, futures[future])
                collect(report, results, timing)
                bar.update(results)
        pool.shutdown(wait=True)
    except BaseException:
        stop_pool(pool)  # never wait for queued work on Ctrl-C/SIGTERM, never leave workers behind
        finished = {r.path for r in report.files}
        for chunk in futures.values():
            _clean_outputs(settings, [r for r in chunk if r not in finished])
        raise


def _chunk_outcome(future, chunk: list[str]) -> tuple[list[FileResult], dict]:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        results = [batch_worker.failure(FileResult(r), exc) for r in chunk]
        for result in results:
            result.reason = "a worker process died (out of memory?); rerun with --resume"
        return results, {}
    except DkgError as exc:  # worker start-up (model, key store)
        return [batch_worker.failure(FileResult(r), exc) for r in chunk], {}


def _clean_outputs(settings: dict, relatives: list[str]) -> None:
    """Remove temporary files that stopped workers left beside unfinished outputs."""
    if settings.get("output"):
        for relative in relatives:
            stale_temporaries(Path(settings["output"]) / relative)
