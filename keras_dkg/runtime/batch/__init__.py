"""Folders: the driver (driver: encrypt_folder / decrypt_folder), the per-file work of a
worker (worker), listing and checks of a batch's folders (listing, checks), its report
(report), clean stops on signals (signals) and the engines that run workers: local
processes or Ray actors (engines).

`keras_dkg.runtime.batch` was the driver module; its names are still here.

Its public names are imported from their modules on first use (`common.lazy_exports`).
"""

from keras_dkg.common import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "driver": (
        "BatchInterrupted",
        "DEFAULT_CHUNK",
        "ENGINES",
        "decrypt_folder",
        "encrypt_folder",
    ),
    "report": (
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
    ),
    "signals": (
        "STOP_SIGNALS",
        "Stopped",
        "signal_of",
        "stop_on_signals",
    ),
})
