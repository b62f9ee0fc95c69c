"""Key engines behind one registry (registry: name -> "module:object", loaded on first use):
onnxruntime (onnxruntime_engine, providers), OpenVINO (openvino_engine, the [openvino]
extra), and `auto`, which measures them once per machine (choice). Importing this package
imports neither onnxruntime nor OpenVINO.
"""

from keras_dkg.runtime.keys.engines.choice import (
    CACHE_FORMAT,
    MEASURE_RUNS,
    MEASURE_SIDE,
    candidates,
    choose,
    machine_id,
)
from keras_dkg.runtime.keys.engines.registry import (
    BACKEND_CHOICES,
    CACHE_ENV,
    DISTRIBUTIONS,
    ENGINES,
    EXTRAS,
    FLOAT_TYPES,
    PRECISION_CHOICES,
    PROVIDER_CHOICES,
    Engine,
    EngineInfo,
    Signature,
    available_backends,
    cache_path,
    check_choice,
    check_signature,
    cpu_has_bf16,
    create_engine,
    engine_class,
    installed_versions,
    run_checked,
)

__all__ = [
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
    "CACHE_FORMAT",
    "MEASURE_RUNS",
    "MEASURE_SIDE",
    "candidates",
    "choose",
    "machine_id",
]
