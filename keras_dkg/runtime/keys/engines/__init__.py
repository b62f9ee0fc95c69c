"""Key engines behind one registry (registry: name -> "module:object", loaded on first use):
onnxruntime (onnxruntime_engine, providers), OpenVINO (openvino_engine, the [openvino]
extra), and `auto`, which measures them once per machine (choice). Importing this package
imports neither onnxruntime nor OpenVINO.

Its public names are imported from their modules on first use (`common.lazy_exports`).
"""

from keras_dkg.common import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "registry": (
        "BACKEND_CHOICES",
        "CACHE_ENV",
        "DISTRIBUTIONS",
        "ENGINES",
        "EXTRAS",
        "Engine",
        "EngineInfo",
        "FLOAT_TYPES",
        "PRECISION_CHOICES",
        "PROVIDER_CHOICES",
        "Signature",
        "available_backends",
        "cache_path",
        "check_choice",
        "check_signature",
        "cpu_has_bf16",
        "create_engine",
        "engine_class",
        "installed_versions",
        "run_checked",
    ),
    "choice": (
        "CACHE_FORMAT",
        "MEASURE_RUNS",
        "MEASURE_SIDE",
        "candidates",
        "choose",
        "machine_id",
    ),
})
