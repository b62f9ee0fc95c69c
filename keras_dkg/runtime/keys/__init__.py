"""Keys: the key artifact and its record (artifact), the generator that makes keys from a
seed (generator: KeyGenerator), nonce schemes (nonces), tiling of large keys (tiling), the
preprocessing training shares (preprocess), and the engines that run the exported model
(engines).

`keras_dkg.runtime.keys` was the key artifact module; its names are still here.

Its public names are imported from their modules on first use (`common.lazy_exports`).
"""

from keras_dkg.common import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "artifact": (
        "KEY_PNG_COMPRESSION",
        "KEY_RECORD_FORMAT",
        "Key",
        "check_uses",
        "load_key",
        "make_record",
        "mark_key_used",
        "read_record",
        "record_path_for",
        "register_use",
        "release_key_use",
        "verify_key",
        "write_record",
    ),
    "generator": (
        "BASE_BYTES",
        "BASE_KEY_CACHE_BYTES",
        "CPU_SECONDS_PER_PIXEL",
        "DEFAULT_BATCH",
        "KEY_BYTES_PER_PIXEL",
        "KeyGenerator",
        "KeyJob",
        "MAX_BATCH_PIXELS",
        "MAX_KEY_PIXELS",
        "MAX_KEY_SIDE",
        "MIN_GENERATION_SIDE",
        "RUN_BYTES_PER_PIXEL",
        "TILE_OVERLAP",
        "TILE_PIXELS",
        "block_size",
        "check_key_size",
        "estimate_peak_bytes",
        "estimate_seconds",
        "generation_size",
        "load_seed",
        "random_nonce",
    ),
    "nonces": (
        "BLOCK_SIDE",
        "DEFAULT_SCHEME",
        "DESCRIPTIONS",
        "SCHEMES",
        "V1_AMPLITUDE",
        "V1_LABEL",
        "V2_LABEL",
        "V3_LABEL",
        "block_generator",
        "block_key",
        "check_scheme",
        "permute_key",
        "perturb_seed",
    ),
    "preprocess": (
        "PREPROCESSING_SPEC",
        "QUANTISATION_RULE",
        "parse_size",
        "preprocess",
        "preprocess_uint8",
        "quantize_key",
        "resize_uint8",
        "scale_to_unit",
        "to_uint8_rgb",
    ),
})
