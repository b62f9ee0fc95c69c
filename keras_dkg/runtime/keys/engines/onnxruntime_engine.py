"""The onnxruntime engine: the exported generator in an InferenceSession, fp32.

Two session settings are measured against each other (`keys.engines.choice`): onnxruntime's
own defaults, and `tuned` (as many intra-op threads as cores, no spin-waiting). Neither
wins everywhere: spinning threads cost nothing on idle cores and halve the speed on
shared ones, so the choice is made by measurement on the machine that runs it.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from keras_dkg.errors import InputError
from keras_dkg.runtime.keys.engines.providers import create_session, session_options
from keras_dkg.runtime.keys.engines.registry import BF16, ONNXRUNTIME, EngineInfo, Signature

SETTINGS = ("defaults", "tuned")


def options_for(settings: str, threads: int | None) -> ort.SessionOptions:
    """onnxruntime's defaults (quiet logs, full optimisation), or `tuned`: no spinning, `threads` threads."""
    if settings == "tuned":
        return session_options(threads)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = int(threads)
    return options


class OnnxRuntimeEngine:
    """An onnxruntime session on the CPU or CUDA; fp32 only."""

    def __init__(self, model: bytes, label: str, precision: str = "auto", provider: str = "auto",
                 threads: int | None = None, settings: str | None = None):
        if precision == BF16:
            raise InputError("precision bf16: onnxruntime computes the generator in fp32 here; "
                             "use --backend openvino for bf16 (pip install 'keras-dkg[openvino]')")
        settings = settings or "defaults"
        if settings not in SETTINGS:
            raise InputError(f"unknown onnxruntime settings {settings!r}; expected one of {', '.join(SETTINGS)}")
        self.session, device = create_session(model, label, provider, options_for(settings, threads))
        self.info = EngineInfo(ONNXRUNTIME, ort.__version__, "fp32", device, settings)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        first = inputs[0] if inputs else None
        self.signature = Signature(
            input_name=first.name if first else "",
            input_type=first.type if first else "",  # onnxruntime's own spelling: "tensor(float)"
            input_shape=tuple(first.shape) if first else (),  # symbolic axes keep their names
            output_count=len(outputs),
            output_rank=len(outputs[0].shape) if outputs and outputs[0].shape else None,
            input_count=len(inputs),
        )
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def provider(self) -> str:
        return self.info.device

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.signature.input_name: batch})[0]
