"""The one rule for every output of every command, checked before any work is done.

An output (ciphertext, plaintext, key, key record, report, domain image, run or plot
folder) is never:

* one of the command's inputs: the image, the seed, the model, the key or its record
  (same path after resolving links, or the same file through a hard link);
* anything inside a key store (a folder with `index.jsonl`, or `store.json` when protected): the store's own code is the
  only writer there; nor inside a folder the command names in `outside` (a `--keys`
  folder not yet a store, a source folder whose images would be read back);
* an existing file, unless the user said `--overwrite` (`allow_existing` lets a command
  replace a file it recognises as its own earlier output, e.g. a batch report on resume);
* a folder where a file is due, or a file where a folder is due;
* in a folder that does not exist (files) — folders are created by the caller.

Commands build one `OutputGuard` with everything they read and call `check_file` /
`check_folder` on every output path before they read or generate anything, so a refused
output costs nothing and writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from keras_dkg.errors import OutputError

# keep in step with keystore.INDEX_NAME and custody.MANIFEST_NAME (not imported: no cycle)
KEY_STORE_MARKERS = ("index.jsonl", "store.json")


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
