"""Folders: the driver (driver: encrypt_folder / decrypt_folder), the per-file work of a
worker (worker), listing and checks of a batch's folders (listing, checks), its report
(report), clean stops on signals (signals) and the engines that run workers: local
processes or Ray actors (engines).

`keras_dkg.runtime.batch` was the driver module; its names are still here.
"""

from keras_dkg.runtime.batch.driver import (
    DEFAULT_CHUNK,
    ENGINES,
    BatchInterrupted,
    decrypt_folder,
    encrypt_folder,
)
from keras_dkg.runtime.batch.report import (
    CSV_COLUMNS,
    MAX_LISTED_FAILURES,
    OLD_CSV_COLUMNS,
    PHASES,
    REPORT_FORMAT,
    REPORT_NAME,
    STATUSES,
    BatchReport,
    FileResult,
    is_batch_report,
)
from keras_dkg.runtime.batch.signals import (
    STOP_SIGNALS,
    Stopped,
    signal_of,
    stop_on_signals,
)

__all__ = [
    "BatchInterrupted",
    "DEFAULT_CHUNK",
    "ENGINES",
    "decrypt_folder",
    "encrypt_folder",
    "BatchReport",
    "CSV_COLUMNS",
    "FileResult",
    "MAX_LISTED_FAILURES",
    "OLD_CSV_COLUMNS",
    "PHASES",
    "REPORT_FORMAT",
    "REPORT_NAME",
    "STATUSES",
    "is_batch_report",
    "STOP_SIGNALS",
    "Stopped",
    "signal_of",
    "stop_on_signals",
]
