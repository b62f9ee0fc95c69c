"""The DeepKeyGen GAN: generator G and discriminator D trained with eqs. (1)–(3).

Eq. (3), D maximises log D(y) + log(1 − D(G(x))); eq. (2), G minimises
log(1 − D(G(x))). As usual (Goodfellow et al.) G is trained with the non-saturating form
−log D(G(x)), whose fixed point is the same but whose gradients do not vanish early.
`loss="lsgan"` swaps in the least-squares losses CycleGAN uses. D and G are updated
alternately in every step, D first, as in the paper's Algorithm 1.

Beyond the paper, `KeyObjectives` (keras_dkg.objectives) may add key terms to G's loss and
an adversarial predictor P, updated between D and G; with all weights 0 (the default) the
step is exactly the paper's.

Losses are averaged per replica with `tf.nn.compute_average_loss`, so gradients summed
across a `tf.distribute` strategy's replicas equal those of one device with the global
batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_dkg import objectives as obj
from keras_dkg.networks import build_discriminator, build_generator

LEARNING_RATE = 2e-4
BETA_1 = 0.5
BETA_2 = 0.999
LOSS_KINDS = ("bce", "lsgan")


def default_optimizer(learning_rate: float = LEARNING_RATE, beta_1: float = BETA_1, beta_2: float = BETA_2):
    """Adam with the paper's settings (2e-4, 0.5, 0.999)."""
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2)


class GANLoss:
    """One object per loss kind, so `train_step` never branches on it (pix2pix's GANLoss)."""

    def __init__(self, kind: str = "bce"):
        if kind not in LOSS_KINDS:
            raise ValueError(f"loss must be one of {LOSS_KINDS}, got {kind!r}")
        self.kind = kind

    def _per_example(self, logits, target: float):
        if self.kind == "bce":
            labels = tf.fill(tf.shape(logits), target)
            values = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        else:
            values = tf.square(logits - target)
        return tf.reduce_mean(values, axis=[1, 2, 3])

    def discriminator(self, real_logits, fake_logits):
        """Per-example D loss: real → 1, fake → 0."""
        return self._per_example(real_logits, 1.0) + self._per_example(fake_logits, 0.0)

    def generator(self, fake_logits):
        """Per-example non-saturating G loss: fake → 1."""
        return self._per_example(fake_logits, 1.0)

    def says_real(self, logits):
        """D's decision per patch: sigmoid(logit) > 0.5 for BCE, output > 0.5 for LSGAN."""
        threshold = 0.0 if self.kind == "bce" else 0.5
        return tf.cast(logits > threshold, tf.float32)


@dataclass(frozen=True)
class Stabilizers:
    """Discriminator aids; the defaults are the paper's training (none of them)."""

    d_history: int = 0  # image pool size (CycleGAN uses 50); 0 = D sees only the newest fakes
    instance_noise: float = 0.0  # sigma of N(0, sigma²) added to D's inputs, in [-1, 1] units
    noise_anneal_steps: int = 1  # sigma falls linearly to 0 at this step
    r1_gamma: float = 0.0  # weight of (gamma/2)·||∇x D(real)||² in D's loss
    seed: int = 0  # keys the stateless draws of the pool and the noise

    def noise_sigma(self, step):
        """sigma·max(0, 1 − step/noise_anneal_steps) as a float32 tensor."""
        fraction = tf.cast(step, tf.float32) / float(self.noise_anneal_steps)
        return self.instance_noise * tf.maximum(0.0, 1.0 - fraction)


def _stream(seed: int, step, purpose: int):
    """A stateless-RNG seed for one (run seed, step, purpose): independent streams, no state."""
    key = tf.random.experimental.stateless_fold_in(tf.constant([seed, purpose], tf.int64), step)
    return tf.cast(key, tf.int64)


class ImagePool:
    """CycleGAN's history of generated images (Shrivastava et al. 2017) for D's update.

    Until the pool is full every fake is stored and passed through; afterwards each fake is,
    with probability 1/2, swapped for a random stored one (which it replaces), else passed
    through. The buffer is per replica (ON_READ), checkpointed through `variables`.
    """

    def __init__(self, size: int, image_shape: tuple[int, int, int], seed: int = 0):
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got {size}")
        self.size = int(size)
        self.seed = int(seed)
        sync = {"synchronization": tf.VariableSynchronization.ON_READ,
                "aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA, "trainable": False}
        self.buffer = tf.Variable(tf.zeros((self.size, *image_shape), tf.float32), name="pool_images", **sync)
        self.count = tf.Variable(0, dtype=tf.int32, name="pool_count", **sync)

    @property
    def variables(self) -> list[tf.Variable]:
        return [self.buffer, self.count]

    def query(self, images, step):
        """The batch D is trained on: `images` with some replaced by older fakes."""
        outputs = []
        for index in range(images.shape[0]):
            image = images[index]
            draw = tf.random.stateless_uniform([2], seed=_stream(self.seed, step, 16 + index))
            outputs.append(tf.cond(self.count < self.size, lambda image=image: self._insert(image),
                                   lambda image=image, draw=draw: self._maybe_swap(image, draw)))
        return tf.stack(outputs)

    def _insert(self, image):
        self.buffer.scatter_nd_update([[self.count]], image[None])
        with tf.control_dependencies([self.count.assign_add(1)]):
            return tf.identity(image)

    def _maybe_swap(self, image, draw):
        def swap():
            slot = tf.minimum(tf.cast(draw[1] * self.size, tf.int32), self.size - 1)
            old = tf.identity(self.buffer[slot])
            with tf.control_dependencies([old]):
                update = self.buffer.scatter_nd_update([[slot]], image[None])
            with tf.control_dependencies([update]):
                return tf.identity(old)
        return tf.cond(draw[0] < 0.5, swap, lambda: tf.identity(image))


def r1_penalty(discriminator: keras.Model, real):
    """Per-example ||∇x Σ_patches D(x)||² at the real images (Mescheder et al. 2018), and D(real).

    Returned with the logits so D runs once on the reals; differentiable again (the caller's
    tape takes its gradient with respect to D's weights).
    """
    with tf.GradientTape() as tape:
        tape.watch(real)
        logits = discriminator(real, training=True)
        total = tf.reduce_sum(logits)
    gradients = tape.gradient(total, real)
    return tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3]), logits


class DeepKeyGen(keras.Model):
    """G and D with a custom `train_step`; `model(x)` runs the generator."""

    def __init__(self, generator: keras.Model | None = None, discriminator: keras.Model | None = None,
                 num_residual_blocks: int = 6, d_spectral_norm: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator or build_generator(num_residual_blocks)
        self.discriminator = discriminator or build_discriminator(spectral_norm=d_spectral_norm)

    def call(self, inputs, training: bool = False):
        return self.generator(inputs, training=training)

    def compile(self, g_optimizer=None, d_optimizer=None, loss: str = "bce",
                stabilizers: Stabilizers | None = None, image_shape: tuple[int, int, int] | None = None,
                objectives: obj.KeyObjectives | None = None, p_optimizer=None, **kwargs):
        """`image_shape` (H, W, 3) is needed only for the image pool's buffer.

        `p_optimizer` (the predictor's, when `objectives.predictor_weight`) defaults to Adam
        with G's learning rate and betas.
        """
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer or default_optimizer()
        self.d_optimizer = d_optimizer or default_optimizer()
        self.gan_loss = GANLoss(loss)
        self.stabilizers = stabilizers or Stabilizers()
        self.pool = None
        if self.stabilizers.d_history:
            if image_shape is None:
                raise ValueError("an image pool (d_history > 0) needs image_shape")
            self.pool = ImagePool(self.stabilizers.d_history, image_shape, self.stabilizers.seed)
        self.objectives = objectives or obj.KeyObjectives()
        self.predictor = self.p_optimizer = None
        if self.objectives.predictor_weight:
            self.predictor = obj.build_predictor()
            g_opt = self.g_optimizer
            self.p_optimizer = p_optimizer or default_optimizer(
                float(g_opt.learning_rate), float(g_opt.beta_1), float(g_opt.beta_2))
        names = ["g_loss", "d_loss", "d_acc_real", "d_acc_fake"]
        names += ["r1"] if self.stabilizers.r1_gamma else []
        names += ["noise_sigma"] if self.stabilizers.instance_noise else []
        names += ["sensitivity"] if self.objectives.sensitivity_weight else []
        names += ["uniformity"] if self.objectives.uniformity_weight else []
        names += ["p_error", "unpredictability"] if self.objectives.predictor_weight else []
        self.tracked = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def state_variables(self) -> list[tf.Variable]:
        """Training state outside G, D and their optimizers, for checkpoints: the image pool, then
        the predictor's weights and its optimizer's slots (in that fixed order)."""
        state = [] if getattr(self, "pool", None) is None else list(self.pool.variables)
        if getattr(self, "predictor", None) is not None:
            state += [*self.predictor.weights, *self.p_optimizer.variables]
        return state

    @property
    def metrics(self):
        return list(getattr(self, "tracked", {}).values())

    def build_optimizers(self) -> None:
        """Create optimizer slots eagerly, so a checkpoint can be restored before step 1."""
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        if self.predictor is not None:
            self.p_optimizer.build(self.predictor.trainable_variables)

    def _noisy(self, images, step, purpose: int):
        """D's input with this step's instance noise (unchanged when the noise is off)."""
        if not self.stabilizers.instance_noise:
            return images
        noise = tf.random.stateless_normal(tf.shape(images), seed=_stream(self.stabilizers.seed, step, purpose))
        return images + self.stabilizers.noise_sigma(step) * noise

    def train_step(self, data):
        source, target = data
        aids = self.stabilizers
        step = tf.identity(self.d_optimizer.iterations)
        with tf.GradientTape() as d_tape:
            fake = self.generator(source, training=True)
            generated = fake
            if self.pool is not None:
                fake = self.pool.query(tf.stop_gradient(fake), step)
            real = self._noisy(target, step, 0)
            if aids.r1_gamma:
                r1, real_logits = r1_penalty(self.discriminator, real)
            else:
                real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(self._noisy(fake, step, 1), training=True)
            d_per_example = self.gan_loss.discriminator(real_logits, fake_logits)
            if aids.r1_gamma:
                d_per_example = d_per_example + 0.5 * aids.r1_gamma * r1
            d_loss = tf.nn.compute_average_loss(d_per_example)
        d_grads = d_tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables, strict=True))

        terms: dict = {}
        if self.objectives.any:
            g_grads, g_per_example = self._objective_g_step(source, tf.stop_gradient(generated), step, terms)
        else:
            g_grads, g_per_example = self._paper_g_step(source, step)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables, strict=True))

        says_real = self.gan_loss.says_real
        self.tracked["g_loss"].update_state(g_per_example)
        self.tracked["d_loss"].update_state(d_per_example)
        self.tracked["d_acc_real"].update_state(tf.reduce_mean(says_real(real_logits), axis=[1, 2, 3]))
        self.tracked["d_acc_fake"].update_state(tf.reduce_mean(1.0 - says_real(fake_logits), axis=[1, 2, 3]))
        if aids.r1_gamma:
            self.tracked["r1"].update_state(r1)
        if aids.instance_noise:
            self.tracked["noise_sigma"].update_state(aids.noise_sigma(step))
        for name, values in terms.items():
            self.tracked[name].update_state(values)
        return {name: metric.result() for name, metric in self.tracked.items()}

    def _paper_g_step(self, source, step):
        """G's gradients for eq. (2) alone (the paper's step), and the per-example G loss."""
        with tf.GradientTape() as g_tape:
            fake = self.generator(source, training=True)
            g_per_example = self.gan_loss.generator(self.discriminator(self._noisy(fake, step, 2), training=True))
            g_loss = tf.nn.compute_average_loss(g_per_example)
        return g_tape.gradient(g_loss, self.generator.trainable_variables), g_per_example

    def _objective_g_step(self, source, generated, step, terms: dict):
        """P's update on this step's (pre-update) keys, then G's gradients for eq. (2) plus the key terms.

        The per-example adversarial G loss is returned (logged as g_loss, comparable with the
        paper's runs); each key term's unweighted value goes into `terms` for the metrics.
        """
        goals = self.objectives
        if self.predictor is not None:
            mask = obj.hidden_mask(tf.shape(source), _stream(goals.seed, step, obj.PURPOSE_MASK))
            with tf.GradientTape() as p_tape:
                p_error = obj.predictor_error(self.predictor, generated, mask)
                p_loss = tf.nn.compute_average_loss(p_error)
            p_grads = p_tape.gradient(p_loss, self.predictor.trainable_variables)
            self.p_optimizer.apply_gradients(zip(p_grads, self.predictor.trainable_variables, strict=True))
            terms["p_error"] = p_error
        batch = tf.shape(source)[0]
        inputs = source
        if goals.sensitivity_weight:  # one forward pass for the seed and its two neighbours
            inputs = tf.concat([source, obj.one_pixel_change(source, _stream(goals.seed, step, obj.PURPOSE_PIXEL)),
                                obj.nonce_perturbation(source, _stream(goals.seed, step, obj.PURPOSE_NONCE))], 0)
        with tf.GradientTape() as g_tape:
            keys = self.generator(inputs, training=True)
            fake = keys[:batch]
            g_per_example = self.gan_loss.generator(self.discriminator(self._noisy(fake, step, 2), training=True))
            total = g_per_example
            if goals.sensitivity_weight:
                terms["sensitivity"] = 0.5 * (obj.sensitivity_loss(fake, keys[batch:2 * batch])
                                              + obj.sensitivity_loss(fake, keys[2 * batch:]))
                total = total + goals.sensitivity_weight * terms["sensitivity"]
            if goals.uniformity_weight:
                terms["uniformity"] = obj.uniformity_loss(fake)
                total = total + goals.uniformity_weight * terms["uniformity"]
            if self.predictor is not None:
                terms["unpredictability"] = obj.unpredictability_loss(obj.predictor_error(self.predictor, fake, mask))
                total = total + goals.predictor_weight * terms["unpredictability"]
            g_loss = tf.nn.compute_average_loss(total)
        return g_tape.gradient(g_loss, self.generator.trainable_variables), g_per_example
