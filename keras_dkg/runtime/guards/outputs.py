"""The one rule for every output of every command, checked before any work is done.

An output (ciphertext, plaintext, key, key record, report, domain image, run or plot
folder) is never:

* one of the command's inputs: the image, the seed, the model, the key or its record
  (same path after resolving links, or the same file through a hard link);
* anything inside a key store (a folder with `index.jsonl`, or `store.json` when protected): the store's own code is the
  only writer there; nor inside a folder the command names in `outside` (a `--keys`
  folder not yet a store, a source folder whose images would be read back);
* a key: a file with a key record beside it (`KEY.png` and `KEY.json`, as dkg-keygen
  writes them), or a key record itself — not even with `--overwrite` (a replaced key is
  a lost image; a key the user no longer wants is deleted by hand, never by a command);
* an existing file, unless the user said `--overwrite` (`allow_existing` lets a command
  replace a file it recognises as its own earlier output, e.g. a batch report on resume);
* a folder where a file is due, or a file where a folder is due;
* in a folder that does not exist (files) — folders are created by the caller.

Commands build one `OutputGuard` with everything they read and call `check_file` /
`check_folder` on every output path before they read or generate anything, so a refused
output costs nothing and writes nothing.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from keras_dkg.errors import OutputError
from keras_dkg.runtime.guards.inputs import MAX_RECORD_BYTES

# keep in step with keystore.INDEX_NAME and custody.MANIFEST_NAME (not imported: no cycle)
KEY_STORE_MARKERS = ("index.jsonl", "store.json")
KEY_RECORD_MARK = b'"keras_dkg.key/'  # the start of keys.KEY_RECORD_FORMAT's value (keys imports this floor)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def inside(path: str | os.PathLike, folder: str | os.PathLike | None) -> bool:
    """Whether `path` is `folder` or under it, after resolving links (both may not exist yet)."""
    if folder is None:
        return False
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def key_store_holding(path: str | os.PathLike) -> Path | None:
    """The key store folder that `path` is in (or is), else None."""
    current = Path(os.path.realpath(path))
    for folder in (current, *current.parents):
        if any((folder / marker).is_file() for marker in KEY_STORE_MARKERS):
            return folder
    return None


def is_key_record(path: str | os.PathLike) -> bool:
    """Whether `path` is a key record (KEY.json): a regular file, not too big, naming the key record format.

    Checked by type before it is opened (a FIFO or device is never read), and generous: a
    damaged record that still names the format counts, because its key is still a key.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECORD_BYTES:
            return False
        with open(path, "rb") as handle:
            return KEY_RECORD_MARK in handle.read(MAX_RECORD_BYTES)
    except OSError:
        return False


def key_record_of(path: str | os.PathLike) -> Path | None:
    """The key record that makes `path` (after resolving links) part of a key, else None.

    `path` is a key record itself, or a file (existing or not) with a key record beside it
    (KEY.png → KEY.json): writing there would replace a key, or put a stranger beside its record.
    """
    resolved = Path(os.path.realpath(path))
    if resolved.suffix.lower() == ".json" and is_key_record(resolved):
        return resolved
    beside = resolved.with_suffix(".json")
    if beside != resolved and is_key_record(beside):
        return beside
    return None


def refuse_key(target: str | os.PathLike, what: str = "output") -> None:
    """OutputError when writing `target` would replace a key or its record (see `key_record_of`)."""
    record = key_record_of(target)
    if record is not None:
        part = "is a key record" if record == Path(os.path.realpath(target)) else \
            f"is a key (its record {record.name} is beside it)"
        raise OutputError(f"{target}: {part}; a key is never an output, even with --overwrite "
                          f"(choose another {what} path)")


def refuse_keys_under(out_dir: str | os.PathLike, in_dir: str | os.PathLike, what: str = "output") -> None:
    """OutputError when a file of IN_DIR would be written over a key under OUT_DIR (same relative path).

    For a batch, whose outputs mirror its inputs: every key record under OUT_DIR is found
    (one walk, links not followed), and any input with the record's name and any suffix (or
    none: DICOM files often have none) would land on its key. Checked before any work.
    """
    out_dir, in_dir = Path(out_dir), Path(in_dir)
    if not out_dir.is_dir():
        return
    for folder, _, names in os.walk(out_dir):
        for name in names:
            if not name.lower().endswith(".json") or not is_key_record(Path(folder, name)):
                continue
            relative = Path(folder, name).relative_to(out_dir).with_suffix("")
            source = in_dir / relative
            candidates = [source, *source.parent.glob(f"{glob.escape(source.name)}.*")] if source.parent.is_dir() \
                else []
            for candidate in candidates:
                if candidate.suffix.lower() != ".json" and candidate.is_file():
                    refuse_key(out_dir / candidate.relative_to(in_dir), what)


@dataclass
class OutputGuard:
    """What a command reads (label → path), the folders its outputs must stay out of
    (label → (folder, why)), and whether it may replace existing outputs."""

    inputs: dict[str, str | os.PathLike | None] = field(default_factory=dict)
    overwrite: bool = False
    outside: dict[str, tuple[str | os.PathLike | None, str]] = field(default_factory=dict)

    def _protected(self) -> Iterable[tuple[str, Path, tuple[int, int] | None]]:
        for label, path in self.inputs.items():
            if path is None:
                continue
            yield label, Path(os.path.realpath(path)), _identity(Path(path))

    def _refuse_inputs(self, target: Path, what: str) -> None:
        resolved = Path(os.path.realpath(target))
        identity = _identity(target)
        for label, path, path_identity in self._protected():
            if resolved == path or (identity is not None and identity == path_identity):
                raise OutputError(f"{target}: is an input (the {label} {self.inputs[label]}); "
                                  f"the {what} never replaces an input, even with --overwrite")
        store = key_store_holding(target if target.exists() else target.parent)
        if store is not None:
            raise OutputError(f"{target}: is inside the key store {store}; only the key store itself writes there "
                              f"(choose a {what} path outside it)")
        refuse_key(target, what)
        for label, (folder, why) in self.outside.items():
            if inside(target, folder):
                raise OutputError(f"{target}: is inside the {label} {folder}; {why}")

    def check_file(self, path: str | os.PathLike, what: str = "output",
                   allow_existing: Callable[[Path], bool] | None = None) -> Path:
        """Refuse an output file that breaks the rule (see module docstring); return it as a Path."""
        target = Path(path)
        self._refuse_inputs(target, what)
        if target.is_dir():
            raise OutputError(f"{target}: is a folder; the {what} must be a file path")
        if target.exists() or target.is_symlink():
            if not target.is_file() and not target.is_symlink():
                raise OutputError(f"{target}: exists and is not a regular file; choose another {what} path")
            if not self.overwrite and not (allow_existing is not None and allow_existing(target)):
                raise OutputError(f"{target}: exists; refusing to overwrite (use --overwrite)")
        folder = target.parent if str(target.parent) else Path(".")
        if not folder.is_dir():
            what_folder = "is not a folder" if folder.exists() else "does not exist"
            raise OutputError(f"{target}: output folder {folder} {what_folder}")
        return target

    def check_folder(self, path: str | os.PathLike, what: str = "output folder") -> Path:
        """Refuse an output folder that is an input, inside a key store, or an existing non-folder."""
        target = Path(path)
        self._refuse_inputs(target, what)
        if target.exists() and not target.is_dir():
            raise OutputError(f"{target}: exists and is not a folder; the {what} must be a folder")
        for parent in target.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise OutputError(f"{target}: {parent} is a file, so the {what} cannot be created there")
                break
        return target
