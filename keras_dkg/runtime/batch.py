"""Batch encryption and decryption of folders: one fresh key per file, nothing lost.

    report = encrypt_folder("scans/", "archive/", keys="keys/", model="g.onnx", seed="seed.dcm")
    report = decrypt_folder("archive/", "back/", keys="keys/")       # or verify_only=True

The rules (docs/batch.md):

* Every file under IN_DIR (recursively; hidden files and the output/key folders left
  out) with an image suffix or the DICOM magic is a plaintext; the ciphertext goes to
  the same relative path under OUT_DIR with the same name and extension (a `.dcm`
  stays DICOM, through `keras_dkg.runtime.dicom`; PNG/TIFF through
  `keras_dkg.runtime.containers`). Other files are listed as "ignored".
* `cipher` is "xor" (the paper's) or "hardened" (HKDF + ChaCha20-Poly1305,
  docs/hardened.md); decryption reads it from each file's metadata.
* Each file gets a fresh key (a fresh random nonce perturbs the seed), generated at
  `key_size_for(shape, dtype)` — batched through one onnxruntime session per worker,
  files of one key size sharing a session run — and stored in the key store (KEY_DIR,
  `keras_dkg.runtime.keystore`) *before* its ciphertext is written; the index maps the
  file to the key's fingerprint and key file.
* A bad file (unreadable, damaged, unsupported, lossy output format) is reported and
  skipped; the batch goes on. The report (JSON, or CSV by suffix) lists every file
  with its status and reason; `BatchReport.exit_code` is non-zero when any failed.
* Outputs are written atomically (`imageio.atomic_output`), originals are only read,
  and an existing output is never replaced without `overwrite`. With `resume`, an
  existing output that authenticates with its stored key and decrypts to the current
  input is kept ("resumed"), so a killed batch finishes with the same decryptions as an
  uninterrupted run.
* `jobs > 1` runs a spawn-safe ProcessPoolExecutor; each worker opens one session.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from keras_dkg.errors import DkgError, InputError, IntegrityError, KeyMaterialError, OutputError
from keras_dkg.runtime.cipher import (
    KNOWN_CIPHERS,
    decrypt_array,
    encrypt_array,
    key_size_for,
    plaintext_digest,
)
from keras_dkg.runtime.containers import (
    container_for,
    context_for,
    load_ciphertext,
    read_plaintext,
)
from keras_dkg.runtime.imageio import IMAGE_SUFFIXES, is_dicom, write_bytes_atomic

REPORT_NAME = "dkg-report.json"
DEFAULT_CHUNK = 8  # files per worker task = keys per session run (at most)
PHASES = ("decode", "keygen", "keystore", "xor", "encode", "write", "verify")

# statuses
ENCRYPTED, DECRYPTED, VERIFIED, RESUMED, FAILED, IGNORED = (
    "encrypted", "decrypted", "verified", "resumed", "failed", "ignored")


@dataclass
class FileResult:
    """One file's line in the report."""

    path: str  # relative to the input folder
    status: str
    reason: str | None = None
    output: str | None = None  # relative to the output folder
    key_fingerprint: str | None = None
    key_file: str | None = None  # relative to the key store
    bytes: int = 0  # plaintext bytes
    shape: list[int] | None = None
    dtype: str | None = None
    error: str | None = None  # exception class, for failures

    @property
    def ok(self) -> bool:
        return self.status not in (FAILED,)


@dataclass
class BatchReport:
    """What a batch did: every file's result, totals and the time per phase."""

    command: str
    input: str
    output: str | None
    keys: str
    started: str
    finished: str = ""
    elapsed_s: float = 0.0
    jobs: int = 1
    options: dict = field(default_factory=dict)
    timing_s: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    files: list[FileResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == FAILED]

    @property
    def exit_code(self) -> int:
        """0: all good; 3: some tag failed (tampered/wrong key); 1: other failures."""
        if not self.failed:
            return 0
        return 3 if any(f.error == IntegrityError.__name__ for f in self.failed) else 1

    def summary(self) -> dict:
        done = [f for f in self.files if f.status in (ENCRYPTED, DECRYPTED, VERIFIED)]
        total_bytes = sum(f.bytes for f in done)
        seconds = max(self.elapsed_s, 1e-9)
        counts = {status: self.count(status) for status in (ENCRYPTED, DECRYPTED, VERIFIED, RESUMED, FAILED, IGNORED)}
        return {
            "files": len(self.files), **{k: v for k, v in counts.items() if v},
            "processed_bytes": total_bytes,
            "files_per_s": round(len(done) / seconds, 3),
            "mb_per_s": round(total_bytes / 1e6 / seconds, 3),
        }

    def to_dict(self) -> dict:
        data = asdict(self)
        data["summary"] = self.summary()
        data["timing_s"] = {k: round(v, 6) for k, v in self.timing_s.items()}
        return data

    def summary_line(self) -> str:
        s = self.summary()
        parts = [f"{s.get(k)} {k}" for k in (ENCRYPTED, DECRYPTED, VERIFIED, RESUMED, FAILED, IGNORED) if s.get(k)]
        return (f"{self.command}: {s['files']} files: {', '.join(parts) or 'nothing to do'} in "
                f"{self.elapsed_s:.2f} s ({s['files_per_s']:.2f} files/s, {s['mb_per_s']:.2f} MB/s)")

    def write(self, path: str | os.PathLike) -> Path:
        """JSON (default) or CSV (`.csv`), written atomically (replacing an older report)."""
        target = Path(path)
        if target.suffix.lower() == ".csv":
            buffer = io.StringIO()
            columns = ["path", "status", "reason", "output", "key_fingerprint", "key_file", "bytes", "error"]
            writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for result in self.files:
                writer.writerow(asdict(result))
            data = buffer.getvalue().encode("utf-8")
        else:
            data = (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8")
        target.parent.mkdir(parents=True, exist_ok=True)
        return write_bytes_atomic(target, data, overwrite=True)


# --------------------------------------------------------------------------- listing


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def list_folder(root: Path, exclude: Iterable[Path | None] = ()) -> tuple[list[Path], list[Path]]:
    """(candidate image files, other files) under `root`, sorted, hidden ones and `exclude` folders left out."""
    excluded = [p for p in exclude if p is not None]
    images, others = [], []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if not path.is_file() or any(_inside(path, folder) for folder in excluded):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES or is_dicom(path):
            images.append(path)
        else:
            others.append(path)
    return images, others


# --------------------------------------------------------------------------- formats


def _is_dicom_file(path: Path) -> bool:
    return path.suffix.lower() in (".dcm", ".dicom") or is_dicom(path)


@dataclass
class _Plain:
    """A plaintext read for encryption, with how to write its ciphertext."""

    array: np.ndarray
    context: bytes
    save: Callable[[Path, np.ndarray, object, bool, dict], None]


def _open_plaintext(source: Path) -> _Plain:
    """Read a plaintext (DICOM through our module, others through their container)."""
    if _is_dicom_file(source):
        from keras_dkg.runtime import dicom

        plain = dicom.read_dicom(source)
        context = dicom.plaintext_context(plain)

        def save_dicom(target: Path, ciphertext, meta, overwrite: bool, timing: dict) -> None:
            start = time.perf_counter()
            data = dicom.ciphertext_bytes(plain, ciphertext, meta, context)
            middle = time.perf_counter()
            dicom.save_dicom_ciphertext(target, data, overwrite=overwrite)
            timing["encode"] += middle - start
            timing["write"] += time.perf_counter() - middle

        return _Plain(plain.plain_array(), context, save_dicom)
    container = container_for(source)  # refuses lossy/unknown suffixes: outputs keep them
    array = read_plaintext(source)
    context = context_for(container, source)

    def save_other(target: Path, ciphertext, meta, overwrite: bool, timing: dict) -> None:
        start = time.perf_counter()
        container.save(target, ciphertext, meta, overwrite=overwrite, source=source)
        timing["write"] += time.perf_counter() - start  # encode + write (one container call)

    return _Plain(array, context, save_other)


def _open_ciphertext(path: Path):
    """(ciphertext array, metadata, context, writer(target, plain, overwrite)) of an encrypted file."""
    if _is_dicom_file(path):
        from keras_dkg.runtime import dicom

        encrypted = dicom.load_dicom_ciphertext(path)

        def write_dicom(target: Path, plain: np.ndarray, overwrite: bool) -> None:
            dicom.write_dicom_plaintext(target, dicom.restore_plaintext(encrypted, plain), overwrite=overwrite)

        return encrypted.cipher_pixels, encrypted.meta, encrypted.context, write_dicom
    container = container_for(path)
    array, meta = load_ciphertext(path)
    context = context_for(container, path)

    def write_other(target: Path, plain: np.ndarray, overwrite: bool) -> None:
        from keras_dkg.runtime.containers import write_plaintext

        write_plaintext(target, plain, overwrite=overwrite, source=path)

    return array, meta, context, write_other


# --------------------------------------------------------------------------- worker state

_STATE: dict = {}


def _init_worker(settings: dict, generator=None) -> None:
    """Per process: one onnxruntime session (encryption) and the key store."""
    from keras_dkg.runtime.keystore import KeyStore

    _STATE.clear()
    _STATE["settings"] = settings
    if settings.get("quiet_opencv"):
        _silence_opencv()
    _STATE["store"] = KeyStore(settings["keys"], create=settings["command"] == "encrypt")
    if settings["command"] == "encrypt":
        if generator is None:
            from keras_dkg.runtime.keygen import KeyGenerator

            generator = KeyGenerator(settings["model"], provider=settings["provider"],
                                     threads=settings.get("threads"), batch_size=settings["chunk"])
        _STATE["generator"] = generator


def _silence_opencv() -> None:
    """OpenCV logs decoder complaints on stderr; the batch reports bad files itself."""
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):  # pragma: no cover - older OpenCV builds
        pass


def _failure(result: FileResult, exc: BaseException) -> FileResult:
    result.status = FAILED
    result.error = type(exc).__name__
    if isinstance(exc, DkgError):
        result.reason = str(exc)
    elif isinstance(exc, MemoryError):
        result.reason = "out of memory"
    else:
        result.reason = f"internal error: {type(exc).__name__}: {exc}"
    return result


def _stale_temporaries(target: Path) -> None:
    """Remove temporary files a killed run left beside `target` (see imageio.atomic_output)."""
    if target.parent.is_dir():
        for stale in target.parent.glob(f".{target.name}.*.tmp{target.suffix}"):
            stale.unlink(missing_ok=True)


def _verify_existing(source: Path, target: Path, store, timing: dict,
                     cipher: str | None = None) -> tuple[bool, str, str | None]:
    """Whether an existing output authenticates with its stored key and holds `source` (reason, fingerprint);
    with `cipher`, also whether it was made with that cipher (a resumed batch keeps one cipher)."""
    start = time.perf_counter()
    try:
        ciphertext, meta, context, _ = _open_ciphertext(target)
        if cipher is not None and meta.cipher != cipher:
            return False, f"it was encrypted with cipher {meta.cipher!r}, this batch uses {cipher!r}", None
        key = store.load(meta.key_fingerprint)
        plain = decrypt_array(ciphertext, key.pixels, meta, context=context)
        current = _open_plaintext(source)
        if plaintext_digest(plain) != plaintext_digest(current.array) or context != current.context:
            return False, "the output holds another version of this input", meta.key_fingerprint
        return True, "", meta.key_fingerprint
    except DkgError as exc:
        return False, str(exc), None
    finally:
        timing["verify"] += time.perf_counter() - start


def _encrypt_chunk(relatives: list[str]) -> tuple[list[FileResult], dict]:
    """Encrypt some files (worker side): read all, make their keys in batched runs, write each."""
    settings, store, generator = _STATE["settings"], _STATE["store"], _STATE["generator"]
    in_dir, out_dir = Path(settings["input"]), Path(settings["output"])
    timing = dict.fromkeys(PHASES, 0.0)
    results: dict[str, FileResult] = {}
    pending: dict[str, _Plain] = {}
    for relative in relatives:
        source, target = in_dir / relative, out_dir / relative
        result = results[relative] = FileResult(relative, ENCRYPTED, output=relative)
        try:
            _stale_temporaries(target)  # left by a killed run; OUT_DIR is ours
            if target.exists() or target.is_symlink():
                if settings["resume"]:
                    ok, why, fingerprint = _verify_existing(source, target, store, timing, settings["cipher"])
                    if ok:
                        result.status, result.reason = RESUMED, "output exists and verifies with its stored key"
                        result.key_fingerprint = fingerprint
                        result.key_file = store.find(fingerprint)["key_file"]
                        continue
                    if not settings["overwrite"]:
                        raise OutputError(f"{target}: exists but does not verify ({why}); use --overwrite to redo it")
                elif not settings["overwrite"]:
                    raise OutputError(f"{target}: exists; refusing to overwrite (use --overwrite, or --resume)")
            start = time.perf_counter()
            plain = _open_plaintext(source)
            timing["decode"] += time.perf_counter() - start
            result.bytes, result.shape, result.dtype = int(plain.array.nbytes), list(plain.array.shape), plain.array.dtype.name
            pending[relative] = plain
        except Exception as exc:  # a bad file is reported, the batch goes on
            _failure(result, exc)
    # one session run per key size (at most `chunk` keys each)
    by_size: dict[tuple[int, int], list[str]] = defaultdict(list)
    for relative, plain in pending.items():
        by_size[key_size_for(plain.array.shape, plain.array.dtype)].append(relative)
    from keras_dkg.runtime.keygen import random_nonce

    for size, group in by_size.items():
        start = time.perf_counter()
        try:
            keys = generator.generate_many(settings["seed"], size, [random_nonce() for _ in group])
        except Exception as exc:
            for relative in group:
                _failure(results[relative], exc)
                pending.pop(relative)
            continue
        finally:
            timing["keygen"] += time.perf_counter() - start
        for relative, key in zip(group, keys, strict=True):
            result, plain = results[relative], pending.pop(relative)
            source, target = in_dir / relative, out_dir / relative
            try:
                start = time.perf_counter()
                # the key is kept, with the plaintext it is for, before its ciphertext exists
                # (one append to the index: keystore.KeyStore.add)
                entry = store.add(key, plaintext_digest(plain.array), str(source.resolve()))
                result.key_fingerprint, result.key_file = key.fingerprint, entry["key_file"]
                timing["keystore"] += time.perf_counter() - start
                start = time.perf_counter()
                ciphertext, meta = encrypt_array(plain.array, key.pixels, cipher=settings["cipher"],
                                                 nonce=key.record.get("nonce"), context=plain.context)
                timing["xor"] += time.perf_counter() - start
                target.parent.mkdir(parents=True, exist_ok=True)
                plain.save(target, ciphertext, meta, settings["overwrite"], timing)
            except Exception as exc:
                _failure(result, exc)
    return [results[r] for r in relatives], timing


def _decrypt_chunk(relatives: list[str]) -> tuple[list[FileResult], dict]:
    """Verify and decrypt some files (worker side)."""
    settings, store = _STATE["settings"], _STATE["store"]
    in_dir = Path(settings["input"])
    out_dir = Path(settings["output"]) if settings["output"] else None
    timing = dict.fromkeys(PHASES, 0.0)
    results = []
    for relative in relatives:
        source = in_dir / relative
        result = FileResult(relative, VERIFIED if out_dir is None else DECRYPTED,
                            output=None if out_dir is None else relative)
        results.append(result)
        try:
            target = None if out_dir is None else out_dir / relative
            if target is not None and target.exists() and not settings["overwrite"]:
                raise OutputError(f"{target}: exists; refusing to overwrite (use --overwrite)")
            start = time.perf_counter()
            ciphertext, meta, context, write = _open_ciphertext(source)
            timing["decode"] += time.perf_counter() - start
            result.key_fingerprint = meta.key_fingerprint
            start = time.perf_counter()
            key = store.load(meta.key_fingerprint)
            result.key_file = store.find(meta.key_fingerprint)["key_file"]
            timing["keystore"] += time.perf_counter() - start
            start = time.perf_counter()
            plain = decrypt_array(ciphertext, key.pixels, meta, context=context)
            timing["xor"] += time.perf_counter() - start
            result.bytes, result.shape, result.dtype = int(plain.nbytes), list(plain.shape), plain.dtype.name
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                start = time.perf_counter()
                write(target, plain, settings["overwrite"])
                timing["write"] += time.perf_counter() - start
        except Exception as exc:
            _failure(result, exc)
    return results, timing


def _run_chunk(command: str, relatives: list[str]) -> tuple[list[FileResult], dict]:
    return (_encrypt_chunk if command == "encrypt" else _decrypt_chunk)(relatives)


# --------------------------------------------------------------------------- driver


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Progress:
    """tqdm when installed (imported lazily), else nothing."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.bar = None
        self.bytes = 0
        self.failed = 0
        self.start = time.perf_counter()
        if enabled and total:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, desc=label, unit="file", dynamic_ncols=True, leave=True)

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
    command = settings["command"]
    size = settings["chunk"]
    if jobs > 1:  # keep every worker busy: at least ~4 tasks each, when there are enough files
        size = max(1, min(size, -(-len(relatives) // (4 * jobs))))
    chunks = _chunks(relatives, size)
    bar = _Progress(len(relatives), command, progress)
    try:
        if jobs <= 1 or len(chunks) <= 1:
            _init_worker(settings, generator)
            for chunk in chunks:
                results, timing = _run_chunk(command, chunk)
                _collect(report, results, timing)
                bar.update(results)
            return
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                                 initargs=(settings,)) as pool:
            futures = {pool.submit(_run_chunk, command, chunk): chunk for chunk in chunks}
            for future in as_completed(futures):
                try:
                    results, timing = future.result()
                except BrokenProcessPool as exc:
                    results = [_failure(FileResult(r, FAILED), exc) for r in futures[future]]
                    for result in results:
                        result.reason = "a worker process died (out of memory?); rerun with --resume"
                    timing = {}
                except DkgError as exc:  # worker start-up (model, key store)
                    results, timing = [_failure(FileResult(r, FAILED), exc) for r in futures[future]], {}
                _collect(report, results, timing)
                bar.update(results)
    finally:
        bar.close()


def _collect(report: BatchReport, results: list[FileResult], timing: dict) -> None:
    report.files.extend(results)
    for phase, seconds in timing.items():
        report.timing_s[phase] = report.timing_s.get(phase, 0.0) + seconds


def _finish(report: BatchReport, others: list[Path], root: Path, started: float) -> BatchReport:
    report.files.extend(FileResult(p.relative_to(root).as_posix(), IGNORED, reason="not an image file")
                        for p in others)
    report.files.sort(key=lambda r: r.path)
    report.elapsed_s = time.perf_counter() - started
    report.finished = _now()
    return report


LOCK_NAME = ".dkg-batch.lock"


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from exc


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold FOLDER/.dkg-batch.lock while a batch writes into FOLDER; refuse at once if another holds it.

    Two batches writing one folder would race file by file (each output still atomic, but
    the report and the set of outputs split between two runs): the second is refused
    instead, with OutputError, before it writes anything. The lock file is removed on
    exit; one left by a killed run holds no lock (flock dies with its process).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"{folder}: cannot write in the output folder ({exc.strerror or exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise OutputError(
                    f"{folder}: another batch is writing into this folder right now ({LOCK_NAME} is held); "
                    "wait for it to finish or choose another output folder"
                ) from None
            raise OutputError(f"{path}: cannot lock ({exc.strerror or exc})") from exc
        try:
            held = os.stat(path)
            opened = os.fstat(fd)
            same = (held.st_dev, held.st_ino) == (opened.st_dev, opened.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file meanwhile: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _check_folders(in_dir: Path, out_dir: Path | None, keys: Path, what: str) -> None:
    if not in_dir.is_dir():
        raise InputError(f"{in_dir}: no such folder")
    if out_dir is not None:
        if out_dir.resolve() == in_dir.resolve():
            raise OutputError(f"{out_dir}: is the input folder; originals are never overwritten (choose another -o)")
        if _inside(in_dir, out_dir):
            raise OutputError(f"{out_dir}: contains the input folder {in_dir}; choose an output folder outside it")
    if keys.resolve() == in_dir.resolve() or (out_dir is not None and keys.resolve() == out_dir.resolve()):
        raise OutputError(f"{keys}: the key store must be a folder of its own, not the {what} folder")


def _default_threads(jobs: int) -> int | None:
    if jobs <= 1:
        return None
    return max(1, (os.cpu_count() or jobs) // jobs)


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
    cipher: str = "xor",
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
    quiet: bool = False,
) -> BatchReport:
    """Encrypt every image under `in_dir` into `out_dir` (see the module docstring).

    Raises DkgError for setup problems (folders, model, seed); per-file problems are in
    the returned report (also written to `report`, default OUT_DIR/dkg-report.json).
    """
    started = time.perf_counter()
    in_dir, out_dir, keys = Path(in_dir), Path(out_dir), Path(keys)
    _check_folders(in_dir, out_dir, keys, "input or output")
    if jobs < 1 or chunk < 1:
        raise InputError(f"--jobs and the chunk size must be at least 1 (got {jobs}, {chunk})")
    if cipher not in KNOWN_CIPHERS:
        raise InputError(f"unknown cipher {cipher!r}; expected one of {', '.join(KNOWN_CIPHERS)}")
    if cipher == "hardened":
        from keras_dkg.runtime.hardened import require_cryptography

        require_cryptography()  # no `cryptography`: stop before any work, with the install hint
    seed_path = Path(seed)
    from keras_dkg.runtime.imageio import read_image
    from keras_dkg.runtime.keygen import KeyGenerator

    read_image(seed_path)  # an unreadable seed stops the batch before any work
    # so does a broken model; this session serves a one-process batch (workers open their own)
    generator = KeyGenerator(model, provider=provider, batch_size=chunk)
    _make_folder(out_dir)
    with folder_lock(out_dir):  # a second batch into OUT_DIR now is refused, not interleaved
        return _encrypt_folder_locked(in_dir, out_dir, keys, model, seed_path, generator, jobs, resume, overwrite,
                                      report, provider, cipher, chunk, progress, quiet, started)


def _encrypt_folder_locked(in_dir: Path, out_dir: Path, keys: Path, model, seed_path: Path, generator, jobs: int,
                           resume: bool, overwrite: bool, report, provider: str, cipher: str, chunk: int,
                           progress: bool, quiet: bool, started: float) -> BatchReport:
    from keras_dkg.runtime.keystore import KeyStore

    KeyStore(keys, create=True)  # created here, once, before any worker opens it
    images, others = list_folder(in_dir, exclude=[out_dir, keys])
    settings = {
        "command": "encrypt", "input": str(in_dir), "output": str(out_dir), "keys": str(keys),
        "model": str(model), "seed": str(seed_path), "provider": provider, "cipher": cipher,
        "resume": resume, "overwrite": overwrite, "chunk": chunk, "threads": _default_threads(jobs),
        "quiet_opencv": quiet,
    }
    result = BatchReport("encrypt", str(in_dir), str(out_dir), str(keys), _now(), jobs=jobs, options={
        "model": str(model), "seed": str(seed_path), "resume": resume, "overwrite": overwrite,
        "cipher": cipher, "provider": provider,
    })
    _run(result, settings, [p.relative_to(in_dir).as_posix() for p in images], jobs, progress, generator)
    _finish(result, others, in_dir, started)
    result.write(report if report is not None else out_dir / REPORT_NAME)
    return result


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
) -> BatchReport:
    """Verify every ciphertext under `in_dir`; decrypt into `out_dir` unless `verify_only`.

    The report goes to `report` (default OUT_DIR/dkg-report.json; none when verifying
    only, which writes nothing).
    """
    started = time.perf_counter()
    in_dir, keys = Path(in_dir), Path(keys)
    target = None if verify_only else (Path(out_dir) if out_dir is not None else None)
    if target is None and not verify_only:
        raise InputError("decrypting a folder needs -o BACK_DIR (or --verify to check without writing)")
    _check_folders(in_dir, target, keys, "archive or output")
    if not keys.is_dir():
        raise KeyMaterialError(f"{keys}: no such key store folder")
    from keras_dkg.runtime.keystore import INDEX_NAME

    if not (keys / INDEX_NAME).is_file():
        raise KeyMaterialError(f"{keys}: not a keras_dkg key store (no {INDEX_NAME}); wrong --keys folder?")
    if jobs < 1 or chunk < 1:
        raise InputError(f"--jobs and the chunk size must be at least 1 (got {jobs}, {chunk})")
    if target is None:
        return _decrypt_folder_locked(in_dir, target, keys, verify_only, jobs, overwrite, report, chunk, progress,
                                      quiet, started)
    _make_folder(target)
    with folder_lock(target):  # a second batch into BACK_DIR now is refused, not interleaved
        return _decrypt_folder_locked(in_dir, target, keys, verify_only, jobs, overwrite, report, chunk, progress,
                                      quiet, started)


def _decrypt_folder_locked(in_dir: Path, target: Path | None, keys: Path, verify_only: bool, jobs: int,
                           overwrite: bool, report, chunk: int, progress: bool, quiet: bool,
                           started: float) -> BatchReport:
    images, others = list_folder(in_dir, exclude=[target, keys])
    settings = {
        "command": "decrypt", "input": str(in_dir), "output": str(target) if target else None,
        "keys": str(keys), "overwrite": overwrite, "chunk": chunk, "quiet_opencv": quiet,
    }
    result = BatchReport("verify" if verify_only else "decrypt", str(in_dir), settings["output"], str(keys),
                         _now(), jobs=jobs, options={"overwrite": overwrite, "verify_only": verify_only})
    _run(result, settings, [p.relative_to(in_dir).as_posix() for p in images], jobs, progress)
    _finish(result, others, in_dir, started)
    missing = [f for f in result.failed if f.error == KeyMaterialError.__name__ and "no key with fingerprint" in (f.reason or "")]
    if missing and len(missing) == len([f for f in result.files if f.status != IGNORED]):
        result.options["hint"] = f"no file's key is in {keys}: wrong key store?"
    destination = report if report is not None else (target / REPORT_NAME if target is not None else None)
    if destination is not None:
        result.write(destination)
    return result
