"""A batch's work on its files, in a worker process (or in the batch's own process for one job).

A task is a chunk of relative paths: the worker reads every plaintext of the chunk,
generates their keys in one onnxruntime run per key size, stores each key (the key
store's index line is durable before the ciphertext exists) and writes each ciphertext
atomically; or verifies and decrypts. A bad file becomes a failed `FileResult` and the
chunk goes on. A file that already is a keras_dkg ciphertext is skipped, never encrypted
again. Each result stays "interrupted" until its file is done, so an interrupted chunk
reports exactly the files it finished (`partial`).
"""

from __future__ import annotations

import os
import socket
import time
from collections import defaultdict
from pathlib import Path

from keras_dkg.errors import AlreadyEncryptedError, DkgError, OutputError
from keras_dkg.runtime.batch.report import (
    DECRYPTED,
    ENCRYPTED,
    FAILED,
    PHASES,
    RESUMED,
    SKIPPED,
    VERIFIED,
    FileResult,
)
from keras_dkg.runtime.ciphers.metadata import key_size_for
from keras_dkg.runtime.encryption import (
    decrypt_file,
    encrypt_file,
    fresh_key_size,
    make_parent,
    verify_encrypted,
)
from keras_dkg.runtime.formats.registry import (
    PlaintextFile,
    open_ciphertext,
    open_plaintext_checked,
)
from keras_dkg.runtime.guards.atomic import stale_temporaries

_STATE: dict = {}  # this process: settings, key store, generator (set by init_worker)


def init_worker(settings: dict, generator=None) -> None:
    """Per process: one onnxruntime session (encryption) and the key store."""
    from keras_dkg.runtime.keystore.store import KeyStore

    _STATE.clear()
    _STATE["settings"] = settings
    if settings.get("quiet_opencv"):
        _silence_opencv()
    _STATE["store"] = KeyStore(settings["keys"], create=settings["command"] == "encrypt",
                               credentials=settings.get("credentials"),  # unlocked by the driver: no KDF here
                               shard=settings.get("shard"))  # a Ray worker writes its own index shard
    _STATE["worker"] = f"{settings.get('shard') or 'local'}@{socket.gethostname()}:{os.getpid()}"
    if settings["command"] == "encrypt":
        if generator is None:
            from keras_dkg.runtime.keys.generator import KeyGenerator

            generator = KeyGenerator(settings["model"], provider=settings["provider"],
                                     threads=settings.get("threads"), batch_size=settings["chunk"],
                                     backend=settings.get("backend", "onnxruntime"),
                                     precision=settings.get("precision", "auto"),
                                     engine_settings=settings.get("engine_settings"))
        _STATE["generator"] = generator


def _silence_opencv() -> None:
    """OpenCV logs decoder complaints on stderr; the batch reports bad files itself."""
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):  # pragma: no cover - older OpenCV builds
        pass


def failure(result: FileResult, exc: BaseException) -> FileResult:
    """Mark a result failed with the exception's one-line reason (never a traceback in a report)."""
    result.status, result.output = FAILED, None  # a failed file has no output of this run
    result.error = type(exc).__name__
    if isinstance(exc, DkgError):
        result.reason = str(exc)
    elif isinstance(exc, MemoryError):
        result.reason = "out of memory"
    else:
        result.reason = f"internal error: {type(exc).__name__}: {exc}"
    return result


def _prepare(relative: str, result: FileResult, settings: dict, store, timing: dict) -> PlaintextFile | None:
    """Read one plaintext and settle its existing output; None when it is done already (resumed)."""
    source, target = Path(settings["input"]) / relative, Path(settings["output"]) / relative
    stale_temporaries(target)  # left by a killed run; OUT_DIR is ours
    start = time.perf_counter()
    plain = open_plaintext_checked(source)  # AlreadyEncryptedError for one of our ciphertexts
    timing["decode"] += time.perf_counter() - start
    result.bytes, result.shape, result.dtype = int(plain.array.nbytes), list(plain.array.shape), plain.array.dtype.name
    fresh_key_size(plain.array, str(source))
    if target.exists() or target.is_symlink():
        if settings["resume"]:
            existing = verify_encrypted(target, plain, store, cipher=settings["cipher"], timing=timing)
            if existing.ok:
                result.status, result.reason = RESUMED, "output exists and verifies with its stored key"
                result.output, result.key_fingerprint = relative, existing.fingerprint
                result.key_file = store.find(existing.fingerprint)["key_file"]
                return None
            if not settings["overwrite"]:
                raise OutputError(f"{target}: exists but does not verify ({existing.reason}); use --overwrite to redo it")
        elif not settings["overwrite"]:
            raise OutputError(f"{target}: exists; refusing to overwrite (use --overwrite, or --resume)")
    make_parent(target)  # a file in the way fails here, before a key is made for nothing
    return plain


def _skip_ciphertext(result: FileResult, exc: AlreadyEncryptedError) -> None:
    result.status, result.output, result.reason, result.error = SKIPPED, None, str(exc), type(exc).__name__


def _encrypt_chunk(relatives: list[str], partial: dict | None = None,
                   retry: bool = False) -> tuple[list[FileResult], dict]:
    """Encrypt some files (worker side): read all, make their keys in batched runs, write each.

    `partial` (in-process runs) receives the results as they are made, so an interrupted
    chunk still reports the files it finished. `retry`: the chunk of a worker that died
    (Ray engine), run with --resume's rule, so a file it finished is kept, not done twice."""
    settings, store, generator = _STATE["settings"], _STATE["store"], _STATE["generator"]
    if retry:
        settings = {**settings, "resume": True}
    in_dir, out_dir = Path(settings["input"]), Path(settings["output"])
    timing = dict.fromkeys(PHASES, 0.0)
    results: dict[str, FileResult] = {} if partial is None else partial
    pending: dict[str, PlaintextFile] = {}
    for relative in relatives:
        result = results[relative] = FileResult(relative)
        try:
            plain = _prepare(relative, result, settings, store, timing)
            if plain is not None:
                pending[relative] = plain
        except AlreadyEncryptedError as exc:  # never encrypted twice: its metadata would be lost
            _skip_ciphertext(result, exc)
        except Exception as exc:  # a bad file is reported, the batch goes on
            failure(result, exc)
    # one session run per key size (at most `chunk` keys each)
    by_size: dict[tuple[int, int], list[str]] = defaultdict(list)
    for relative, plain in pending.items():
        by_size[key_size_for(plain.array.shape, plain.array.dtype)].append(relative)
    from keras_dkg.runtime.keys.generator import random_nonce

    for size, group in by_size.items():
        start = time.perf_counter()
        try:
            keys = generator.generate_many(settings["seed"], size, [random_nonce() for _ in group])
        except Exception as exc:
            for relative in group:
                failure(results[relative], exc)
                pending.pop(relative)
            continue
        finally:
            timing["keygen"] += time.perf_counter() - start
        for relative, key in zip(group, keys, strict=True):
            result, plain = results[relative], pending.pop(relative)
            try:
                # the key is kept, with the plaintext it is for, before its ciphertext exists (one
                # append to the index), and its use given back if the ciphertext is not written.
                encrypt_file(in_dir / relative, out_dir / relative, key=key, store=store, cipher=settings["cipher"],
                             overwrite=settings["overwrite"], plaintext=plain, name_errors=False, timing=timing,
                             progress=result)
                result.status, result.output = ENCRYPTED, relative
            except BaseException as exc:
                if isinstance(exc, Exception):
                    failure(result, exc)
                for note in getattr(exc, "__notes__", ()):  # the store could not take the use back
                    result.reason = f"{result.reason}; {note}" if result.reason else note
                if not isinstance(exc, Exception):
                    raise  # stopped (SIGINT/SIGTERM): the file stays "interrupted"
    return [results[r] for r in relatives], timing


def _decrypt_chunk(relatives: list[str], partial: dict | None = None,
                   retry: bool = False) -> tuple[list[FileResult], dict]:
    """Verify and decrypt some files (worker side); `partial` as for `_encrypt_chunk`. `retry`: a
    dead worker's chunk; outputs that did not exist when the batch started may be replaced."""
    settings, store = _STATE["settings"], _STATE["store"]
    ours = set(settings.get("new_outputs") or ()) if retry else set()
    in_dir = Path(settings["input"])
    out_dir = Path(settings["output"]) if settings["output"] else None
    timing = dict.fromkeys(PHASES, 0.0)
    results: dict[str, FileResult] = {} if partial is None else partial
    for relative in relatives:
        source = in_dir / relative
        result = results[relative] = FileResult(relative)
        try:
            target = None if out_dir is None else out_dir / relative
            if target is not None:
                stale_temporaries(target)
                if target.exists() and not (settings["overwrite"] or relative in ours):
                    raise OutputError(f"{target}: exists; refusing to overwrite (use --overwrite)")
            start = time.perf_counter()
            encrypted = open_ciphertext(source)
            timing["decode"] += time.perf_counter() - start
            # the container the ciphertext records, whatever its name (a DICOM file called IM0001)
            decrypt_file(source, target, store=store, ciphertext=encrypted, as_recorded=True, make_parents=True,
                         overwrite=settings["overwrite"] or relative in ours, audit=False, name_errors=False,
                         timing=timing, progress=result)
            if target is None:
                result.status = VERIFIED
            else:
                result.status, result.output = DECRYPTED, relative
        except Exception as exc:
            failure(result, exc)
    used = [{"file": str(in_dir / r), "fingerprint": results[r].key_fingerprint} for r in relatives
            if results[r].status in (DECRYPTED, VERIFIED)]
    if used:  # one audit record per chunk, naming every file and key it opened
        store.record_use("decrypt" if out_dir is not None else "check", files=used)
    return [results[r] for r in relatives], timing


def run_chunk(command: str, relatives: list[str], partial: dict | None = None,
              retry: bool = False) -> tuple[list[FileResult], dict]:
    results, timing = (_encrypt_chunk if command == "encrypt" else _decrypt_chunk)(relatives, partial, retry)
    for result in results:
        result.worker = _STATE.get("worker")
    return results, timing
