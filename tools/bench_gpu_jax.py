"""DeepKeyGen networks on Keras 3's JAX backend: train steps/s and ms/key on a GPU.

`keras_dkg.networks` uses only `keras.layers`/`keras.ops`, so the same G and D run under
JAX. This script mirrors `DeepKeyGen.train_step` (D update with eq. 3, then G update with
the non-saturating eq. 2, Adam 2e-4/0.5/0.999) as one jitted stateless JAX step, and
prints one table: steps/s per size and batch, ms per 256² key, and the projected time of
the paper's 20,000-step run. It is for machines without TensorFlow (e.g. a GPU box with
JAX); the TensorFlow trainer is measured by tools/bench_train.py.

    KERAS_BACKEND=jax python tools/bench_gpu_jax.py [--sizes 64 128 256] [--batches 1 16]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dkg.networks import build_discriminator, build_generator  # noqa: E402


def bce(logits, target: float):
    """Mean sigmoid cross-entropy with a constant target (numerically stable form)."""
    return jnp.mean(jnp.maximum(logits, 0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits))))


def make_step(generator, discriminator, g_opt, d_opt):
    def d_loss(d_vars, g_vars, x, y):
        fake, _ = generator.stateless_call(g_vars, [], x, training=True)
        real_logits, _ = discriminator.stateless_call(d_vars, [], y, training=True)
        fake_logits, _ = discriminator.stateless_call(d_vars, [], fake, training=True)
        return bce(real_logits, 1.0) + bce(fake_logits, 0.0)

    def g_loss(g_vars, d_vars, x):
        fake, _ = generator.stateless_call(g_vars, [], x, training=True)
        logits, _ = discriminator.stateless_call(d_vars, [], fake, training=True)
        return bce(logits, 1.0)

    @jax.jit
    def step(state, x, y):
        g_vars, d_vars, g_slots, d_slots = state
        dl, d_grads = jax.value_and_grad(d_loss)(d_vars, g_vars, x, y)
        d_vars, d_slots = d_opt.stateless_apply(d_slots, d_grads, d_vars)
        gl, g_grads = jax.value_and_grad(g_loss)(g_vars, d_vars, x)
        g_vars, g_slots = g_opt.stateless_apply(g_slots, g_grads, g_vars)
        return (g_vars, d_vars, g_slots, d_slots), dl, gl

    return step


def new_training(seed: int):
    """Fresh G, D and Adam(2e-4, 0.5, 0.999) pair under `seed`: (generator, step, state)."""
    keras.utils.set_random_seed(seed)
    generator, discriminator = build_generator(), build_discriminator()
    g_opt, d_opt = (keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.999) for _ in range(2))
    g_opt.build(generator.trainable_variables)
    d_opt.build(discriminator.trainable_variables)
    state = ([v.value for v in generator.trainable_variables], [v.value for v in discriminator.trainable_variables],
             [v.value for v in g_opt.variables], [v.value for v in d_opt.variables])
    return generator, make_step(generator, discriminator, g_opt, d_opt), state


def train_rate(size: int, batch: int, steps: int) -> tuple[float, float, float]:
    _, step, state = new_training(0)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)), jnp.float32)
    y = jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)), jnp.float32)
    state, dl, gl = step(state, x, y)
    jax.block_until_ready(gl)
    started = time.perf_counter()
    for _ in range(steps):
        state, dl, gl = step(state, x, y)
    jax.block_until_ready((state, gl))
    return steps / (time.perf_counter() - started), float(dl), float(gl)


def keygen_ms(size: int, batch: int, repeats: int) -> float:
    generator = build_generator()
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
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(f"keras {keras.__version__} backend {keras.backend.backend()}, jax {jax.__version__}, "
          f"devices {[d.device_kind for d in jax.devices()]}")
    print("| size | batch | train steps/s | images/s | d_loss | g_loss | ms/key (G only) |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for batch in args.batches:
            rate, dl, gl = train_rate(size, batch, args.steps)
            ms = keygen_ms(size, batch, 50)
            print(f"| {size} | {batch} | {rate:.1f} | {rate * batch:.1f} | {dl:.3f} | {gl:.3f} | {ms:.3f} |", flush=True)
            if size == 256 and batch == 1:
                print(f"| projected paper run (20,000 steps at 256², bs 1): {20000 / rate / 60:.1f} min |")


if __name__ == "__main__":
    main()
