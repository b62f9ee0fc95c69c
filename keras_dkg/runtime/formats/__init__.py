"""Files we read and write: detection by name and magic bytes (detect), one registry of
formats (registry: open_plaintext / open_ciphertext), image decoding (images), raster
header checks (raster_headers), and one module per container: PNG/TIFF (png_tiff), DICOM
(dicom), NIfTI (nifti); training and seed images (sources).

`keras_dkg.runtime.formats` was the format registry module; its names are still here.

Its public names are imported from their modules on first use (`common.lazy_exports`).
"""

from keras_dkg.common import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "detect": (
        "DICOM_SUFFIXES",
        "IMAGE_SUFFIXES",
        "LOSSLESS_SUFFIXES",
        "LOSSY_SUFFIXES",
        "NIFTI_NAMES",
        "RASTER_SUFFIXES",
        "format_of",
        "is_dicom",
        "named_like_a_file_we_read",
        "output_format",
        "recognised",
    ),
    "registry": (
        "CiphertextFile",
        "FORMATS",
        "LABELS",
        "PlaintextFile",
        "WRITTEN_AS",
        "check_output",
        "open_ciphertext",
        "open_plaintext",
        "open_plaintext_checked",
    ),
    "images": (
        "decode_image",
        "encode_lossless",
        "image_from_bytes",
        "read_image",
        "read_plaintext_image",
        "refuse_dicom_bomb",
        "write_image",
    ),
    "sources": (
        "MIN_FOREGROUND",
        "WINDOW_PERCENTILES",
        "list_images",
        "seed_slice",
        "source_files",
        "source_images",
        "split_slice_spec",
        "training_slices",
    ),
})
