"""Key-generation and XOR speed: one table, every ratio from the same run.

    python tools/bench_keygen.py [--quick] [--size 256] [--onnx G.onnx]

Rows (ms/key and keys/s at batch 1 and 16): Keras `predict`, `tf.function`, Keras
`__call__` under `tf.function(jit_compile=True)`, TFLite (XNNPACK), onnxruntime CPU with
default and tuned session options on tf2onnx's graph (the export before issue 15), the
tuned options on each cumulative rewrite of export/onnx_rewrite.py (graphs A, B = what
`dkg-export onnx` writes, C), the CUDA execution provider when onnxruntime offers
it, and the paper's 2.07 s/key (Table XIX). The onnxruntime rows take turns per repeat. The generator's FLOPs (counted from its
Conv layers) over the time give GFLOP/s, shown against numpy's sgemm rate on this
machine (best of several 2048² products) as a share of peak. XOR rows: cv2 vs numpy vs memcpy, MB/s of plaintext.

The generator is the full-size one (6 residual blocks) with fixed untrained weights:
speed does not depend on the weights. onnxruntime, sgemm and XOR run in a child process
without TensorFlow (TF in the same process slows onnxruntime by ~40 %).
Without TensorFlow installed, pass --onnx G.onnx and only the child's rows are shown.
This machine is shared and noisy: compare rows within one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPER_SECONDS_PER_KEY = 2.0714  # paper Table XIX, DeepKeyGen key generation
DEFAULT_GFLOP_256 = 4.84  # 6-block generator at 256x256 (2.42 GMAC), used when Keras is absent


def median_seconds(run, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        run()
    return float(np.median([_timed(run) for _ in range(repeats)]))


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def repeats_for(batch: int, quick: bool) -> int:
    if quick:
        return 3 if batch == 1 else 2
    return 10 if batch == 1 else 4


# ---- child process: onnxruntime, sgemm, XOR (no TensorFlow) ------------------------------

def ort_variants(threads: int):
    import onnxruntime as ort

    from keras_dkg.runtime.keys.engines.providers import CUDA

    tuned = ort.SessionOptions()
    tuned.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    tuned.intra_op_num_threads = threads
    tuned.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    tuned.add_session_config_entry("session.intra_op.allow_spinning", "0")
    single = ort.SessionOptions()
    single.intra_op_num_threads = 1
    variants = [
        ("onnxruntime CPU, default options", None, ["CPUExecutionProvider"]),
        (f"onnxruntime CPU, tuned ({threads} threads, ENABLE_ALL, no spin: as dkg-keygen)", tuned, ["CPUExecutionProvider"]),
        ("onnxruntime CPU, 1 thread", single, ["CPUExecutionProvider"]),
    ]
    if CUDA in ort.get_available_providers():
        variants.append(("onnxruntime CUDA EP", None, [CUDA, "CPUExecutionProvider"]))
    return variants


def graph_variants(model: Path) -> list[tuple[str, bytes]]:
    """The exported graph's rewrites, each cumulative (export/onnx_rewrite.py); [] without the onnx package.

    `model` is tf2onnx's graph as it is before any rewrite (the export before issue 15).
    """
    try:
        import onnx
    except ImportError:
        return []
    from keras_dkg.export import onnx_rewrite

    steps = [("graph A: norms fused to InstanceNormalization", onnx_rewrite.fuse_instance_norm),
             ("graph B: A + transposed-conv crop as pads (dkg-export)", onnx_rewrite.fold_transpose_crop),
             ("graph C: B + ConvTranspose as Conv + DepthToSpace (not exported)",
              onnx_rewrite.transpose_as_depth_to_space)]
    proto, variants = onnx.load(str(model)), []
    for label, rewrite in steps:
        if not rewrite(proto):
            break
        variants.append((f"onnxruntime CPU, tuned, {label}", proto.SerializeToString()))
    return variants


def bench_ort(model: Path, size: int, batches: list[int], quick: bool) -> list[dict]:
    import onnxruntime as ort

    rows = []
    rng = np.random.default_rng(0)
    variants = [(label, options, providers, str(model)) for label, options, providers in ort_variants(os.cpu_count() or 1)]
    tuned = variants[1][1]
    variants += [(label, tuned, ["CPUExecutionProvider"], graph) for label, graph in graph_variants(model)]
    sessions = []
    for label, options, providers, source in variants:
        session = ort.InferenceSession(source, options, providers=providers)
        sessions.append((label, session, session.get_inputs()[0].name))
    for batch in batches:  # the variants take turns, so the machine's drift hits them alike
        x = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
        runs = [lambda s=session, f={name: x}: s.run(None, f) for _, session, name in sessions]
        for run in runs:
            run(), run()  # warm-up
        times = [[] for _ in runs]
        for _ in range(repeats_for(batch, quick)):
            for index, run in enumerate(runs):
                times[index].append(_timed(run))
        rows += [{"path": label, "batch": batch, "seconds": float(np.median(t)), "provider": session.get_providers()[0]}
                 for (label, session, _), t in zip(sessions, times, strict=True)]
    return rows


def engine_variants() -> list[tuple[str, str, str]]:
    """(backend, precision, settings) of every installed key engine (keras_dkg.runtime.keys.engines.registry)."""
    from keras_dkg.runtime.keys.engines import registry as engines

    found = [("onnxruntime", "fp32", "defaults"), ("onnxruntime", "fp32", "tuned")]
    if "openvino" in engines.available_backends():
        precisions = ["fp32", "bf16"] if engines.cpu_has_bf16() else ["fp32"]
        found += [("openvino", p, s) for p in precisions for s in ("latency", "throughput")]
    return found


def bench_engines(model: Path, size: int, batches: list[int], quick: bool) -> list[dict]:
    """ms/key of every key engine, taking turns, with parity against onnxruntime fp32 (defaults)."""
    from keras_dkg.runtime.keys.engines.registry import create_engine
    from keras_dkg.runtime.keys.preprocess import quantize_key

    data = model.read_bytes()
    built = [(variant, create_engine(data, model.name, *variant[:2], settings=variant[2]))
             for variant in engine_variants()]
    rows = []
    rng = np.random.default_rng(0)
    for batch in batches:
        x = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
        outputs = [engine.run(x) for _, engine in built]  # warm-up, and the outputs for parity
        for _, engine in built:
            engine.run(x)
        reference = outputs[0]
        times = [[] for _ in built]
        for _ in range(repeats_for(batch, quick)):
            for index, (_, engine) in enumerate(built):
                times[index].append(_timed(lambda e=engine, x=x: e.run(x)))
        for (variant, engine), output, t in zip(built, outputs, times, strict=True):
            differ = float(np.mean(quantize_key(output) != quantize_key(reference)))
            rows.append({"path": f"engine {' '.join(variant)}", "batch": batch, "seconds": float(np.median(t)),
                         "max_abs": float(np.max(np.abs(output - reference))), "bytes_differ": differ,
                         "version": engine.info.version})
    return rows


def sgemm_gflops(quick: bool) -> float:
    n = 1024 if quick else 2048
    a = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(2).standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(3 if quick else 7))  # peak: best, not median
    return 2.0 * n**3 / best / 1e9


def bench_xor(quick: bool) -> list[dict]:
    import cv2

    from keras_dkg.runtime.ciphers.xor import xor_bytes

    nbytes = (8 if quick else 32) << 20
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, nbytes, dtype=np.uint8)
    b = rng.integers(0, 256, nbytes, dtype=np.uint8)
    out = np.empty_like(a)
    a2, b2, out2 = (v.reshape(-1, 4096) for v in (a, b, out))
    cases = [
        ("memcpy (np.copyto)", lambda: np.copyto(out, a)),
        ("numpy bitwise_xor (out=)", lambda: np.bitwise_xor(a, b, out=out)),
        ("cv2.bitwise_xor 2-D (dst=)", lambda: cv2.bitwise_xor(a2, b2, dst=out2)),
        ("cipher.xor_bytes (allocates its output)", lambda: xor_bytes(a, b)),
        ("cipher.xor_bytes (out=: in place, as decrypt_array(in_place=True))", lambda: xor_bytes(a, b, out=out)),
    ]
    repeats = 5 if quick else 15
    return [{"path": label, "mb_s": nbytes / median_seconds(run, repeats) / 1e6} for label, run in cases]


def child_main(model: Path, size: int, batches: list[int], quick: bool) -> None:
    result = {
        "ort": bench_ort(model, size, batches, quick),
        "engines": bench_engines(model, size, batches, quick),
        "sgemm_gflops": sgemm_gflops(quick),
        "xor": bench_xor(quick),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


# ---- parent process: Keras, TFLite, export ------------------------------------------------

def generator_gflop(model, size: int) -> float:
    """FLOPs (2 per MAC) of every Conv2D / Conv2DTranspose at size×size, from the Keras model."""
    import keras

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose)]
    probe = keras.Model(model.inputs[0], [t for layer in convs for t in (layer.input, layer.output)])
    shapes = [tuple(t.shape) for t in probe(np.zeros((1, size, size, 3), np.float32))]
    total = 0
    for index, layer in enumerate(convs):
        in_shape, out_shape = shapes[2 * index], shapes[2 * index + 1]
        kernel = int(np.prod(layer.kernel.shape))
        spatial = in_shape[1] * in_shape[2] if isinstance(layer, keras.layers.Conv2DTranspose) else out_shape[1] * out_shape[2]
        total += 2 * kernel * spatial
    return total / 1e9


def bench_tf(size: int, batches: list[int], quick: bool, folder: Path) -> tuple[list[dict], float, Path]:
    from keras_dkg.common import quiet
    from keras_dkg.export.source import import_keras

    keras = import_keras()
    import tensorflow as tf

    from keras_dkg.export.onnx import convert as to_onnx
    from keras_dkg.export.tflite import convert as to_tflite
    from keras_dkg.export.tflite import tflite_runner
    from keras_dkg.train.networks import build_generator

    keras.utils.set_random_seed(0)
    model = build_generator()
    onnx_path = folder / "generator.onnx"
    onnx_path.write_bytes(to_onnx(model).SerializeToString())
    run_tflite = tflite_runner(to_tflite(model))
    call = tf.function(lambda x: model(x, training=False))
    call_xla = tf.function(lambda x: model(x, training=False), jit_compile=True)
    paths = [
        ("Keras predict", lambda x: model.predict(x, batch_size=x.shape[0], verbose=0)),
        ("Keras __call__ in tf.function", lambda x: call(x).numpy()),
        ("Keras __call__ in tf.function(jit_compile=True)", lambda x: call_xla(x).numpy()),
        ("TFLite (XNNPACK)", run_tflite),
    ]
    rows = []
    rng = np.random.default_rng(0)
    for label, run in paths:
        for batch in batches:
            x = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
            with quiet():
                seconds = median_seconds(lambda run=run, x=x: run(x), repeats_for(batch, quick), warmup=2)
            rows.append({"path": label, "batch": batch, "seconds": seconds})
    return rows, generator_gflop(model, size), onnx_path


def print_table(rows: list[dict], gflop: float, child: dict, size: int) -> None:
    peak = child["sgemm_gflops"]
    baseline = next(r for r in rows if r["path"].startswith("onnxruntime CPU, default") and r["batch"] == 1)
    print(f"\nKey generation, {size}x{size} keys, generator {gflop:.2f} GFLOP/key, "
          f"numpy sgemm {peak:.0f} GFLOP/s on {child['cpus']} CPUs\n")
    header = "| path | batch | ms/key | keys/s | GFLOP/s | % sgemm | x faster than paper | vs ORT default b1 |"
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    paper = {"path": "paper (Table XIX, their hardware)", "batch": 1, "seconds": PAPER_SECONDS_PER_KEY}
    for row in [*rows, paper]:
        per_key = row["seconds"] / row["batch"]
        rate = gflop / per_key
        print(f"| {row['path']} | {row['batch']} | {per_key * 1000:.1f} | {1 / per_key:.1f} | {rate:.0f} | "
              f"{rate / peak:.0%} | {PAPER_SECONDS_PER_KEY / per_key:.0f}x | "
              f"{baseline['seconds'] / per_key:.2f}x |")
    tuned = next(r for r in rows if r["path"].startswith("onnxruntime CPU, tuned") and r["batch"] == 1)
    print("\nKey engines (keras_dkg.runtime.keys.engines.registry; the rows take turns), parity against onnxruntime fp32 "
          "defaults on the same input\n")
    print("| engine | version | batch | ms/key | vs dkg-keygen before issue 27 (ORT tuned, b1) | max \\|Δ\\| | "
          "key bytes differing |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in child["engines"]:
        per_key = row["seconds"] / row["batch"]
        print(f"| {row['path'][7:]} | {row['version']} | {row['batch']} | {per_key * 1000:.1f} | "
              f"{tuned['seconds'] / per_key:.2f}x | {row['max_abs']:.2g} | {100 * row['bytes_differ']:.2f} % |")
    print("\nXOR of plaintext bytes with key bytes\n")
    print("| path | MB/s | vs memcpy |")
    print("|---|---:|---:|")
    memcpy = child["xor"][0]["mb_s"]
    for row in child["xor"]:
        print(f"| {row['path']} | {row['mb_s']:.0f} | {row['mb_s'] / memcpy:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    parser.add_argument("--size", type=int, default=256, help="key size N (N×N, multiple of 4; default 256)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes (default: 1 16)")
    parser.add_argument("--onnx", type=Path, help="use this ONNX generator and skip the TensorFlow rows")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.onnx, args.size, args.batches, args.quick)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        if args.onnx is None:
            rows, gflop, onnx_path = bench_tf(args.size, args.batches, args.quick, Path(folder))
        else:
            rows, gflop, onnx_path = [], DEFAULT_GFLOP_256 * (args.size / 256) ** 2, args.onnx
        command = [sys.executable, __file__, "--child", "--onnx", str(onnx_path), "--size", str(args.size),
                   "--batches", *map(str, args.batches)] + (["--quick"] if args.quick else [])
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            return 1
        child = json.loads(result.stdout.strip().splitlines()[-1])
    print_table([*rows, *child["ort"]], gflop, child, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
