"""Key engines: what runs the exported generator (onnxruntime or OpenVINO), at which precision.

Every engine takes the same ONNX bytes and answers one call, `run(batch) -> output`
(float32 N×H×W×3 in, float32 out); `info` names the engine, its version, the precision
it computes in and the device, and goes into every key's record. Keys are stored, never
regenerated to decrypt, so a key made by any engine decrypts anywhere.

Precision is a choice, not a side effect: `fp32` is the exported model's own arithmetic
(export parity against Keras is an fp32 property); `bf16` computes the convolutions in
bfloat16 where the CPU has native bf16 (AVX512-BF16/AMX), which OpenVINO does 2–3× faster
than fp32 here, and rounds ~half the key bytes differently from fp32 keys while leaving
the key statistics unchanged (docs/performance.md). `auto` is bf16 where the engine and
the CPU support it, else fp32.

Engines register by name in `ENGINES` ("module:object", loaded lazily), so OpenVINO is
imported only when it is asked for (`pip install "keras-dkg[openvino]"`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from keras_dkg.common import import_object, short_error
from keras_dkg.errors import InputError, ModelError

ONNXRUNTIME, OPENVINO, AUTO = "onnxruntime", "openvino", "auto"
FP32, BF16 = "fp32", "bf16"
BACKEND_CHOICES = (AUTO, ONNXRUNTIME, OPENVINO)
PRECISION_CHOICES = (AUTO, FP32, BF16)
#: onnxruntime execution providers (keys.engines.providers), here so that listing them imports no onnxruntime
PROVIDER_CHOICES = ("auto", "cpu", "cuda")
ENGINES = {
    ONNXRUNTIME: "keras_dkg.runtime.keys.engines.onnxruntime_engine:OnnxRuntimeEngine",
    OPENVINO: "keras_dkg.runtime.keys.engines.openvino_engine:OpenVinoEngine",
}
EXTRAS = {OPENVINO: "openvino"}
DISTRIBUTIONS = {ONNXRUNTIME: ("onnxruntime", "onnxruntime-gpu"), OPENVINO: ("openvino",)}
CACHE_ENV = "DKG_ENGINE_CACHE"
FLOAT_TYPES = ("tensor(float)", "float32")


def cache_path() -> Path:
    """The engine cache file: `$DKG_ENGINE_CACHE`, else `$XDG_CACHE_HOME` or `~/.cache`, keras_dkg/engines.json.

    Compiled OpenVINO models are cached beside it (openvino/), which makes a second start faster.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "keras_dkg" / "engines.json"


def installed_versions() -> dict[str, str]:
    """Each backend's installed distribution version, read from package metadata (nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name, distributions in DISTRIBUTIONS.items():
        for distribution in distributions:
            try:
                found[name] = version(distribution)
                break
            except PackageNotFoundError:
                continue
    return found


@dataclass(frozen=True)
class EngineInfo:
    """What a key record says about the engine that made it."""

    name: str
    version: str
    precision: str
    device: str
    settings: str = "defaults"

    def record(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.name} {self.version} ({self.device}, {self.precision}, {self.settings})"


@dataclass(frozen=True)
class Signature:
    """The model's one input and one output, as the engine reads them (None: a dynamic axis)."""

    input_name: str
    input_type: str  # the engine's spelling: "tensor(float)" (onnxruntime), "float32" (OpenVINO)
    input_shape: tuple  # ints; names or None for dynamic axes
    output_count: int
    output_rank: int | None
    input_count: int = 1


class Engine(Protocol):
    info: EngineInfo
    signature: Signature
    metadata: dict

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    choice = str(value).lower()
    if choice not in choices:
        raise InputError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")
    return choice


def engine_class(name: str):
    """The engine class for a backend name, imported on first use; one line naming the extra if absent."""
    try:
        return import_object(ENGINES[name])
    except ImportError as exc:
        extra = EXTRAS.get(name, name)
        raise InputError(f"backend {name} is not installed (pip install 'keras-dkg[{extra}]'): "
                         f"{short_error(exc, 200)}") from exc


def available_backends() -> list[str]:
    """The backends that import on this machine, onnxruntime first."""
    found = []
    for name in ENGINES:
        try:
            engine_class(name)
        except InputError:
            continue
        found.append(name)
    return found


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic on this CPU (AVX512-BF16 or AMX-BF16), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def create_engine(model: bytes, label: str, backend: str = ONNXRUNTIME, precision: str = AUTO,
                  provider: str = "auto", threads: int | None = None, settings: str | None = None) -> Engine:
    """An engine of a named backend (not `auto`: see keys.engines.choice.choose) over ONNX bytes."""
    backend = check_choice(backend, BACKEND_CHOICES[1:], "backend")
    precision = check_choice(precision, PRECISION_CHOICES, "precision")
    engine = engine_class(backend)(model, label, precision=precision, provider=provider, threads=threads,
                                   settings=settings)
    check_signature(engine, label)
    return engine


def check_signature(engine: Engine, label: str) -> None:
    """One float32 input of rank 4 with 3 channels, one output of rank 4: what a generator is."""
    spec = engine.signature
    if spec.input_count != 1 or spec.output_count != 1:
        raise ModelError(f"{label}: expected one input and one output, got {spec.input_count} and {spec.output_count}")
    channels = spec.input_shape[-1] if spec.input_shape else None
    if len(spec.input_shape) != 4 or spec.input_type not in FLOAT_TYPES or (isinstance(channels, int) and channels != 3):
        raise ModelError(f"{label}: input {spec.input_name!r} is {spec.input_type} {list(spec.input_shape)}; "
                         "expected float32 of rank 4 (N, H, W, 3)")
    if spec.output_rank is not None and spec.output_rank != 4:
        raise ModelError(f"{label}: output has rank {spec.output_rank}; expected 4 (N, H, W, 3)")


def run_checked(engine: Engine, batch: np.ndarray, label: str) -> np.ndarray:
    """One engine call; failures and non-finite outputs become one ModelError naming the model."""
    try:
        output = engine.run(batch)
    except (InputError, ModelError):
        raise
    except Exception as exc:  # each engine raises its own types
        raise ModelError(f"{label}: inference failed on {batch.shape} ({short_error(exc, 300)})") from exc
    if not np.isfinite(output).all():
        raise ModelError(f"{label}: generator output contains NaN or infinite values (broken weights?)")
    return output
