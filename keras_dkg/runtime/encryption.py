"""Encrypt and decrypt one file: the steps every caller uses (dkg-encrypt, dkg-decrypt, the batch worker).

`encrypt_file` / `decrypt_file` are what `dkg-encrypt` / `dkg-decrypt` do for one file, as
a library: plain keyword arguments, a small frozen result, the runtime's errors
(keras_dkg.errors). The CLIs (runtime.cli.encrypt) only parse their flags, build the store,
credentials, generator and output guard, and print the result; a batch (runtime.batch.worker)
calls the same functions per file with the plaintext or ciphertext it already opened, its
per-phase timing and its FileResult, and keeps its own chunking, resume and report.

The rules live here once:

* every output is checked before any work (runtime.guards.outputs), unless the caller passes the
  file it already opened (a batch checks its folders once);
* a key made for a file is in the key store (written and fsynced) before the ciphertext
  exists, so a ciphertext whose key was lost cannot happen;
* the key's use is recorded before the ciphertext is written and given back when it is not
  written (disk full, stopped), so the store never records a use without a ciphertext;
* a wrong key or an altered file is an error (KeyMaterialError, IntegrityError), never a
  wrong image.

The DICOM gateway's instances, held in memory rather than in files, are encrypted by
runtime.instances on the same key custody (`fresh_key_use`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from keras_dkg.errors import DkgError, OutputError
from keras_dkg.runtime.ciphers.metadata import (
    CipherMetadata,
    check_plaintext,
    key_size_for,
    plaintext_digest,
)
from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array
from keras_dkg.runtime.formats.detect import output_format
from keras_dkg.runtime.formats.png_tiff import check_storable
from keras_dkg.runtime.formats.registry import (
    FORMATS,
    CiphertextFile,
    PlaintextFile,
    check_output,
    open_ciphertext,
    open_plaintext,
)
from keras_dkg.runtime.guards.inputs import regular_file
from keras_dkg.runtime.guards.outputs import OutputGuard
from keras_dkg.runtime.keys.artifact import Key, load_key, record_path_for
from keras_dkg.runtime.keys.generator import KeyGenerator, check_key_size, random_nonce
from keras_dkg.runtime.keystore.custody import Credentials
from keras_dkg.runtime.keystore.store import KeyStore, is_key_store, key_use

StoreArg = KeyStore | str | os.PathLike | None


class FileProgress(Protocol):
    """What a caller keeps of a file as each step finishes (a batch's FileResult), so a file
    that fails later still reports its key and size."""

    key_fingerprint: str | None
    key_file: str | None
    bytes: int
    shape: list[int] | None
    dtype: str | None


@dataclass(frozen=True)
class EncryptResult:
    """What `encrypt_file` wrote, and with which key (enough for a CLI line or a report row)."""

    source: Path
    output: Path
    format: str  # how the ciphertext was written: "raster", "dicom" or "nifti" (runtime.formats)
    cipher: str
    fingerprint: str
    key_file: str  # the key file given, or the key's file in the store (relative to it)
    store: str | None  # the key store folder, None for a key file
    nonce: str | None  # the key's nonce (in the ciphertext's metadata)
    new_key: bool  # made for this file
    shape: tuple[int, ...]
    dtype: str
    plaintext_sha256: str


@dataclass(frozen=True)
class DecryptResult:
    """What `decrypt_file` verified (and wrote, unless it only verified)."""

    source: Path
    output: Path | None  # None: verified only
    format: str | None  # how the plaintext was written; None when nothing was
    cipher: str
    fingerprint: str
    key_file: str
    store: str | None
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Verification:
    """Whether an existing ciphertext holds a plaintext (`verify_encrypted`), and why not."""

    ok: bool
    reason: str = ""
    fingerprint: str | None = None


# --------------------------------------------------------------------------- small steps


def output_guard(source: str | os.PathLike, what: str, *, key: str | os.PathLike | None = None,
                 seed: object = None, model: str | os.PathLike | None = None, store: StoreArg = None,
                 overwrite: bool = False) -> OutputGuard:
    """The output rule (runtime.guards.outputs) with everything one file's encryption or decryption reads:
    `what` (plaintext or ciphertext) is `source`; a key store is kept out of, even a new one."""
    key_png = Path(key).with_suffix(".png") if key else None  # KEY.png or KEY.json
    inputs = {what: source, "key": key_png, "key record": record_path_for(key_png) if key_png else None,
              "seed": seed if isinstance(seed, str | os.PathLike) else None, "model": model}
    return OutputGuard(inputs=inputs, overwrite=overwrite,
                       outside={"key store folder": (_store_path(store), "write outputs outside it")})


def check_paths(source: Path, output: Path, what: str, guard: OutputGuard) -> str:
    """Fail before any work: the input is not a regular file, or the output breaks the output rule;
    return the format the output will be written in (runtime.formats)."""
    regular_file(source, what)
    written = "ciphertext" if what == "plaintext" else "plaintext"
    guard.check_file(output, written)
    return check_output(source, output, written)


def fresh_key_size(array: np.ndarray, label: str) -> tuple[int, int]:
    """The size of the key an array needs, refused before a key is made when no key can be that big."""
    return check_key_size(key_size_for(array.shape, array.dtype), f"{label} (its key)")


def make_parent(target: Path) -> None:
    """Create an output's folders; a file in the way is this file's error, not a crash."""
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise OutputError(f"{target}: cannot create its folder: {blocking} is a file, not a folder "
                          f"(move it away to write this output)") from None
    except OSError as exc:
        raise OutputError(f"{target}: cannot create its folder ({exc.strerror or exc})") from exc


def _store_path(store: StoreArg) -> str | os.PathLike | None:
    return store.folder if isinstance(store, KeyStore) else store


def _open_store(store: StoreArg, credentials: Credentials | None, stack: contextlib.ExitStack,
                create: bool = False) -> KeyStore:
    """`store`, or the store at that path (closed when this call ends)."""
    if isinstance(store, KeyStore):
        return store
    if store is None:
        raise ValueError("give a key store (a KeyStore or its folder) or a key file")
    opened = KeyStore(store, create=create, credentials=credentials)
    stack.callback(opened.close)
    return opened


def _named(label: str | None, action: Callable, *args, **kwargs):
    """Run an array-level cipher call; its errors get the file(s) they are about in front (with a label)."""
    try:
        return action(*args, **kwargs)
    except DkgError as exc:
        if label is None:
            raise
        raise type(exc)(f"{label}: {exc}") from exc


@contextlib.contextmanager
def _phase(timing: dict[str, float] | None, name: str) -> Iterator[None]:
    """Add the block's seconds to `timing[name]` when it succeeds (a batch's time per phase)."""
    start = time.perf_counter()
    yield
    if timing is not None:
        timing[name] = timing.get(name, 0.0) + time.perf_counter() - start


def _tell(progress: FileProgress | None, **fields) -> None:
    if progress is not None:
        for name, value in fields.items():
            setattr(progress, name, value)


def _add_note(exc: BaseException, note: str) -> None:
    """PEP 678's add_note, also on Python 3.10 (where it is the `__notes__` list alone)."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # pragma: no cover - Python 3.10
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]


def _kind(handle: PlaintextFile | CiphertextFile) -> str:
    """The format of a file opened by runtime.formats (from the module that opened it)."""
    return next((name for name, module in FORMATS.items() if type(handle).__module__ == module), "raster")


@contextlib.contextmanager
def fresh_key_use(store: KeyStore, key: Key, plaintext_sha256: str, used_for: str, *, allow_reuse: bool,
                   timing: dict[str, float] | None = None, progress: FileProgress | None = None) -> Iterator[dict]:
    """Store a key made for this plaintext with its first use (one durable index line, one audit
    record) before the block writes its ciphertext; give the use back when the block fails.

    The key itself stays (it may be on disk already; it is unused). When giving the use back
    fails too (the store's disk is full), the exception carries a note saying the store still
    records the use.
    """
    try:
        with _phase(timing, "keystore"):
            entry = store.add(key, plaintext_sha256, used_for, allow_reuse=allow_reuse)
        _tell(progress, key_fingerprint=key.fingerprint, key_file=entry["key_file"])
        yield entry
    except BaseException as exc:
        try:
            store.release_use(key.fingerprint, plaintext_sha256)
        except Exception as again:
            _add_note(exc, f"the key store still records key {key.fingerprint[:23]}… as used for this file "
                           f"(giving the use back failed: {again})")
        raise


# --------------------------------------------------------------------------- files


def encrypt_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    key: Key | str | os.PathLike | None = None,
    store: StoreArg = None,
    credentials: Credentials | None = None,
    generator: KeyGenerator | Callable[[], KeyGenerator] | None = None,
    seed: str | os.PathLike | np.ndarray | None = None,
    nonce: str | None = None,
    cipher: str = "xor",
    allow_key_reuse: bool = False,
    overwrite: bool = False,
    guard: OutputGuard | None = None,
    plaintext: PlaintextFile | None = None,
    name_errors: bool = True,
    timing: dict[str, float] | None = None,
    progress: FileProgress | None = None,
) -> EncryptResult:
    """Encrypt one image or volume file into `output`, bit-exact to decrypt; the key's use recorded.

    The key, one of:

    * `key=KEY.png` (or KEY.json): an existing key file; with `cipher="xor"` a key encrypts
      one plaintext only unless `allow_key_reuse` (hardened may reuse a key);
    * `generator` (a KeyGenerator, or a callable making one: the model loads only once the
      inputs were checked and an existing store was opened) and `seed`, `store`: a fresh key
      for this file (`nonce`: its nonce, default random), stored first (audit `create`),
      then taken for this file (`encrypt`), as dkg-encrypt does;
    * `key=` a Key made for this file but not stored yet (a batch makes many in one run)
      and `store`: stored with its first use in one step (one record, `encrypt`, new_key).

    `store` is a KeyStore or its folder (opened with `credentials`; a new folder is created
    only once the key exists, so a bad model or seed creates no store). `guard`: the output
    rule (default: `output_guard` of what this call reads). `plaintext`: the source already
    opened and checked by the caller, whose outputs were checked too (a batch); then no path
    is checked here. `name_errors=False` leaves the file's name out of cipher errors (a
    batch report names it). `timing` gets seconds per phase (keystore, xor, write),
    and `progress` the key and size as soon as they are known.
    """
    source, output = Path(source), Path(output)
    if key is None and (generator is None or seed is None or store is None):
        raise ValueError("give key= (a key file, or a Key made for this file, with store=), "
                         "or generator=, seed= and store= for a fresh key")
    written = None
    if plaintext is None:
        written = check_paths(source, output, "plaintext", guard or output_guard(
            source, "plaintext", key=None if isinstance(key, Key) else key, seed=seed, store=store,
            overwrite=overwrite))
    if cipher == "hardened":
        from keras_dkg.runtime.ciphers.hardened import require_cryptography

        require_cryptography()  # before a key is made and stored
    if plaintext is None:
        plaintext = open_plaintext(source, output)  # read once: pixels, context and how to write the ciphertext
        _named(str(source) if name_errors else None, check_plaintext, plaintext.array)
        if written == "raster":
            check_storable(output, plaintext.array)  # PNG/TIFF, before a key is made: a refusal costs no key
    array = plaintext.array
    _tell(progress, bytes=int(array.nbytes), shape=list(array.shape), dtype=array.dtype.name)
    digest = plaintext_digest(array)
    used_for = str(source.resolve())
    # hardened: a fresh salt and nonce per encryption make key reuse safe (docs/hardened.md)
    allow_reuse = allow_key_reuse or cipher == "hardened"

    def encrypted(used: Key, where: object) -> tuple[np.ndarray, CipherMetadata]:
        """The ciphertext with `used` (`where`: how an error names the key)."""
        with _phase(timing, "xor"):
            return _named(f"{source} with key {where}" if name_errors else None, encrypt_array, array, used.pixels,
                          cipher=cipher, nonce=used.record.get("nonce"), context=plaintext.context)

    def save(ciphertext: np.ndarray, meta: CipherMetadata) -> None:
        with _phase(timing, "write"):  # encode + write
            plaintext.save_ciphertext(output, ciphertext, meta, overwrite=overwrite)

    with contextlib.ExitStack() as stack:
        if isinstance(key, Key):  # made for this file: stored with its use, then encrypted and written
            opened = _open_store(store, credentials, stack, create=True)
            with fresh_key_use(opened, key, digest, used_for, allow_reuse=allow_reuse, timing=timing,
                                progress=progress) as entry:
                save(*encrypted(key, f"{key.fingerprint[:23]}… in {_store_path(store)}"))
            used, key_file, store_name, new_key = key, entry["key_file"], str(_store_path(store)), True
        else:
            if key is not None:
                used, where, key_file, store_name, new_key = load_key(key), key, str(key), None, False
            else:
                used, opened, key_file = _new_stored_key(array, source, store, credentials, generator, seed,
                                                        nonce, stack)
                where, store_name, new_key = opened, str(_store_path(store)), True
                _tell(progress, key_fingerprint=used.fingerprint, key_file=key_file)
            ciphertext, meta = encrypted(used, key if key is not None else
                                         f"{used.fingerprint[:23]}… in {_store_path(store)}")
            # the key is taken for this plaintext before the write (a key store's key file: its index
            # too), and given back if the write fails, so a failed encryption leaves the key as it was
            with key_use(where, used.fingerprint, digest, used_for, allow_reuse):
                save(ciphertext, meta)
    return EncryptResult(
        source=source, output=output, format=written or output_format(_kind(plaintext), output), cipher=cipher,
        fingerprint=used.fingerprint, key_file=key_file, store=store_name, nonce=used.record.get("nonce"),
        new_key=new_key, shape=tuple(array.shape), dtype=array.dtype.name, plaintext_sha256=digest)


def _new_stored_key(array: np.ndarray, source: Path, store: StoreArg, credentials: Credentials | None,
                    generator: KeyGenerator | Callable[[], KeyGenerator], seed, nonce: str | None,
                    stack: contextlib.ExitStack) -> tuple[Key, KeyStore, str]:
    """A fresh key for `array`, stored (without a use yet): (key, store, its key file)."""
    size = fresh_key_size(array, str(source))
    # an existing (maybe protected) store is opened before the model is loaded; a new one only
    # once the key is made, so a bad model or seed creates no store
    opened = _open_store(store, credentials, stack, create=True) \
        if isinstance(store, KeyStore) or is_key_store(store) else None  # a writer
    if not isinstance(generator, KeyGenerator):
        generator = generator()
    made = generator.generate(seed, size=size, nonce=random_nonce() if nonce is None else nonce)
    opened = opened or _open_store(store, credentials, stack, create=True)
    return made, opened, opened.add(made)["key_file"]


def decrypt_file(
    source: str | os.PathLike,
    output: str | os.PathLike | None,
    *,
    key: str | os.PathLike | None = None,
    store: StoreArg = None,
    credentials: Credentials | None = None,
    overwrite: bool = False,
    guard: OutputGuard | None = None,
    ciphertext: CiphertextFile | None = None,
    as_recorded: bool = False,
    make_parents: bool = False,
    audit: bool = True,
    name_errors: bool = True,
    timing: dict[str, float] | None = None,
    progress: FileProgress | None = None,
) -> DecryptResult:
    """Verify and decrypt one ciphertext file into `output` (None: verify only), bit-exact.

    The key is `key=KEY.png`, or found in `store` (a KeyStore or its folder, opened with
    `credentials`) by the ciphertext's key fingerprint. A wrong key raises KeyMaterialError,
    an altered file IntegrityError; nothing is written then. `ciphertext`: the source already
    opened by the caller, whose outputs were checked too (a batch); then no path is checked
    here, and its array is overwritten by the plaintext. `as_recorded`: write the container
    the ciphertext records, whatever the output is called (a batch keeps the input's names).
    `make_parents` creates the output's folders once the file decrypted. `audit=False`: no
    audit record here (a batch writes one per chunk). `name_errors`, `timing` (keystore,
    xor, write) and `progress` as for `encrypt_file`.
    """
    source = Path(source)
    target = None if output is None else Path(output)
    if key is None and store is None:
        raise ValueError("give key= (a key file) or store= (the key store that holds the key)")
    written = None
    with contextlib.ExitStack() as stack:
        if ciphertext is None:
            if target is None:
                regular_file(source, "ciphertext")
            else:
                written = check_paths(source, target, "ciphertext", guard or output_guard(
                    source, "ciphertext", key=key, store=store, overwrite=overwrite))
            ciphertext = open_ciphertext(source)
            if written == "raster":
                meta = ciphertext.meta
                check_storable(target, np.empty([1, 1, *meta.shape[2:]], dtype=meta.dtype))
        meta = ciphertext.meta
        _tell(progress, key_fingerprint=meta.key_fingerprint)
        if key is not None:
            used, key_file, opened = load_key(key), str(key), None
        else:
            opened = _open_store(store, credentials, stack)
            with _phase(timing, "keystore"):
                used = opened.load(meta.key_fingerprint)
                key_file = opened.find(meta.key_fingerprint)["key_file"]
            _tell(progress, key_file=key_file)
        label = f"{source} with key {key or f'{used.fingerprint[:23]}… in {_store_path(store)}'}"
        with _phase(timing, "xor"):  # the handle's array is ours, read for this: decrypted in place
            plain = _named(label if name_errors else None, decrypt_array, ciphertext.array, used.pixels, meta,
                           context=ciphertext.context, in_place=True)
        _tell(progress, bytes=int(plain.nbytes), shape=list(plain.shape), dtype=plain.dtype.name)
        if target is not None:
            if make_parents:
                make_parent(target)
            with _phase(timing, "write"):
                ciphertext.write_plaintext(target, plain, overwrite=overwrite, as_recorded=as_recorded)
            if written is None:
                kind = _kind(ciphertext)
                written = kind if as_recorded else output_format(kind, target)
        if audit and opened is not None:
            opened.record_use("decrypt" if target is not None else "check", used.fingerprint,
                              file=str(source.resolve()))
    return DecryptResult(source=source, output=target, format=written, cipher=meta.cipher,
                         fingerprint=used.fingerprint, key_file=key_file,
                         store=None if opened is None else str(_store_path(store)),
                         shape=tuple(plain.shape), dtype=plain.dtype.name)


def verify_encrypted(target: str | os.PathLike, plaintext: PlaintextFile, store: KeyStore, *,
                     cipher: str | None = None, timing: dict[str, float] | None = None) -> Verification:
    """Whether an existing output authenticates with its stored key and holds `plaintext`; with
    `cipher`, also whether it was made with that cipher (a resumed batch keeps one cipher)."""
    start = time.perf_counter()
    try:
        existing = open_ciphertext(target)
        meta = existing.meta
        if cipher is not None and meta.cipher != cipher:
            return Verification(False, f"it was encrypted with cipher {meta.cipher!r}, this batch uses {cipher!r}")
        stored = store.load(meta.key_fingerprint)
        plain = decrypt_array(existing.array, stored.pixels, meta, context=existing.context)
        if plaintext_digest(plain) != plaintext_digest(plaintext.array) or existing.context != plaintext.context:
            return Verification(False, "the output holds another version of this input", meta.key_fingerprint)
        return Verification(True, "", meta.key_fingerprint)
    except DkgError as exc:
        return Verification(False, str(exc))
    finally:
        if timing is not None:
            timing["verify"] = timing.get("verify", 0.0) + time.perf_counter() - start
