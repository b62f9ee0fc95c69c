"""Training speed: steps/s of one G+D train step at 64², 128², 256² (batch 1).

Compares Keras eager execution (`run_eagerly=True`), the default `tf.function` graph and
`jit_compile=True` (XLA), all in this one process, and prints one table with ratios.

    python tools/bench_train.py [--sizes 64 128 256] [--steps 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dkg.model import DeepKeyGen  # noqa: E402

MODES = {"eager": {"run_eagerly": True}, "tf.function": {}, "xla": {"jit_compile": True}}


def steps_per_second(size: int, mode: str, steps: int, warmup: int, batch: int) -> float:
    keras.utils.set_random_seed(0)
    model = DeepKeyGen()
    model.compile(**MODES[mode])
    rng = np.random.default_rng(0)
    pair = tuple(rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32") for _ in range(2))
    data = tf.data.Dataset.from_tensors(pair).repeat()
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per cell")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (tracing, XLA compile)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    devices = ", ".join(d.device_type for d in tf.config.list_logical_devices())
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, devices: {devices}, "
          f"CPUs: {os.cpu_count()}, batch {args.batch}, {args.steps} timed steps")
    header = "| size | " + " | ".join(f"{m} steps/s" for m in args.modes) + " | " + \
        " | ".join(f"{m}/tf.function" for m in args.modes if m != "tf.function") + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for size in args.sizes:
        rates = {m: steps_per_second(size, m, args.steps, args.warmup, args.batch) for m in args.modes}
        base = rates.get("tf.function")
        ratios = [f"{rates[m] / base:.2f}" if base else "n/a" for m in args.modes if m != "tf.function"]
        print(f"| {size} | " + " | ".join(f"{rates[m]:.2f}" for m in args.modes) + " | " + " | ".join(ratios) + " |",
              flush=True)


if __name__ == "__main__":
    main()
