"""Batch encryption and decryption of folders: one fresh key per file, nothing lost.

    report = encrypt_folder("scans/", "archive/", keys="keys/", model="g.onnx", seed="seed.dcm")
    report = decrypt_folder("archive/", "back/", keys="keys/")       # or verify_only=True

The rules (docs/batch.md):

* Every entry under IN_DIR is accounted for (`batch.listing`): files with an image
  suffix or the DICOM magic are plaintexts; everything else is in the report as
  ignored or skipped, with why. The ciphertext goes to the same relative path under
  OUT_DIR with the same name and extension (a `.dcm` stays DICOM, through
  `keras_dkg.runtime.formats.dicom`; PNG/TIFF through `keras_dkg.runtime.formats.png_tiff`).
  A file that already is a keras_dkg ciphertext is skipped, never encrypted again.
* `cipher` is "xor" (the paper's) or "hardened" (HKDF + ChaCha20-Poly1305,
  docs/hardened.md); decryption reads it from each file's metadata.
* Each file gets a fresh key (a fresh random nonce perturbs the seed), generated at
  `key_size_for(shape, dtype)` — batched through one onnxruntime session per worker,
  files of one key size sharing a session run — and stored in the key store (KEY_DIR,
  `keras_dkg.runtime.keystore.store`) *before* its ciphertext is written.
* Every output (the folder, the report) is checked by `outputs.OutputGuard` before any
  work. A bad file is reported and skipped; the batch goes on. `BatchReport.exit_code`
  is non-zero when any failed.
* Outputs are written atomically, originals are only read, and an existing output is
  never replaced without `overwrite`. With `resume`, an existing output that
  authenticates with its stored key and decrypts to the current input is kept.
* Stopped by SIGINT/SIGTERM (or KeyboardInterrupt), a batch ends its workers, writes the
  report with the unfinished files as "interrupted" and raises `BatchInterrupted`.
* `jobs > 1` runs a spawn-safe ProcessPoolExecutor (`engines.processes`); each worker opens one
  session. `engine="ray"` runs Ray actors instead (`engines.ray_actors`); the driver looks an
  engine's `run` up by name in `ENGINES`.

This module drives a batch; the pieces are `checks` (before any work), `listing` (which
entries), `worker` (the per-file work), `runtime.formats` (readers and writers), `signals`,
`report` and the engines (`engines/`: where workers run).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from keras_dkg.common import import_object, progress_bar, utc_timestamp
from keras_dkg.errors import InputError, KeyMaterialError
from keras_dkg.runtime.batch.checks import (
    LOCK_NAME,
    check_folders,
    check_report,
    folder_lock,
    guard_outputs,
    make_folder,
)
from keras_dkg.runtime.batch.listing import list_folder
from keras_dkg.runtime.batch.report import (
    DECRYPTED,
    ENCRYPTED,
    FAILED,
    IGNORED,
    INTERRUPTED,
    REPORT_NAME,
    RESUMED,
    SKIPPED,
    VERIFIED,
    BatchReport,
    FileResult,
)
from keras_dkg.runtime.batch.signals import signal_of
from keras_dkg.runtime.ciphers.registry import KNOWN_CIPHERS
from keras_dkg.runtime.formats.registry import open_plaintext_checked as open_plaintext
from keras_dkg.runtime.guards.outputs import refuse_keys_under

__all__ = ["LOCK_NAME", "REPORT_NAME", "BatchInterrupted", "BatchReport", "FileResult", "decrypt_folder",
           "encrypt_folder", "folder_lock", "list_folder", "open_plaintext", "ENCRYPTED", "DECRYPTED", "VERIFIED",
           "RESUMED", "FAILED", "SKIPPED", "IGNORED", "INTERRUPTED"]

#: where a batch's workers run: name -> "module:function", each `run(report, settings, chunks, workers, bar,
#: collect, generator=None)` (batch/engines/)
ENGINES = {"local": "keras_dkg.runtime.batch.engines.processes:run",
           "ray": "keras_dkg.runtime.batch.engines.ray_actors:run"}
DEFAULT_CHUNK = 8  # files per worker task = keys per session run (at most)


class BatchInterrupted(KeyboardInterrupt):
    """A batch stopped by a signal after writing its partial report (`exit_code` is 128 + signal)."""

    def __init__(self, message: str, signum: int, report: BatchReport):
        super().__init__(message)
        self.signum, self.report = signum, report

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# --------------------------------------------------------------------------- driver


class _Progress:
    """A bar (`common.progress_bar`) with the batch's MB/s and failures, or nothing."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.bytes = 0
        self.failed = 0
        self.start = time.perf_counter()
        self.bar = progress_bar(total=total, desc=label, unit="file", enabled=enabled and bool(total))

    def update(self, results: list[FileResult]) -> None:
        if self.bar is None:
            return
        self.bytes += sum(r.bytes for r in results)
        rate = self.bytes / 1e6 / max(time.perf_counter() - self.start, 1e-9)
        self.failed += sum(1 for r in results if r.status == FAILED)
        self.bar.update(len(results))
        self.bar.set_postfix_str(f"{rate:.2f} MB/s" + (f", {self.failed} failed" if self.failed else ""), refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _run(report: BatchReport, settings: dict, relatives: list[str], jobs: int, progress: bool,
         generator=None) -> None:
    """Process every file into `report` on the settings' engine; on an interruption, what finished is in it, then it re-raises."""
    ray = settings.get("engine") == "ray"
    workers = settings.get("workers") or 2 if ray else jobs
    size = settings["chunk"]
    if workers > 1:  # keep every worker busy: at least ~4 tasks each, when there are enough files
        size = max(1, min(size, -(-len(relatives) // (4 * workers))))
    chunks = _chunks(relatives, size)
    bar = _Progress(len(relatives), settings["command"], progress)
    try:
        _engine(settings.get("engine", "local"))(report, settings, chunks, workers, bar, _collect, generator=generator)
    finally:
        bar.close()


def _engine(name: str):
    """The `run` of engine `name` (ENGINES), imported on first use: Ray's only when it runs."""
    return import_object(ENGINES[name])


def _collect(report: BatchReport, results: list[FileResult], timing: dict) -> None:
    report.files.extend(results)
    for phase, seconds in timing.items():
        report.timing_s[phase] = report.timing_s.get(phase, 0.0) + seconds


def _finish(report: BatchReport, relatives: list[str], others: list[FileResult], started: float,
            stopped_by: BaseException | None = None) -> BatchReport:
    """Complete the report: every entry once, the unfinished ones (if stopped) as interrupted."""
    if stopped_by is not None:
        name = signal.Signals(signal_of(stopped_by)).name
        report.interrupted_by = name
        done = {r.path for r in report.files}
        report.files.extend(_interrupted(report, r, name) for r in relatives if r not in done)
    report.files.extend(others)
    report.files.sort(key=lambda r: r.path)
    missing = [f for f in report.failed if f.error == KeyMaterialError.__name__ and "no key with fingerprint" in (f.reason or "")]
    if missing and len(missing) == len(relatives):
        report.options["hint"] = f"no file's key is in {report.keys}: wrong key store?"
    report.elapsed_s = time.perf_counter() - started
    report.finished = utc_timestamp()
    return report


def _interrupted(report: BatchReport, relative: str, name: str) -> FileResult:
    """An unfinished file's entry; its output may have been written just before the stop (not known here)."""
    written = report.output is not None and (Path(report.output) / relative).exists()
    if report.command == "encrypt":
        rerun = "--resume verifies the output and keeps it" if written else "rerun with --resume"
    else:
        rerun = "rerun with --overwrite to finish"
    state = "its output exists but was not confirmed" if written else "not finished"
    return FileResult(relative, INTERRUPTED, reason=f"{state}: the batch was stopped by {name}; {rerun}")


def _process(report: BatchReport, settings: dict, relatives: list[str], others: list[FileResult], jobs: int,
             progress: bool, started: float, destination: Path | None, generator=None) -> BatchReport:
    """Run the files, then write the report; stopped, write what is known and raise BatchInterrupted."""
    try:
        _run(report, settings, relatives, jobs, progress, generator)
    except KeyboardInterrupt as exc:
        _finish(report, relatives, others, started, stopped_by=exc)
        images = set(relatives)
        finished = sum(1 for f in report.files if f.path in images and f.status != INTERRUPTED)
        where = "no report written"
        if destination is not None and report.write_or_note(destination) is not None:
            where = f"the report {destination} lists the unfinished ones as interrupted"
        elif report.not_written:
            where = report.not_written
        rerun = "rerun with --resume" if report.command == "encrypt" else "rerun with --overwrite to finish"
        raise BatchInterrupted(f"interrupted by {report.interrupted_by}: {finished} of {len(relatives)} files "
                               f"finished, {where}; {rerun}", signal_of(exc), report) from None
    _finish(report, relatives, others, started)
    if destination is not None:
        report.write_or_note(destination)  # not written (disk full): the caller lists every failure
    return report




def _engine_settings(engine: str, workers: int | None, ray_address: str | None) -> dict:
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if engine == "local" and (workers is not None or ray_address):
        raise InputError("--workers and --ray-address are for --engine ray (the local engine has --jobs)")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1 (got {workers})")
    if engine == "ray":
        from keras_dkg.runtime.batch.engines.ray_actors import import_ray

        import_ray()  # no Ray: stop before any work, with the install hint
    return {"engine": engine, "workers": workers, "ray_address": ray_address}


def _default_threads(jobs: int) -> int | None:
    if jobs <= 1:
        return None
    return max(1, (os.cpu_count() or jobs) // jobs)


# --------------------------------------------------------------------------- the API


def encrypt_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    keys: str | os.PathLike,
    model: str | os.PathLike,
    seed: str | os.PathLike,
    jobs: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    report: str | os.PathLike | None = None,
    provider: str = "auto",
    backend: str = "auto",
    precision: str = "auto",
    cipher: str = "xor",
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
    quiet: bool = False,
    credentials=None,
    engine: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
) -> BatchReport:
    """Encrypt every image under `in_dir` into `out_dir` (see the module docstring).

    Raises DkgError for setup problems (folders, report path, model, seed), before any
    work; per-file problems are in the returned report (also written to `report`,
    default OUT_DIR/dkg-report.json). Interrupted: BatchInterrupted, the report written.
    """
    started = time.perf_counter()
    in_dir, out_dir, keys = Path(in_dir), Path(out_dir), Path(keys)
    engine_settings = _engine_settings(engine, workers, ray_address)
    check_folders(in_dir, out_dir, keys, "input or output")
    if jobs < 1 or chunk < 1:
        raise InputError(f"--jobs and the chunk size must be at least 1 (got {jobs}, {chunk})")
    if cipher not in KNOWN_CIPHERS:
        raise InputError(f"unknown cipher {cipher!r}; expected one of {', '.join(KNOWN_CIPHERS)}")
    guard = guard_outputs(in_dir, out_dir, keys, overwrite, seed=seed, model=model)
    destination = check_report(guard, report, out_dir, in_dir, keys, resume)
    from keras_dkg.runtime.keystore.custody import Credentials, require_protected

    credentials = credentials or Credentials.from_environment()
    require_protected(keys, credentials)  # a secret given for no protected store: refused, never ignored
    if cipher == "hardened":
        from keras_dkg.runtime.ciphers.hardened import require_cryptography

        require_cryptography()  # no `cryptography`: stop before any work, with the install hint
    from keras_dkg.runtime.keys.generator import KeyGenerator, load_seed

    load_seed(seed)  # an unreadable seed (an image, or VOLUME.nii[.gz][:SLICE]) stops the batch before any work
    # so does a broken model; this session serves a one-process batch (workers open their own)
    generator = KeyGenerator(model, provider=provider, batch_size=chunk, backend=backend, precision=precision)
    engine_info = generator.engine.info  # workers run the engine the driver chose (`auto` measures once)
    make_folder(out_dir)
    with folder_lock(out_dir):  # a second batch into OUT_DIR now is refused, not interleaved
        from keras_dkg.runtime.keystore.store import KeyStore

        refuse_keys_under(out_dir, in_dir, "ciphertext")  # never replaced, even with --overwrite
        # created (or unlocked) here, once, before any worker; held open: rotate/protect wait for this batch
        _writer = KeyStore(keys, create=True, credentials=credentials)
        credentials = credentials.for_workers()  # workers get the derived key, never the passphrase
        images, others = list_folder(in_dir, exclude={"output folder": out_dir, "key store": keys})
        settings = {
            "command": "encrypt", "input": str(in_dir), "output": str(out_dir), "keys": str(keys),
            "model": str(model), "seed": str(seed), "provider": provider, "cipher": cipher,
            "backend": engine_info.name, "precision": engine_info.precision, "engine_settings": engine_info.settings,
            "resume": resume, "overwrite": overwrite, "chunk": chunk, "threads": _default_threads(jobs),
            "quiet_opencv": quiet, "credentials": credentials, **engine_settings,
        }
        result = BatchReport("encrypt", str(in_dir), str(out_dir), str(keys), utc_timestamp(), jobs=jobs, options={
            "model": str(model), "seed": str(seed), "resume": resume, "overwrite": overwrite,
            "cipher": cipher, "provider": provider, "engine": engine, "key_engine": engine_info.record(),
        })
        relatives = [p.relative_to(in_dir).as_posix() for p in images]
        return _process(result, settings, relatives, others, jobs, progress, started, destination, generator)


def decrypt_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None,
    *,
    keys: str | os.PathLike,
    verify_only: bool = False,
    jobs: int = 1,
    overwrite: bool = False,
    report: str | os.PathLike | None = None,
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
    quiet: bool = False,
    credentials=None,
    engine: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
) -> BatchReport:
    """Verify every ciphertext under `in_dir`; decrypt into `out_dir` unless `verify_only`.

    The report goes to `report` (default OUT_DIR/dkg-report.json; none when verifying
    only, which writes nothing).
    """
    started = time.perf_counter()
    in_dir, keys = Path(in_dir), Path(keys)
    engine_settings = _engine_settings(engine, workers, ray_address)
    target = None if verify_only else (Path(out_dir) if out_dir is not None else None)
    if target is None and not verify_only:
        raise InputError("decrypting a folder needs -o BACK_DIR (or --verify to check without writing)")
    check_folders(in_dir, target, keys, "archive or output")
    if not keys.is_dir():
        raise KeyMaterialError(f"{keys}: no such key store folder")
    from keras_dkg.runtime.keystore.custody import Credentials, require_protected
    from keras_dkg.runtime.keystore.store import INDEX_NAME, KeyStore, is_key_store

    credentials = credentials or Credentials.from_environment()
    require_protected(keys, credentials)  # a secret given for a plain store: refused, never ignored
    if not is_key_store(keys):
        raise KeyMaterialError(f"{keys}: not a keras_dkg key store (no {INDEX_NAME}); wrong --keys folder?")
    KeyStore(keys, credentials=credentials)  # a protected store is unlocked once, here (wrong passphrase: stop)
    credentials = credentials.for_workers()  # workers get the derived key, never the passphrase
    if jobs < 1 or chunk < 1:
        raise InputError(f"--jobs and the chunk size must be at least 1 (got {jobs}, {chunk})")
    guard = guard_outputs(in_dir, target, keys, overwrite)
    destination = check_report(guard, report, target, in_dir, keys, resume=False)
    with contextlib.ExitStack() as stack:
        if target is not None:
            refuse_keys_under(target, in_dir, "plaintext")  # never replaced, even with --overwrite
            make_folder(target)
            stack.enter_context(folder_lock(target))  # a second batch into BACK_DIR now is refused
        images, others = list_folder(in_dir, exclude={"output folder": target, "key store": keys})
        settings = {
            "command": "decrypt", "input": str(in_dir), "output": str(target) if target else None,
            "keys": str(keys), "overwrite": overwrite, "chunk": chunk, "quiet_opencv": quiet,
            "credentials": credentials, **engine_settings,
        }
        relatives = [p.relative_to(in_dir).as_posix() for p in images]
        if engine == "ray" and target is not None:  # a dead worker's retried files may replace only these
            settings["new_outputs"] = [r for r in relatives if not (target / r).exists()]
        result = BatchReport("verify" if verify_only else "decrypt", str(in_dir), settings["output"], str(keys),
                             utc_timestamp(), jobs=jobs, options={"overwrite": overwrite, "verify_only": verify_only,
                                                                  "engine": engine})
        return _process(result, settings, relatives, others, jobs, progress, started, destination)

