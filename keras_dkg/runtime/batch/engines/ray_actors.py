"""`--engine ray`: a batch's chunks on a pool of Ray actors (docs/scale.md).

Ray core actors, not Ray Data: the work is files with side effects (a key stored before
its ciphertext is written, atomic writes on a shared filesystem) whose fate the report
must know one by one, and a dead worker's files must end done exactly once. A pool of
actors we feed ourselves keeps that explicit: each actor is `batch_worker` in a Ray
process — ONE onnxruntime session built in the actor (sessions do not pickle) with its
intra-op threads matched to the actor's CPUs — and the driver sends it chunks of relative
paths (files of one key size share a session run inside a chunk) and gets `FileResult`s
back; pixel data never passes through the driver. Ray Data's `map_batches` would retry
failed blocks on its own, hide which files a dead actor had finished, and bring pyarrow
and pandas along.

* Each actor writes its own key store shard (`KeyStore(shard=…)`, locked for the actor's
  life, so another run's merge leaves it alone): key files named by
  fingerprint, written atomically, one append-only index file and one audit chain per
  worker, no lock across nodes. Readers (dkg-decrypt too) see the shards at once; the
  driver merges them into the main index when the batch is done.
* A dead actor (killed, OOM, node lost): its chunks go to the other actors with
  `--resume`'s rule (an output that exists and verifies with its stored key is kept),
  so every file ends encrypted exactly once or reported. When every actor is gone, the
  remaining files are reported failed ("rerun with --resume").
* Without an address a local Ray is started with one CPU per worker and shut down at
  the end — also when the driver is SIGKILLed: `ray_reaper` ends every process of that
  local Ray within seconds; with `--ray-address auto|HOST:PORT` the command joins that
  cluster (and never kills anything of it).
"""

from __future__ import annotations

import collections
import logging
import sys
import time
import uuid

from keras_dkg.errors import DkgError, KeyMaterialError, OutputError
from keras_dkg.runtime.batch import worker as batch_worker
from keras_dkg.runtime.batch.engines import ray_reaper
from keras_dkg.runtime.batch.engines.environment import without_secrets
from keras_dkg.runtime.batch.report import FileResult
from keras_dkg.runtime.keystore.custody import SECRET_VARIABLES
from keras_dkg.runtime.keystore.store import KeyStore

INSTALL_HINT = "pip install 'keras-dkg[ray]'"
SHARD_MERGE_WAIT_S = 20.0  # how long the driver waits for its killed Ray actors to let go of their shards
IN_FLIGHT = 2  # chunks queued per actor: the next is there when one finishes


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise DkgError(f"--engine ray needs Ray: {INSTALL_HINT}") from exc
    return ray


class BatchActor:
    """One worker: `batch_worker`'s state (session, key store shard) in a Ray actor process."""

    def __init__(self, settings: dict, name: str, threads: int):
        batch_worker.init_worker({**settings, "shard": name, "threads": threads})

    def run(self, command: str, relatives: list[str], retry: bool = False):
        return batch_worker.run_chunk(command, relatives, retry=retry)

    def pid(self) -> int:
        import os

        return os.getpid()


def _after_chunk(actors: dict, finished: int) -> None:
    """Called by the driver after each chunk (a seam for the fault tests)."""


def _start(ray, address: str | None, workers: int, cpus_per_worker: int) -> tuple[bool, float, object]:
    """Join or start Ray; (started here, seconds it took, the watcher that ends a local Ray with this
    process even when it is SIGKILLed — `ray_reaper`, started before Ray so no moment is uncovered;
    None when joining a cluster or when Ray already runs in this process)."""
    if ray.is_initialized():
        return False, 0.0, None
    start = time.perf_counter()
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    reaper = None if address else ray_reaper.start()
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers * cpus_per_worker, **options)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError …
        if reaper is not None:
            reaper.release()
        raise DkgError(f"cannot start or reach Ray ({'address ' + address if address else 'local'}): {exc}") from exc
    return True, time.perf_counter() - start, reaper


def run(report, settings: dict, chunks: list[list[str]], workers: int, bar, collect, generator=None,
        cpus_per_worker: int = 1) -> None:
    """Process every chunk on `workers` actors into `report` (via `collect`), then merge their key store
    shards; Ray at `settings["ray_address"]`, else a local one (`generator`: unused, each actor opens its own)."""
    _run_actors(report, settings, chunks, workers, settings.get("ray_address"), bar, collect, cpus_per_worker)
    _merge_shards(settings)


def _run_actors(report, settings: dict, chunks: list[list[str]], workers: int, address: str | None, bar,
                collect, cpus_per_worker: int) -> None:
    ray = import_ray()
    with without_secrets():  # a local Ray (and every worker it starts) without the passphrase in its environment
        started, startup, reaper = _start(ray, address, workers, cpus_per_worker)
    report.options["ray_startup_s"] = round(startup, 3)
    command = settings["command"]
    actor_class = ray.remote(num_cpus=cpus_per_worker, max_restarts=0,  # a Ray started elsewhere: blanked
                             runtime_env={"env_vars": dict.fromkeys(SECRET_VARIABLES, "")})(BatchActor)
    run_id = uuid.uuid4().hex[:8]
    actors = {index: actor_class.remote(settings, f"ray-{run_id}-{index}", cpus_per_worker)
              for index in range(workers)}
    settings["ray_shards"] = [f"ray-{run_id}-{index}" for index in range(workers)]  # the driver merges these
    queue = collections.deque((chunk, False) for chunk in chunks)
    flying: dict = {}  # object ref -> (actor index, chunk, retry)

    def submit(index: int) -> None:
        if queue and index in actors:
            chunk, retry = queue.popleft()
            flying[actors[index].run.remote(command, chunk, retry)] = (index, chunk, retry)

    finished = 0
    try:
        for index in list(actors):
            for _ in range(IN_FLIGHT):
                submit(index)
        while flying:
            [ref], _ = ray.wait(list(flying), num_returns=1)
            index, chunk, retry = flying.pop(ref)
            try:
                results, timing = ray.get(ref)
            except ray.exceptions.RayActorError:
                actors.pop(index, None)  # dead: its chunks go to the others, resumed
                queue.appendleft((chunk, True))
                if not actors:
                    _fail_rest(report, queue, collect, bar)
                    continue
                for other in list(actors):
                    if sum(1 for i, _, _ in flying.values() if i == other) < IN_FLIGHT:
                        submit(other)
                continue
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None) or exc
                results, timing = [batch_worker.failure(FileResult(r), cause) for r in chunk], {}
            collect(report, results, timing)
            bar.update(results)
            finished += 1
            _after_chunk(actors, finished)
            submit(index)
    finally:
        for actor in actors.values():
            ray.kill(actor)
        if started:
            ray.shutdown()
        if reaper is not None:
            reaper.release()


def _fail_rest(report, queue, collect, bar) -> None:
    while queue:
        chunk, _ = queue.popleft()
        results = [FileResult(r) for r in chunk]
        for result in results:
            result.status, result.error = "failed", "WorkerDied"
            result.reason = "every Ray worker died before this file was done; rerun with --resume"
        collect(report, results, {})
        bar.update(results)


def _merge_shards(settings: dict) -> None:
    """The finished key store shards into the main index (readers saw them all along).

    Only shards whose writer is gone are taken (`KeyStore.merge_shards`): another run's live
    shards stay for its own merge. This run's actors were just killed; their locks go as
    their processes end, so they are waited for (bounded); one still held is merged later.
    """
    store = KeyStore(settings["keys"], credentials=settings.get("credentials"))
    own = settings.get("ray_shards", [])
    try:
        store.merge_shards(wait_for=own, wait_s=SHARD_MERGE_WAIT_S)
    except (KeyMaterialError, OutputError) as exc:  # the keys are safe in the shards: the run's report still counts
        print(f"warning: {settings['keys']}: the shards were not merged ({exc}); readers use them as they are, "
              "`dkg-keys verify` shows the problem", file=sys.stderr)
        return
    left = [name for name in store.live_shards if name in own]
    if left:
        print(f"warning: {settings['keys']}: shard(s) {', '.join(left)} still held by a worker; the next merge "
              "(a later batch, or `dkg-keys rotate`) takes them, and readers see them meanwhile", file=sys.stderr)
