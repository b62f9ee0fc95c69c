"""`--backend auto`: the engine this machine's own measurement says is fastest, cached.

The candidates are every installed engine and its settings at the requested precision
(onnxruntime's defaults and its tuned options; OpenVINO's latency and throughput hints, in
bf16 where the CPU has it).
Each runs the generator on a 256² seed (the size nonce schemes v2/v3 run the generator at
per file, batch 1) after one warm-up, best of a few runs; the fastest is kept per
machine (CPU model, cores, engine versions), model and precision in a small JSON cache
(`engines.cache_path()`: `$DKG_ENGINE_CACHE`, else `$XDG_CACHE_HOME` or
`~/.cache/keras_dkg/engines.json`), so a measurement is made once, and `dkg-keygen -v`
prints what was chosen and the times it was chosen by. CUDA, when onnxruntime offers it
and the provider allows it, is taken without measuring.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from keras_dkg.common import file_lock, utc_timestamp
from keras_dkg.errors import InputError
from keras_dkg.runtime.guards.atomic import write_bytes_atomic
from keras_dkg.runtime.keys.engines.registry import (
    AUTO,
    BF16,
    FP32,
    ONNXRUNTIME,
    OPENVINO,
    PRECISION_CHOICES,
    Engine,
    available_backends,
    cache_path,
    check_choice,
    cpu_has_bf16,
    create_engine,
    installed_versions,
    run_checked,
)

MEASURE_SIDE = 256
MEASURE_RUNS = 3
CACHE_FORMAT = "keras_dkg.engines/1"


def machine_id() -> str:
    """What a measurement holds for: the CPU model, the cores this process may use, engine versions."""
    model = "unknown cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = " ".join(f"{name}={version}" for name, version in sorted(installed_versions().items()))
    return f"{model} x{cores} {versions}"


def candidates(precision: str) -> list[tuple[str, str, str]]:
    """(backend, precision, settings) worth measuring for a requested precision."""
    precision = check_choice(precision, PRECISION_CHOICES, "precision")
    bf16 = cpu_has_bf16()
    found = []
    for backend in available_backends():
        if backend == ONNXRUNTIME and precision != BF16:
            found += [(ONNXRUNTIME, FP32, "defaults"), (ONNXRUNTIME, FP32, "tuned")]
        elif backend == OPENVINO:
            wanted = (BF16 if bf16 else FP32) if precision == AUTO else precision
            if wanted == BF16 and not bf16:
                continue
            found += [(OPENVINO, wanted, "latency"), (OPENVINO, wanted, "throughput")]
    if not found:
        raise InputError(f"precision {precision}: no installed backend computes it on this CPU "
                         "(bf16 needs OpenVINO and a CPU with AVX512-BF16 or AMX)")
    return found


def _milliseconds(engine: Engine, label: str, runs: int) -> float:
    _, height, width, _ = (v if isinstance(v, int) else None for v in engine.signature.input_shape)  # fixed: at it
    shape = (1, height or MEASURE_SIDE, width or MEASURE_SIDE, 3)
    seed = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    run_checked(engine, seed, label)  # warm-up: first runs allocate and pick kernels; a broken model stops here
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        run_checked(engine, seed, label)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": CACHE_FORMAT, "choices": {}}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("choices"), dict):
        return {"format": CACHE_FORMAT, "choices": {}}
    return data


def _cuda_wanted(provider: str) -> bool:
    if provider == "cpu":
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def choose(model: bytes, label: str, model_sha256: str, precision: str = AUTO, provider: str = "auto",
           threads: int | None = None) -> tuple[Engine, str]:
    """The fastest engine for this machine, model and precision, and one line saying why."""
    if _cuda_wanted(provider):
        engine = create_engine(model, label, ONNXRUNTIME, FP32 if precision == AUTO else precision, provider, threads)
        return engine, f"backend auto: {engine.info.describe()}: CUDA is present (taken without measuring)"
    options = candidates(precision)
    key = f"{machine_id()}|{model_sha256}|{precision}"
    path = cache_path()
    entry = _read_cache(path)["choices"].get(key)
    if isinstance(entry, dict) and tuple(entry.get("choice", ())) in options:
        backend, chosen_precision, settings = entry["choice"]
        engine = create_engine(model, label, backend, chosen_precision, provider, threads, settings)
        return engine, _explain(engine, entry, f"measured {entry.get('when', '?')}, cached in {path}")
    timings, engines = {}, {}
    for option in options:
        backend, chosen_precision, settings = option
        engine = create_engine(model, label, backend, chosen_precision, provider, threads, settings)
        timings[" ".join(option)] = round(_milliseconds(engine, label, MEASURE_RUNS), 2)
        engines[" ".join(option)] = engine
    best = min(timings, key=timings.get)
    entry = {"choice": best.split(" "), "ms_per_key_256": timings, "when": utc_timestamp()}
    _store(path, key, entry)
    return engines[best], _explain(engines[best], entry, f"measured now, cached in {path}")


def _store(path: Path, key: str, entry: dict) -> None:
    """Add one measurement to the cache; a cache that cannot be written only costs a re-measurement."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(path.name + ".lock")):
            data = _read_cache(path)
            data["choices"][key] = entry
            write_bytes_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"),
                               overwrite=True)
    except OSError:
        pass


def _explain(engine: Engine, entry: dict, where: str) -> str:
    times = ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(entry.get("ms_per_key_256", {}).items(),
                                                                   key=lambda item: item[1]))
    return (f"backend auto: {engine.info.describe()}, the fastest at {MEASURE_SIDE}² batch 1 on this machine "
            f"({times}; {where})")
