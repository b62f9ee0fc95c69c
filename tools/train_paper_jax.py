"""Paper-scale DeepKeyGen training on a GPU with Keras 3's JAX backend (no TensorFlow).

The production trainer is `python -m keras_dkg.fit` (TensorFlow, tf.distribute). This
script exists for GPU machines that have JAX but no TensorFlow: it trains the same
networks (keras_dkg.networks) with the same step as `DeepKeyGen.train_step` (see
tools/bench_gpu_jax.py), on the embedded source slices and the high-security chaotic
domain (keras_dkg.domains) at the paper's settings (256², batch 1, Adam 2e-4/0.5/0.999,
20,000 steps), once per `--seeds` value. It writes each generator's weights
(`generator_seed{N}.weights.h5`, loadable into `keras_dkg.networks.build_generator()` on
any backend) and the key made from the held-back CT seed, and prints losses and key
entropies as it goes.

    KERAS_BACKEND=jax python tools/train_paper_jax.py --out DIR [--steps 20000] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_gpu_jax import new_training  # noqa: E402

from keras_dkg import embedded  # noqa: E402
from keras_dkg.analysis.metrics import entropy  # noqa: E402
from keras_dkg.domains import ChaoticCipher  # noqa: E402
from keras_dkg.runtime.imageio import read_image, write_image  # noqa: E402
from keras_dkg.runtime.preprocess import preprocess, preprocess_uint8, quantize_key  # noqa: E402


def order(count: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Concatenated permutations, one index per step (batch 1), as keras_dkg.data does."""
    return np.concatenate([rng.permutation(count) for _ in range(-(-steps // count))])[:steps]


def train_one(seed: int, source: np.ndarray, domain: np.ndarray, seed_pixels: np.ndarray, steps: int,
              log_every: int, out: Path) -> None:
    generator, step, state = new_training(seed)
    source_rng, domain_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    source_order, domain_order = order(len(source), steps, source_rng), order(len(domain), steps, domain_rng)
    source_dev, domain_dev = jnp.asarray(source), jnp.asarray(domain)
    forward = jax.jit(lambda v, x: generator.stateless_call(v, [], x, training=False)[0])

    def key_now(g_vars) -> np.ndarray:
        return quantize_key(np.asarray(forward(g_vars, jnp.asarray(seed_pixels[None])))[0])

    started = time.perf_counter()
    for index in range(steps):
        x = source_dev[source_order[index]][None].astype(jnp.float32) / 127.5 - 1.0
        y = domain_dev[domain_order[index]][None].astype(jnp.float32) / 127.5 - 1.0
        state, d_loss, g_loss = step(state, x, y)
        if (index + 1) % log_every == 0:
            key = key_now(state[0])
            print(f"seed {seed} step {index + 1}: d_loss {float(d_loss):.4f} g_loss {float(g_loss):.4f} "
                  f"key entropy {entropy(key):.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    for variable, value in zip(generator.trainable_variables, state[0], strict=True):
        variable.assign(value)
    generator.save_weights(out / f"generator_seed{seed}.weights.h5")
    key = key_now(state[0])
    write_image(out / f"key_seed{seed}.png", key, overwrite=True)
    print(f"seed {seed}: {steps} steps in {time.perf_counter() - started:.0f} s; final key entropy {entropy(key):.4f}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--domain-seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=2500)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"keras {keras.__version__} ({keras.backend.backend()}), jax {jax.__version__}, {jax.devices()}")
    source = np.stack([preprocess_uint8(s, args.size) for s in embedded.source_slices()])
    cipher = ChaoticCipher(seed=args.domain_seed)
    domain = np.stack([cipher.encrypt(p, i) for i, p in enumerate(source)])
    print(f"source {source.shape}, domain mean entropy {np.mean([entropy(d) for d in domain]):.4f}", flush=True)
    seed_pixels = preprocess(read_image(embedded.seed_path()), args.size)
    for seed in args.seeds:
        train_one(seed, source, domain, seed_pixels, args.steps, args.log_every, out)


if __name__ == "__main__":
    main()
