"""Training speed: the train step today (G(x) once) against the old step (G(x) twice), on both backends.

Each backend runs in its own process (Keras picks its backend at import); the old and the
new step are measured interleaved inside that process, so their ratio is one machine
state. The processes alternate for `--rounds` rounds; the table gives medians over rounds,
and the TensorFlow/JAX ratio, which compares two processes, is only as steady as the
machine between them. Random images stand in for the data (a step's cost does not depend
on the pixels). The steps are the real ones: `DeepKeyGen.train_step` (TensorFlow, as
`model.fit` traces it) and `step_jax.make_step`, each with `reuse_generator_pass` on (new)
and off (old).

    python tools/bench_train.py [--sizes 64 128 256] [--steps 20] [--rounds 3] [--backends tensorflow jax]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

STEPS = {"old": False, "new": True}  # label -> reuse_generator_pass


def _build(size: int, reuse: bool):
    import keras

    from keras_dkg.train.model import DeepKeyGen

    keras.utils.set_random_seed(0)
    model = DeepKeyGen()
    model.compile(image_shape=(size, size, 3), reuse_generator_pass=reuse)
    model.build_optimizers()
    return model


def _tensorflow_steps(size: int, batch: int):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    data = tuple(tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)), tf.float32) for _ in range(2))
    runners = {}
    for label, reuse in STEPS.items():
        step = tf.function(_build(size, reuse).train_step)
        runners[label] = lambda step=step: step(data)["g_loss"].numpy()
    return runners


def _jax_steps(size: int, batch: int):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from keras_dkg.train import step_jax

    rng = np.random.default_rng(0)
    pixels = jax.device_put(rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8))
    index = jnp.arange(batch, dtype=jnp.int32) % 8
    runners = {}
    for label, reuse in STEPS.items():
        model = _build(size, reuse)
        step = step_jax.make_step(model, augment=False)
        holder = {"state": step_jax.state_of(model)}

        def run(step=step, holder=holder):
            holder["state"], metrics = step(holder["state"], pixels, pixels, index, index, None, jnp.int32(0))
            return float(metrics["g_loss"])
        runners[label] = run
    return runners


def worker(backend: str, sizes: list[int], steps: int, warmup: int, batch: int) -> dict:
    """steps/s of the old and the new step per size, in this process."""
    results = {}
    for size in sizes:
        runners = (_jax_steps if backend == "jax" else _tensorflow_steps)(size, batch)
        for run in runners.values():
            for _ in range(warmup):
                run()
        for label, run in runners.items():
            started = time.perf_counter()
            for _ in range(steps):
                run()
            results[f"{size}/{label}"] = steps / (time.perf_counter() - started)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"], choices=["tensorflow", "jax"])
    parser.add_argument("--worker", choices=["tensorflow", "jax"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.sizes, args.steps, args.warmup, args.batch)))
        return
    measured: dict[str, dict[str, list[float]]] = {b: {} for b in args.backends}
    for _ in range(args.rounds):
        for backend in args.backends:
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
            done = subprocess.run([sys.executable, __file__, "--worker", backend, "--sizes", *map(str, args.sizes),
                                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch)],
                                  env=env, capture_output=True, text=True, check=True)
            for key, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
                measured[backend].setdefault(key, []).append(value)
    print(f"train steps/s, batch {args.batch}, median of {args.rounds} rounds × {args.steps} steps "
          f"({os.cpu_count()} CPUs)\n")
    print("| size | backend | old step (G(x) twice) | new step (G(x) once) | new/old |")
    print("|---|---|---|---|---|")
    medians = {b: {k: statistics.median(v) for k, v in m.items()} for b, m in measured.items()}
    for size in args.sizes:
        for backend in args.backends:
            old, new = medians[backend][f"{size}/old"], medians[backend][f"{size}/new"]
            print(f"| {size}² | {backend} | {old:.2f} | {new:.2f} | {new / old:.2f}× |")
    if len(args.backends) == 2:
        print("\n| size | new step jax / tensorflow |\n|---|---|")
        for size in args.sizes:
            print(f"| {size}² | {medians['jax'][f'{size}/new'] / medians['tensorflow'][f'{size}/new']:.2f}× |")


if __name__ == "__main__":
    main()
