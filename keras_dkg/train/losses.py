"""Every loss of a train step, written once with `keras.ops` for the TensorFlow and JAX steps.

The paper's eqs. (2)–(3) (`GANLoss`), the discriminator aids (instance noise, CycleGAN's
image pool, R1) and the key terms beyond the paper (docs/key_quality.md):

* sensitivity: keys of seeds one pixel apart, or of a seed and its v1 nonce perturbation,
  differ like two independent uniform keys (E|K − K'| = 1/3 on [0, 1]: UACI 33.46 %, and
  no correlation);
* uniformity: a flat byte histogram (a soft histogram's KL divergence from uniform);
* unpredictability: an adversarial predictor P that guesses hidden key pixels from the
  others is no better than guessing for uniform bytes (De Bernardi et al. 2018).

Every function is per example and takes its random draws as arguments (made by
`keras_dkg.train.streams`, stateless functions of (seed, step, purpose)), so the losses
hold no state and no backend: the steps in `step_tf` / `step_jax` differ only in how they
take gradients. None hashes, whitens or otherwise post-processes a key: what is measured
afterwards is what G learned.
"""

from __future__ import annotations

from dataclasses import dataclass

from keras import ops

from keras_dkg.train.config import LOSS_KINDS

UNIFORM_MEAN_ABS_DIFF = 1.0 / 3.0  # E|U − U'| for independent U, U' ~ U[0, 1]
UNIFORM_GUESS_MSE = 1.0 / 12.0  # E(U − 1/2)²: the best guess of a uniform byte without information
HISTOGRAM_BINS = 32
PREDICTOR_HIDDEN = 0.25  # share of key pixels P has to guess
IMAGE_AXES = (1, 2, 3)


class GANLoss:
    """One object per loss kind, so a step never branches on it (pix2pix's GANLoss).

    Eq. (3): D maximises log D(y) + log(1 − D(G(x))); eq. (2): G minimises
    log(1 − D(G(x))), trained (Goodfellow et al.) in the non-saturating form −log D(G(x)).
    `lsgan` swaps in CycleGAN's least-squares losses.
    """

    def __init__(self, kind: str = "bce"):
        if kind not in LOSS_KINDS:
            raise ValueError(f"loss must be one of {LOSS_KINDS}, got {kind!r}")
        self.kind = kind

    def _per_example(self, logits, target: float):
        if self.kind == "bce":  # sigmoid cross-entropy, in TensorFlow's numerically stable form
            values = ops.relu(logits) - logits * target + ops.log1p(ops.exp(-ops.abs(logits)))
        else:
            values = ops.square(logits - target)
        return ops.mean(values, axis=IMAGE_AXES)

    def discriminator(self, real_logits, fake_logits):
        """Per-example D loss: real → 1, fake → 0."""
        return self._per_example(real_logits, 1.0) + self._per_example(fake_logits, 0.0)

    def generator(self, fake_logits):
        """Per-example non-saturating G loss: fake → 1."""
        return self._per_example(fake_logits, 1.0)

    def says_real(self, logits):
        """D's decision per patch: sigmoid(logit) > 0.5 for BCE, output > 0.5 for LSGAN."""
        threshold = 0.0 if self.kind == "bce" else 0.5
        return ops.cast(logits > threshold, "float32")

    def accuracies(self, real_logits, fake_logits) -> dict:
        """Per-example share of patches D gets right, on the reals and on the fakes."""
        return {"d_acc_real": ops.mean(self.says_real(real_logits), axis=IMAGE_AXES),
                "d_acc_fake": ops.mean(1.0 - self.says_real(fake_logits), axis=IMAGE_AXES)}


@dataclass(frozen=True)
class Stabilizers:
    """Discriminator aids; the defaults are the paper's training (none of them)."""

    d_history: int = 0  # image pool size (CycleGAN uses 50); 0 = D sees only the newest fakes
    instance_noise: float = 0.0  # sigma of N(0, sigma²) added to D's inputs, in [-1, 1] units
    noise_anneal_steps: int = 1  # sigma falls linearly to 0 at this step
    r1_gamma: float = 0.0  # weight of (gamma/2)·||∇x D(real)||² in D's loss
    seed: int = 0  # keys the stateless draws of the pool and the noise

    def noise_sigma(self, step):
        """sigma·max(0, 1 − step/noise_anneal_steps) as a float32 scalar."""
        fraction = ops.cast(step, "float32") / float(self.noise_anneal_steps)
        return self.instance_noise * ops.maximum(0.0, 1.0 - fraction)


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


def add_noise(images, sigma, normal_draws):
    """D's input with instance noise: images + sigma·N(0, 1) draws."""
    return images + sigma * normal_draws


def r1_per_example(input_gradients):
    """||∇x Σ_patches D(x)||² per example (Mescheder et al. 2018), from the gradients at the reals."""
    return ops.sum(ops.square(input_gradients), axis=IMAGE_AXES)


def pool_query(images, buffer, count, draws):
    """CycleGAN's image history (Shrivastava et al. 2017), as a pure function of its state.

    Until the pool (`buffer`, N×H×W×3, of which `count` are filled) is full every fake is
    stored and passed through; afterwards each fake is, with probability 1/2 (draws[i, 0]),
    swapped for the stored one at slot ⌊draws[i, 1]·N⌋, which it replaces, else passed
    through. Returns (the batch D trains on, new buffer, new count); images are taken in
    order, so two fakes of one batch see each other's writes.
    """
    size = buffer.shape[0]
    outputs = []
    slots = ops.arange(size)
    for index in range(images.shape[0]):
        image = images[index]
        full = count >= size
        swap = ops.logical_and(full, draws[index, 0] < 0.5)
        chosen = ops.minimum(ops.cast(draws[index, 1] * size, "int32"), size - 1)
        slot = ops.where(full, chosen, ops.minimum(count, size - 1))
        old = ops.take(buffer, slot, axis=0)
        write = ops.logical_or(ops.logical_not(full), swap)
        mask = ops.cast(ops.logical_and(ops.equal(slots, slot), write), buffer.dtype)[:, None, None, None]
        buffer = buffer * (1.0 - mask) + mask * image[None]
        outputs.append(ops.where(swap, old, image))
        count = count + ops.cast(ops.logical_not(full), count.dtype)
    return ops.stack(outputs), buffer, count


def to_unit(keys):
    """Generator output in [-1, 1] → [0, 1], the scale of key bytes / 255."""
    return (keys + 1.0) * 0.5


def one_pixel_change(images, draws):
    """`images` with one pixel per example (all channels: the seeds are gray) set to a new value.

    draws: B×3 uniform [0, 1): row, column, value.
    """
    height, width = images.shape[1], images.shape[2]
    rows = ops.minimum(ops.cast(draws[:, 0] * height, "int32"), height - 1)
    cols = ops.minimum(ops.cast(draws[:, 1] * width, "int32"), width - 1)
    mask = ops.one_hot(rows, height)[:, :, None] * ops.one_hot(cols, width)[:, None, :]
    mask = mask[..., None]
    values = (draws[:, 2] * 2.0 - 1.0)[:, None, None, None]
    return images * (1.0 - mask) + mask * values


def nonce_perturbation(images, draws):
    """Nonce scheme v1 in [-1, 1] units: ±8 integer levels on every value, reflected at the ends.

    draws: uniform [0, 1) of the images' shape.
    """
    levels = ops.floor(draws * 17.0) - 8.0
    values = images + levels / 127.5
    values = ops.where(values < -1.0, -2.0 - values, values)
    return ops.where(values > 1.0, 2.0 - values, values)


def sensitivity_loss(keys, other_keys):
    """Per-example ½·(relu(1/3 − mean|K − K'|)·3 + corr(K, K')²) on keys in [-1, 1].

    0 for keys that differ like independent uniform keys (mean |Δ| at least 1/3, no
    correlation), 1 for identical keys. The correlation part catches K' = 1 − K, whose
    mean |Δ| is large although K' is K.
    """
    a, b = to_unit(keys), to_unit(other_keys)
    gap = ops.relu(UNIFORM_MEAN_ABS_DIFF - ops.mean(ops.abs(a - b), axis=IMAGE_AXES)) / UNIFORM_MEAN_ABS_DIFF
    a = a - ops.mean(a, axis=IMAGE_AXES, keepdims=True)
    b = b - ops.mean(b, axis=IMAGE_AXES, keepdims=True)
    covariance = ops.mean(a * b, axis=IMAGE_AXES)
    variances = ops.mean(a * a, axis=IMAGE_AXES) * ops.mean(b * b, axis=IMAGE_AXES)
    correlation_sq = ops.square(covariance) / (variances + 1e-12)
    return 0.5 * (gap + correlation_sq)


def soft_histogram(keys, bins: int = HISTOGRAM_BINS):
    """Per-example differentiable histogram (triangular kernel one bin wide) of keys in [-1, 1], summing to 1."""
    values = ops.reshape(to_unit(keys), (keys.shape[0], -1, 1))
    centres = (ops.arange(bins, dtype="float32") + 0.5) / bins
    weights = ops.relu(1.0 - ops.abs(values - centres) * bins)  # each value splits between its 2 nearest bins
    counts = ops.sum(weights, axis=1)
    return counts / ops.sum(counts, axis=1, keepdims=True)


def uniformity_loss(keys, bins: int = HISTOGRAM_BINS):
    """Per-example KL(soft histogram ‖ uniform) = log(bins) − its entropy, in nats: 0 when flat."""
    histogram = soft_histogram(keys, bins)
    return ops.sum(histogram * ops.log(histogram * bins + 1e-12), axis=1)


def hidden_mask(draws):
    """1 where P must guess: a random PREDICTOR_HIDDEN share of pixels; draws B×H×W×1 uniform."""
    return ops.cast(draws < PREDICTOR_HIDDEN, "float32")


def predictor_inputs(keys, mask):
    """What P sees: the key in [0, 1] with the hidden pixels zeroed, and the mask."""
    return ops.concatenate([to_unit(keys) * (1.0 - mask), mask], axis=-1)


def predictor_error(guesses, keys, mask):
    """Per-example mean squared error of P's guesses at the hidden pixels, keys in [-1, 1]."""
    squared = ops.square(guesses - to_unit(keys)) * mask
    hidden = ops.sum(mask, axis=IMAGE_AXES) * 3.0
    return ops.sum(squared, axis=IMAGE_AXES) / ops.maximum(hidden, 1.0)


def unpredictability_loss(error):
    """G's term from P's error: relu(1/12 − error)·12, 0 once P does no better than guessing uniform bytes."""
    return ops.relu(UNIFORM_GUESS_MSE - error) / UNIFORM_GUESS_MSE


def key_terms(goals: KeyObjectives, keys, batch: int, predictor_guesses=None, mask=None) -> dict:
    """The unweighted per-example key terms of G's loss for this step's keys.

    `keys` holds the batch's keys first, then (with sensitivity) the keys of its
    one-pixel-changed and its nonce-perturbed seeds; `predictor_guesses` are P's guesses
    for the batch's keys under `mask`.
    """
    fake = keys[:batch]
    terms = {}
    if goals.sensitivity_weight:
        terms["sensitivity"] = 0.5 * (sensitivity_loss(fake, keys[batch:2 * batch])
                                      + sensitivity_loss(fake, keys[2 * batch:]))
    if goals.uniformity_weight:
        terms["uniformity"] = uniformity_loss(fake)
    if goals.predictor_weight:
        terms["unpredictability"] = unpredictability_loss(predictor_error(predictor_guesses, fake, mask))
    return terms


def weighted_total(goals: KeyObjectives, adversarial, terms: dict):
    """Per-example G loss: eq. (2) plus each key term times its weight."""
    weights = {"sensitivity": goals.sensitivity_weight, "uniformity": goals.uniformity_weight,
               "unpredictability": goals.predictor_weight}
    total = adversarial
    for name, value in terms.items():
        total = total + weights[name] * value
    return total
