"""Our exception types. CLIs turn them into one line and a non-zero exit code.

Every message names the file (when there is one) and the cause, so a user can act on it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from keras_dkg.common import printable, short_error


class DkgError(Exception):
    """Base class: a user-facing failure with an actionable message."""

    exit_code = 2


class InputError(DkgError):
    """An input file or folder is missing, unreadable, damaged or unsupported."""


class AlreadyEncryptedError(InputError):
    """The file is already a keras_dkg ciphertext: encrypting it again would lose its metadata."""


class OutputError(DkgError):
    """An output cannot be written safely (exists, lossy format, same as input, read-only)."""


class KeyMaterialError(DkgError):
    """A key is unusable for this plaintext: wrong size, dtype, fingerprint or already used."""


class IntegrityError(DkgError):
    """Authentication failed: wrong key, or the ciphertext or its metadata was altered."""

    exit_code = 3


class ModelError(DkgError):
    """A model file is corrupt, has the wrong signature, or produces non-finite output."""


class TrainingError(DkgError):
    """Training cannot start or diverged (NaN/Inf loss)."""


# The extra that brings each optional module a command may import (setup.cfg).
EXTRA_FOR_MODULE = {
    "tensorflow": "train", "keras": "train", "tf2onnx": "train", "onnx": "train", "tensorboard": "train",
    "jax": "jax", "nibabel": "nifti", "scipy": "analysis", "matplotlib": "analysis", "skimage": "analysis",
    "PIL": "analysis", "cryptography": "hardened", "pydicom": "dicom", "tqdm": "analysis",
    "pynetdicom": "gateway",
}


def missing_extra_line(exc: ModuleNotFoundError) -> str | None:
    """'this needs X: pip install ...' for an optional module this install lacks; None for other modules."""
    name = (exc.name or "").split(".")[0]
    extra = EXTRA_FOR_MODULE.get(name)
    if extra is None:
        return None
    hint = ("'keras-dkg[train]' (or '[train-cpu]'; '[jax]' for --backend jax)" if extra == "train"
            else f"'keras-dkg[{extra}]'")
    return f"this needs {name}, which is not installed: pip install {hint}"


def os_error_line(exc: OSError) -> str:
    """'FILE: cause' for an OSError that reached a CLI without becoming a DkgError."""
    cause = exc.strerror or short_error(exc, limit=None)
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {cause}" if names else cause


def run_cli(prog: str, action: Callable[[], int | None], interrupted: str | None = None) -> int:
    """Run a command's work and return its exit code.

    Our errors, OS errors no layer below turned into one, and a missing optional module
    (with the extra to install) become ONE line `prog: error: message` on stderr and a
    non-zero code, never a traceback. With
    `interrupted`, Ctrl-C prints that message and returns 130.
    """
    try:
        return action() or 0
    except DkgError as exc:
        message, code = short_error(exc, limit=None), exc.exit_code  # one line per error
    except OSError as exc:
        message, code = os_error_line(exc), 2
    except ModuleNotFoundError as exc:  # an optional dependency: say which extra brings it
        line = missing_extra_line(exc)
        if line is None:
            raise
        message, code = line, 2
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        message, code = interrupted, 130
    print(f"{prog}: error: {printable(message)}", file=sys.stderr)  # a file name cannot forge a line
    return code
