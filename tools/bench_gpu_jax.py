"""Training and key speed on Keras 3's JAX backend (a GPU box without TensorFlow), through the library.

Two numbers per size and batch: the jitted step alone (`keras_dkg.train.step_jax.make_step`,
the step `python -m keras_dkg.fit --backend jax` runs) and a real `train()` run of
`--run-steps` steps (data on the device, metrics fetched every 10 steps, one checkpoint and
sample key at the end; its steps/s counts compilation and that checkpoint). Plus ms per key
of the generator alone and the projected time of the paper's 20,000-step run.

    KERAS_BACKEND=jax python tools/bench_gpu_jax.py [--sizes 64 128 256] [--batches 1 16] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dkg.train import TrainConfig, step_jax, train  # noqa: E402
from keras_dkg.train.loop import build_model  # noqa: E402


def step_rate(size: int, batch: int, steps: int) -> tuple[float, dict]:
    """Steps/s of the jitted step alone on random images, and its last metrics."""
    model = build_model(TrainConfig(image_size=size, batch_size=batch, backend="jax"))
    step = step_jax.make_step(model, augment=False)
    rng = np.random.default_rng(0)
    pixels = jax.device_put(rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8))
    index = jnp.arange(batch, dtype=jnp.int32) % 16
    state = step_jax.state_of(model)
    state, metrics = step(state, pixels, pixels, index, index, None, jnp.int32(0))
    jax.block_until_ready(metrics)
    started = time.perf_counter()
    for number in range(steps):
        state, metrics = step(state, pixels, pixels, index, index, None, jnp.int32(number))
    jax.block_until_ready((state, metrics))
    return steps / (time.perf_counter() - started), {k: float(v) for k, v in metrics.items()}


def run_rate(size: int, batch: int, steps: int) -> float:
    """Steps/s that `train()` itself reports for a fresh run on the embedded data."""
    with tempfile.TemporaryDirectory() as folder:
        result = train(TrainConfig(out=f"{folder}/run", image_size=size, batch_size=batch, steps=steps,
                                   checkpoint_every=steps, backend="jax"))
    return result.steps_per_second or 0.0


def keygen_ms(size: int, batch: int, repeats: int) -> float:
    generator = build_model(TrainConfig(image_size=size, backend="jax")).generator
    variables = [v.value for v in generator.trainable_variables]
    forward = jax.jit(lambda v, x: generator.stateless_call(v, [], x, training=False)[0])
    x = jnp.zeros((batch, size, size, 3), jnp.float32)
    jax.block_until_ready(forward(variables, x))
    started = time.perf_counter()
    for _ in range(repeats):
        out = forward(variables, x)
    jax.block_until_ready(out)
    return (time.perf_counter() - started) / repeats / batch * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--steps", type=int, default=200, help="timed steps of the step alone")
    parser.add_argument("--run-steps", type=int, default=500, help="steps of each real train() run (0: skip)")
    args = parser.parse_args()
    print(f"keras {keras.__version__} backend {keras.backend.backend()}, jax {jax.__version__}, "
          f"devices {[d.device_kind for d in jax.devices()]}")
    print("| size | batch | step steps/s | train() steps/s | images/s | d_loss | g_loss | ms/key (G only) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for batch in args.batches:
            rate, metrics = step_rate(size, batch, args.steps)
            run = run_rate(size, batch, args.run_steps) if args.run_steps else float("nan")
            ms = keygen_ms(size, batch, 50)
            print(f"| {size} | {batch} | {rate:.1f} | {run:.1f} | {rate * batch:.1f} | {metrics['d_loss']:.3f} | "
                  f"{metrics['g_loss']:.3f} | {ms:.3f} |", flush=True)
            if size == 256 and batch == 1:
                print(f"| projected paper run (20,000 steps at 256², bs 1): {20000 / rate / 60:.1f} min |")


if __name__ == "__main__":
    main()
