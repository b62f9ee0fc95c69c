"""The OpenVINO engine (`pip install "keras-dkg[openvino]"`): the same ONNX generator, fp32 or bf16.

OpenVINO reads the exported ONNX bytes directly. On CPUs with native bf16 its default is
to compute in bf16 (2–3× faster than fp32 here); the precision is always set explicitly
(INFERENCE_PRECISION_HINT) so a key's record says what really computed it. One compiled
model serves every shape (the generator's input is dynamic); the LATENCY hint suits one
key at a time, THROUGHPUT batches (`settings`).
"""

from __future__ import annotations

import numpy as np
import openvino as ov

from keras_dkg.errors import InputError, ModelError
from keras_dkg.runtime.keys.engines.registry import (
    AUTO,
    BF16,
    FP32,
    OPENVINO,
    EngineInfo,
    Signature,
    cache_path,
    cpu_has_bf16,
)

SETTINGS = ("latency", "throughput")
_HINTS = {FP32: "f32", BF16: "bf16"}


def _shape(partial) -> tuple:
    return tuple(int(d.get_length()) if d.is_static else None for d in partial)


class OpenVinoEngine:
    """A model compiled by OpenVINO for the CPU at a fixed, recorded precision."""

    def __init__(self, model: bytes, label: str, precision: str = AUTO, provider: str = "auto",
                 threads: int | None = None, settings: str | None = None):
        if provider == "cuda":
            raise InputError("provider cuda is onnxruntime's; the openvino backend runs on the CPU here")
        if precision == AUTO:
            precision = BF16 if cpu_has_bf16() else FP32
        elif precision == BF16 and not cpu_has_bf16():
            raise InputError("precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX); use --precision fp32")
        settings = settings or "latency"
        if settings not in SETTINGS:
            raise InputError(f"unknown openvino settings {settings!r}; expected one of {', '.join(SETTINGS)}")
        core = ov.Core()
        blobs = cache_path().parent / "openvino"
        try:  # compiled models cached on disk: a second start compiles in about half the time
            blobs.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(blobs)})
        except (OSError, RuntimeError):
            pass
        try:
            network = core.read_model(model)
        except Exception as exc:  # OpenVINO raises RuntimeError with a long multi-line text
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{label}: not a loadable ONNX model ({first[:300]})") from exc
        config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": settings.upper()}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(network, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.info = EngineInfo(OPENVINO, ov.get_version().split("-")[0], precision, "CPU", settings)
        inputs, outputs = network.inputs, network.outputs
        first = inputs[0] if inputs else None
        self.signature = Signature(
            input_name=first.get_any_name() if first else "",
            input_type=first.get_element_type().to_dtype().name if first else "",
            input_shape=_shape(first.get_partial_shape()) if first else (),
            output_count=len(outputs),
            output_rank=outputs[0].get_partial_shape().rank.get_length() if outputs else None,
            input_count=len(inputs),
        )
        self.metadata = {}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.array(self.request.infer({0: batch})[0], dtype=np.float32, copy=True)
