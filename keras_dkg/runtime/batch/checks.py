"""A batch's checks before any work: folders, the report path, and the output folder's lock.

Everything here runs before a model is loaded or a file read, so a refused batch costs
nothing and writes nothing (docs/batch.md, docs/bad_inputs.md):

* IN_DIR exists; OUT_DIR is neither IN_DIR nor above it; KEY_DIR is a folder of its own;
* OUT_DIR and the report pass `outputs.OutputGuard` (never an input, never inside a key
  store, never an existing file without --overwrite — except our own earlier report);
* `folder_lock` keeps a second batch out of OUT_DIR while one runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from keras_dkg.common import LockHeld, file_lock
from keras_dkg.errors import InputError, OutputError
from keras_dkg.runtime.batch.report import REPORT_NAME, is_batch_report
from keras_dkg.runtime.guards.outputs import OutputGuard, inside

LOCK_NAME = ".dkg-batch.lock"
REPORT_SUFFIXES = (".json", ".csv")


def make_folder(folder: Path) -> None:
    """Create the output folder (after every check), as an OutputError when that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from exc


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold FOLDER/.dkg-batch.lock while a batch writes into FOLDER; refuse at once if another holds it.

    Two batches writing one folder would race file by file (each output still atomic, but
    the report and the set of outputs split between two runs): the second is refused
    instead, with OutputError, before it writes anything. The lock file (0600) is removed
    on exit; one left by a killed run holds no lock (flock dies with its process).
    """
    path = folder / LOCK_NAME
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, blocking=False, remove=True))
        except LockHeld:
            raise OutputError(
                f"{folder}: another batch is writing into this folder right now ({LOCK_NAME} is held); "
                "wait for it to finish or choose another output folder"
            ) from None
        except OSError as exc:
            if exc.filename is None:  # flock failed, not the open
                raise OutputError(f"{path}: cannot lock ({exc.strerror or exc})") from exc
            raise OutputError(f"{folder}: cannot write in the output folder ({exc.strerror or exc})") from exc
        yield


def check_folders(in_dir: Path, out_dir: Path | None, keys: Path, what: str) -> None:
    """The folder rules (the input exists, the output is not it nor above it, the key store is separate)."""
    if not in_dir.is_dir():
        raise InputError(f"{in_dir}: no such folder")
    if out_dir is not None:
        if out_dir.resolve() == in_dir.resolve():
            raise OutputError(f"{out_dir}: is the input folder; originals are never overwritten (choose another -o)")
        if inside(in_dir, out_dir):
            raise OutputError(f"{out_dir}: contains the input folder {in_dir}; choose an output folder outside it")
    if keys.resolve() == in_dir.resolve() or (out_dir is not None and keys.resolve() == out_dir.resolve()):
        raise OutputError(f"{keys}: the key store must be a folder of its own, not the {what} folder")


def check_report(guard: OutputGuard, report: str | os.PathLike | None, out_dir: Path | None, in_dir: Path,
                 keys: Path, resume: bool) -> Path | None:
    """Where the report goes, refused before any work when it would replace something it must not.

    The default OUT_DIR/dkg-report.json may replace our own earlier report there; an explicit
    --report FILE only with --overwrite, or when it is our own report and --resume is given.
    """
    if report is None and out_dir is None:
        return None
    target = Path(report) if report is not None else out_dir / REPORT_NAME
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; the report must be a file path (.json or .csv)")
    if target.suffix.lower() not in REPORT_SUFFIXES:
        raise OutputError(f"{target}: a report file must end in .json or .csv")
    if inside(target, keys):
        raise OutputError(f"{target}: is inside the key store {keys}; choose a report path outside it")
    if (target.exists() or target.is_symlink()) and inside(target, in_dir) and not inside(target, out_dir):
        raise OutputError(f"{target}: is a file of the input folder {in_dir}; originals are never overwritten")
    if out_dir is not None and not out_dir.exists() and inside(target.parent, out_dir):
        return target  # inside the output folder the batch creates: nothing there yet
    ours = report is None or resume
    return guard.check_file(target, "report", allow_existing=lambda p: ours and is_batch_report(p))


def guard_outputs(in_dir: Path, out_dir: Path | None, keys: Path, overwrite: bool, **inputs) -> OutputGuard:
    """The batch's OutputGuard (inputs: IN_DIR and `inputs`), with the output folder checked by it."""
    guard = OutputGuard(inputs={"input folder": in_dir, **inputs}, overwrite=overwrite)
    if out_dir is not None:
        guard.check_folder(out_dir)
        if inside(out_dir, keys):
            raise OutputError(f"{out_dir}: is inside the key store {keys}; choose an output folder outside it")
    return guard


