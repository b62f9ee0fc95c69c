"""onnxruntime sessions: which execution provider, which session options.

`auto` takes CUDA when onnxruntime reports CUDAExecutionProvider (the `[gpu]` extra,
onnxruntime-gpu), else the CPU. The provider a session really got is read back from the
session, since onnxruntime falls back to the CPU when CUDA cannot start.
"""

from __future__ import annotations

import onnxruntime as ort

from keras_dkg.errors import InputError, ModelError
from keras_dkg.runtime.keys.engines.registry import PROVIDER_CHOICES

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def resolve_providers(provider: str = "auto") -> list[str]:
    """The onnxruntime provider list for 'auto', 'cpu' or 'cuda'."""
    available = ort.get_available_providers()
    choice = str(provider).lower()
    if choice == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    if choice == "cpu":
        return [CPU]
    if choice == "cuda":
        if CUDA not in available:
            raise InputError(
                f"provider cuda: this onnxruntime offers only {', '.join(available)}; "
                "install onnxruntime-gpu (pip install 'keras-dkg[gpu]') or use --provider cpu"
            )
        return [CUDA, CPU]
    raise InputError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDER_CHOICES)}")


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Full graph optimisation, no spin-waiting, no onnxruntime logs on stderr; `threads`: intra-op threads.

    Spin-waiting threads cost nothing on idle cores but halve the speed when the cores are
    shared (tools/bench_keygen.py, 2 shared cores, 256² keys: 51 vs 52 ms/key idle,
    194 vs 99 ms/key under load, default vs no spin), so it is off.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Fatal only: onnxruntime logs failed runs on stderr itself, and we report each failure
    # as one ModelError line naming the model.
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = int(threads)
    return options


def _quiet_environment() -> None:
    """No telemetry and no environment-level warnings (e.g. when HOME is not writable) on stderr:
    onnxruntime's process-wide logger is separate from a session's log level."""
    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    ort.set_default_logger_severity(3)  # errors only; failed runs become one ModelError line


def create_session(
    model: bytes, label: str, provider: str = "auto", options: ort.SessionOptions | None = None
) -> tuple[ort.InferenceSession, str]:
    """An InferenceSession over model bytes and the provider it actually uses."""
    providers = resolve_providers(provider)
    _quiet_environment()
    try:
        session = ort.InferenceSession(model, options or session_options(), providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail, ...)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{label}: not a loadable ONNX model ({first_line[:300]})") from exc
    return session, session.get_providers()[0]
