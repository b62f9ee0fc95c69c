"""Which entries under a batch's input folder are plaintexts, and why every other one is not.

`list_folder` walks IN_DIR itself (no `rglob`) so that nothing goes missing silently:
every entry comes back either as a candidate image or as a `FileResult` saying why it is
left alone (docs/batch.md "Which files"):

* a regular file (or a symlink to one) with an image suffix or the DICOM magic: a candidate
  (whatever its name: PACS exports call DICOM files IM0001); a DICOMDIR is skipped (no image);
* any other regular file: ignored, "not an image file";
* hidden entries (name starts with "."): skipped; a hidden folder is one entry, not searched;
* the batch's own output folder and key store, when inside IN_DIR: skipped, one entry each;
* symlinks to folders: skipped, not followed (no loops, nothing outside IN_DIR pulled in);
* dangling symlinks, FIFOs, sockets, devices: never opened; failed when the name says it
  is an image (the user meant one), else skipped;
* a folder that cannot be listed: failed (its images could not be looked at).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from keras_dkg.runtime.batch.report import FAILED, IGNORED, SKIPPED, FileResult
from keras_dkg.runtime.formats.detect import format_of, named_like_a_file_we_read, recognised
from keras_dkg.runtime.guards.inputs import file_kind


def _same(path: Path, folder: Path) -> bool:
    try:
        return os.path.samefile(path, folder)
    except OSError:
        return False


def _looks_like_image(name: str) -> bool:
    return named_like_a_file_we_read(name)


def _left_out(relative: str, name: str, why: str) -> FileResult:
    """A non-regular entry: failed if its name says it is an image, else skipped."""
    if _looks_like_image(name):
        return FileResult(relative, FAILED, reason=f"{why}; not opened", error="InputError")
    return FileResult(relative, SKIPPED, reason=f"{why}; not opened")


def list_folder(root: Path, exclude: dict[str, Path | None] | None = None) -> tuple[list[Path], list[FileResult]]:
    """(candidate image files, results for every other entry) under `root`, both sorted.

    `exclude` maps a label ("output folder", "key store") to a folder left out when it
    lies inside `root`; it is reported as skipped with that label.
    """
    excluded = {label: folder for label, folder in (exclude or {}).items() if folder is not None and folder.exists()}
    images: list[Path] = []
    others: list[FileResult] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            relative = folder.relative_to(root).as_posix() + "/"
            others.append(FileResult(relative, FAILED, reason=f"{folder}: cannot list this folder "
                                     f"({exc.strerror or exc}); its files were not looked at", error="InputError"))
            continue
        for entry in entries:
            path = Path(entry.path)
            relative = path.relative_to(root).as_posix()
            result = _classify(entry, path, relative, excluded)
            if result is None:
                images.append(path)
            elif result == "folder":
                pending.append(path)
            else:
                others.append(result)
    images.sort()
    others.sort(key=lambda r: r.path)
    return images, others


def _classify(entry: os.DirEntry, path: Path, relative: str, excluded: dict[str, Path]):
    """None for a candidate image, "folder" to descend into, else the entry's FileResult."""
    is_link = entry.is_symlink()
    try:
        info = os.stat(path)  # through a link: what it points at
    except OSError as exc:
        if is_link:
            return _left_out(relative, entry.name, "dangling symbolic link (its target does not exist)")
        return FileResult(relative, FAILED, reason=f"{path}: cannot read ({exc.strerror or exc})", error="InputError")
    if stat.S_ISDIR(info.st_mode):
        for label, folder in excluded.items():
            if _same(path, folder):
                return FileResult(relative + "/", SKIPPED, reason=f"the {label} of this batch; not searched")
        if entry.name.startswith("."):
            return FileResult(relative + "/", SKIPPED, reason="hidden folder; not searched")
        if is_link:
            return FileResult(relative + "/", SKIPPED,
                              reason="symbolic link to a folder; not followed (give that folder as its own batch)")
        return "folder"
    if entry.name.startswith("."):
        return FileResult(relative, SKIPPED, reason="hidden file; not opened")
    if not stat.S_ISREG(info.st_mode):
        return _left_out(relative, entry.name, f"is {file_kind(info.st_mode)}, not a regular file")
    if recognised(path):
        if entry.name.upper() == "DICOMDIR" and format_of(path) == "dicom":
            return FileResult(relative, SKIPPED, reason="a DICOMDIR (the file-set's directory, no image); not "
                              "encrypted or copied: build a new one for the output folder if you need it")
        return None
    return FileResult(relative, IGNORED, reason="not an image file")
