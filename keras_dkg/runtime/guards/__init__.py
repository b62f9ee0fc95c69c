"""What every file passes on its way in or out: bounded reads of untrusted input (inputs),
no key ever overwritten by an output (outputs), atomic writes and durable appends (atomic).
The floor of the runtime: it imports nothing else of it.
"""

from keras_dkg.runtime.guards.atomic import (
    append_whole_lines,
    atomic_output,
    write_bytes_atomic,
)
from keras_dkg.runtime.guards.inputs import (
    MAX_IMAGE_BYTES,
    MAX_MODEL_BYTES,
    MAX_PADDING_BYTES,
    MAX_RECORD_BYTES,
    check_padding,
    file_kind,
    read_bounded,
    regular_file,
)
from keras_dkg.runtime.guards.outputs import (
    KEY_RECORD_MARK,
    KEY_STORE_MARKERS,
    OutputGuard,
    inside,
    is_key_record,
    key_record_of,
    key_store_holding,
    refuse_key,
    refuse_keys_under,
)

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_MODEL_BYTES",
    "MAX_PADDING_BYTES",
    "MAX_RECORD_BYTES",
    "check_padding",
    "file_kind",
    "read_bounded",
    "regular_file",
    "KEY_RECORD_MARK",
    "KEY_STORE_MARKERS",
    "OutputGuard",
    "inside",
    "is_key_record",
    "key_record_of",
    "key_store_holding",
    "refuse_key",
    "refuse_keys_under",
    "append_whole_lines",
    "atomic_output",
    "write_bytes_atomic",
]
