"""Files we read and write: detection by name and magic bytes (detect), one registry of
formats (registry: open_plaintext / open_ciphertext), image decoding (images), raster
header checks (raster_headers), and one module per container: PNG/TIFF (png_tiff), DICOM
(dicom), NIfTI (nifti); training and seed images (sources).

`keras_dkg.runtime.formats` was the format registry module; its names are still here.
"""

from keras_dkg.runtime.formats.detect import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    LOSSLESS_SUFFIXES,
    NIFTI_NAMES,
    RASTER_SUFFIXES,
    format_of,
    is_dicom,
    named_like_a_file_we_read,
    output_format,
    recognised,
)
from keras_dkg.runtime.formats.images import (
    decode_image,
    encode_lossless,
    image_from_bytes,
    read_image,
    read_plaintext_image,
    refuse_dicom_bomb,
    write_image,
)
from keras_dkg.runtime.formats.registry import (
    FORMATS,
    LABELS,
    WRITTEN_AS,
    CiphertextFile,
    PlaintextFile,
    check_output,
    open_ciphertext,
    open_plaintext,
    open_plaintext_checked,
)
from keras_dkg.runtime.formats.sources import (
    MIN_FOREGROUND,
    WINDOW_PERCENTILES,
    list_images,
    seed_slice,
    source_files,
    source_images,
    split_slice_spec,
    training_slices,
)

__all__ = [
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "LOSSLESS_SUFFIXES",
    "NIFTI_NAMES",
    "RASTER_SUFFIXES",
    "format_of",
    "is_dicom",
    "named_like_a_file_we_read",
    "output_format",
    "recognised",
    "CiphertextFile",
    "FORMATS",
    "LABELS",
    "PlaintextFile",
    "WRITTEN_AS",
    "check_output",
    "open_ciphertext",
    "open_plaintext",
    "open_plaintext_checked",
    "decode_image",
    "encode_lossless",
    "image_from_bytes",
    "read_image",
    "read_plaintext_image",
    "refuse_dicom_bomb",
    "write_image",
    "MIN_FOREGROUND",
    "WINDOW_PERCENTILES",
    "list_images",
    "seed_slice",
    "source_files",
    "source_images",
    "split_slice_spec",
    "training_slices",
]
