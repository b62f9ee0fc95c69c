"""Generator objectives beyond the paper's: ask the keys for what a key needs (docs/key_quality.md).

The paper's loss only asks G's keys to look like the domain. These terms, each off by
default and added to G's loss with its own weight, ask for what a key must do:

* sensitivity: keys of seeds one pixel apart, or of a seed and its v1 nonce perturbation,
  differ like two independent uniform keys (E|K − K'| = 1/3 on [0, 1]: UACI 33.46 %, and
  no correlation);
* uniformity: a flat byte histogram (a soft histogram's KL divergence from uniform);
* unpredictability: an adversarial predictor P that guesses hidden key pixels from the
  others is no better than guessing for uniform bytes (De Bernardi et al. 2018).

Every term is a loss on the generator's raw output; none hashes, whitens or otherwise
post-processes a key, so what is measured afterwards is what G learned. Random draws are
stateless functions of (seed, step, purpose), so --resume continues them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

UNIFORM_MEAN_ABS_DIFF = 1.0 / 3.0  # E|U − U'| for independent U, U' ~ U[0, 1]
UNIFORM_GUESS_MSE = 1.0 / 12.0  # E(U − 1/2)²: the best guess of a uniform byte without information
NONCE_AMPLITUDE = 8.0 / 127.5  # nonce scheme v1: ±8 levels on every seed value (runtime.nonces)
HISTOGRAM_BINS = 32
PREDICTOR_HIDDEN = 0.25  # share of key pixels P has to guess
PURPOSE_PIXEL, PURPOSE_NONCE, PURPOSE_MASK = 32, 33, 34  # stateless streams (model._stream)


@dataclass(frozen=True)
class KeyObjectives:
    """Weights of the key terms in G's loss; all 0 is the paper's objective."""

    sensitivity_weight: float = 0.0
    uniformity_weight: float = 0.0
    predictor_weight: float = 0.0
    seed: int = 0  # keys the stateless draws (pixel, value, nonce noise, predictor mask)

    @property
    def any(self) -> bool:
        return bool(self.sensitivity_weight or self.uniformity_weight or self.predictor_weight)


def to_unit(keys):
    """Generator output in [-1, 1] → [0, 1], the scale of key bytes / 255."""
    return (keys + 1.0) * 0.5


def one_pixel_change(images, seed):
    """`images` with one random pixel per example (all channels: the seeds are gray) set to a random value."""
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    draws = tf.random.stateless_uniform([batch, 3], seed=seed)
    rows = tf.minimum(tf.cast(draws[:, 0] * height, tf.int32), height - 1)
    cols = tf.minimum(tf.cast(draws[:, 1] * width, tf.int32), width - 1)
    mask = tf.one_hot(rows, height)[:, :, None] * tf.one_hot(cols, width)[:, None, :]
    mask = mask[..., None]
    values = (draws[:, 2] * 2.0 - 1.0)[:, None, None, None]
    return images * (1.0 - mask) + mask * values


def nonce_perturbation(images, seed):
    """Nonce scheme v1 in [-1, 1] units: ±8 integer levels on every value, reflected at the ends."""
    levels = tf.floor(tf.random.stateless_uniform(tf.shape(images), seed=seed) * 17.0) - 8.0
    values = images + levels / 127.5
    values = tf.where(values < -1.0, -2.0 - values, values)
    return tf.where(values > 1.0, 2.0 - values, values)


def sensitivity_loss(keys, other_keys):
    """Per-example ½·(relu(1/3 − mean|K − K'|)·3 + corr(K, K')²) on keys in [-1, 1].

    0 for keys that differ like independent uniform keys (mean |Δ| at least 1/3, no
    correlation), 1 for identical keys. The correlation part catches K' = 1 − K, whose
    mean |Δ| is large although K' is K.
    """
    a, b = to_unit(keys), to_unit(other_keys)
    axes = [1, 2, 3]
    gap = tf.nn.relu(UNIFORM_MEAN_ABS_DIFF - tf.reduce_mean(tf.abs(a - b), axis=axes)) / UNIFORM_MEAN_ABS_DIFF
    a = a - tf.reduce_mean(a, axis=axes, keepdims=True)
    b = b - tf.reduce_mean(b, axis=axes, keepdims=True)
    covariance = tf.reduce_mean(a * b, axis=axes)
    variances = tf.reduce_mean(a * a, axis=axes) * tf.reduce_mean(b * b, axis=axes)
    correlation_sq = tf.square(covariance) / (variances + 1e-12)
    return 0.5 * (gap + correlation_sq)


def soft_histogram(keys, bins: int = HISTOGRAM_BINS):
    """Per-example differentiable histogram (triangular kernel one bin wide) of keys in [-1, 1], summing to 1."""
    values = tf.reshape(to_unit(keys), [tf.shape(keys)[0], -1, 1])
    centres = (tf.range(bins, dtype=tf.float32) + 0.5) / bins
    weights = tf.nn.relu(1.0 - tf.abs(values - centres) * bins)  # each value splits between its 2 nearest bins
    counts = tf.reduce_sum(weights, axis=1)
    return counts / tf.reduce_sum(counts, axis=1, keepdims=True)


def uniformity_loss(keys, bins: int = HISTOGRAM_BINS):
    """Per-example KL(soft histogram ‖ uniform) = log(bins) − its entropy, in nats: 0 when flat."""
    histogram = soft_histogram(keys, bins)
    return tf.reduce_sum(histogram * tf.math.log(histogram * bins + 1e-12), axis=1)


def hidden_mask(shape, seed):
    """1 where P must guess: a random PREDICTOR_HIDDEN share of pixels (all channels), shape (B, H, W, 1)."""
    draws = tf.random.stateless_uniform([shape[0], shape[1], shape[2], 1], seed=seed)
    return tf.cast(draws < PREDICTOR_HIDDEN, tf.float32)


def build_predictor(name: str = "predictor") -> keras.Model:
    """P: the visible key in [0, 1] with hidden pixels zeroed, plus the mask → guesses in [0, 1]."""
    inputs = keras.Input(shape=(None, None, 4), name="masked_key")
    x = inputs
    for index, dilation in enumerate((1, 2, 1)):
        x = keras.layers.Conv2D(32, 3, padding="same", dilation_rate=dilation, activation="relu",
                                name=f"{name}_conv{index}")(x)
    outputs = keras.layers.Conv2D(3, 1, activation="sigmoid", name=f"{name}_guess", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def predictor_error(predictor: keras.Model, keys, mask):
    """Per-example mean squared error of P's guesses at the hidden pixels, keys in [-1, 1]."""
    unit = to_unit(keys)
    guesses = predictor(tf.concat([unit * (1.0 - mask), mask], axis=-1), training=True)
    squared = tf.square(guesses - unit) * mask
    hidden = tf.reduce_sum(mask, axis=[1, 2, 3]) * 3.0
    return tf.reduce_sum(squared, axis=[1, 2, 3]) / tf.maximum(hidden, 1.0)


def unpredictability_loss(error):
    """G's term from P's error: relu(1/12 − error)·12, 0 once P does no better than guessing uniform bytes."""
    return tf.nn.relu(UNIFORM_GUESS_MSE - error) / UNIFORM_GUESS_MSE
