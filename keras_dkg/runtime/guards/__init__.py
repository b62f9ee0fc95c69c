"""What every file passes on its way in or out: bounded reads of untrusted input (inputs),
no key ever overwritten by an output (outputs), atomic writes and durable appends (atomic).
The floor of the runtime: it imports nothing else of it.

Its public names are imported from their modules on first use (`common.lazy_exports`).
"""

from keras_dkg.common import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "inputs": (
        "MAX_IMAGE_BYTES",
        "MAX_MODEL_BYTES",
        "MAX_PADDING_BYTES",
        "MAX_RECORD_BYTES",
        "check_padding",
        "file_kind",
        "read_bounded",
        "regular_file",
    ),
    "outputs": (
        "KEY_RECORD_MARK",
        "KEY_STORE_MARKERS",
        "OutputGuard",
        "inside",
        "is_key_record",
        "key_record_of",
        "key_store_holding",
        "refuse_key",
        "refuse_keys_under",
    ),
    "atomic": (
        "append_whole_lines",
        "atomic_output",
        "stale_temporaries",
        "write_bytes_atomic",
    ),
})
