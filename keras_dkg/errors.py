"""Our exception types. CLIs turn them into one line and a non-zero exit code.

Every message names the file (when there is one) and the cause, so a user can act on it.
"""

from __future__ import annotations


class DkgError(Exception):
    """Base class: a user-facing failure with an actionable message."""

    exit_code = 2


class InputError(DkgError):
    """An input file or folder is missing, unreadable, damaged or unsupported."""


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

