"""Stateless random draws keyed by (run seed, step, purpose), on the active Keras backend.

A draw depends on nothing but its key, so a resumed run continues every stream exactly
and no step carries random state. `keras.random` takes only int seeds or a stateful
SeedGenerator, so the keys are made with the backend's own stateless RNG: TensorFlow's
`stateless_fold_in` (the streams of the runs recorded before the JAX backend existed) or
JAX's `fold_in`. The two backends' bits differ; tests compare them on the paper's recipe,
whose step draws nothing.
"""

from __future__ import annotations

import keras

#: stream purposes; 16 + i: the image pool's draw for example i
NOISE_REAL, NOISE_FAKE, NOISE_G = 0, 1, 2
POOL = 16
PIXEL, NONCE, MASK = 32, 33, 34


def _tensorflow():
    import tensorflow as tf

    return tf


def key(seed: int, step, purpose: int):
    """The stream key of one (run seed, step, purpose)."""
    if keras.config.backend() == "jax":
        import jax

        return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), purpose), step)
    tf = _tensorflow()
    folded = tf.random.experimental.stateless_fold_in(tf.constant([seed, purpose], tf.int64), step)
    return tf.cast(folded, tf.int64)


def uniform(shape, stream_key):
    """float32 uniform [0, 1) of `shape` from `stream_key`."""
    if keras.config.backend() == "jax":
        import jax

        return jax.random.uniform(stream_key, tuple(shape), dtype="float32")
    return _tensorflow().random.stateless_uniform(shape, seed=stream_key)


def normal(shape, stream_key):
    """float32 N(0, 1) of `shape` from `stream_key`."""
    if keras.config.backend() == "jax":
        import jax

        return jax.random.normal(stream_key, tuple(shape), dtype="float32")
    return _tensorflow().random.stateless_normal(shape, seed=stream_key)


def pool_draws(seed: int, step, batch: int):
    """batch×2 uniform draws of the image pool, one stream per example (as before the refactor)."""
    rows = [uniform([2], key(seed, step, POOL + index)) for index in range(batch)]
    return keras.ops.stack(rows)
