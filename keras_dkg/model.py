"""The DeepKeyGen GAN: generator G and discriminator D trained with eqs. (1)–(3).

Eq. (3), D maximises log D(y) + log(1 − D(G(x))); eq. (2), G minimises
log(1 − D(G(x))). As usual (Goodfellow et al.) G is trained with the non-saturating form
−log D(G(x)), whose fixed point is the same but whose gradients do not vanish early.
`loss="lsgan"` swaps in the least-squares losses CycleGAN uses. D and G are updated
alternately in every step, D first, as in the paper's Algorithm 1.

Losses are averaged per replica with `tf.nn.compute_average_loss`, so gradients summed
across a `tf.distribute` strategy's replicas equal those of one device with the global
batch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

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


class DeepKeyGen(keras.Model):
    """G and D with a custom `train_step`; `model(x)` runs the generator."""

    def __init__(self, generator: keras.Model | None = None, discriminator: keras.Model | None = None,
                 num_residual_blocks: int = 6, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator or build_generator(num_residual_blocks)
        self.discriminator = discriminator or build_discriminator()

    def call(self, inputs, training: bool = False):
        return self.generator(inputs, training=training)

    def compile(self, g_optimizer=None, d_optimizer=None, loss: str = "bce", **kwargs):
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer or default_optimizer()
        self.d_optimizer = d_optimizer or default_optimizer()
        self.gan_loss = GANLoss(loss)
        self.tracked = {
            name: keras.metrics.Mean(name=name)
            for name in ("g_loss", "d_loss", "d_acc_real", "d_acc_fake")
        }

    @property
    def metrics(self):
        return list(getattr(self, "tracked", {}).values())

    def build_optimizers(self) -> None:
        """Create optimizer slots eagerly, so a checkpoint can be restored before step 1."""
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def train_step(self, data):
        source, target = data
        with tf.GradientTape() as d_tape:
            fake = self.generator(source, training=True)
            real_logits = self.discriminator(target, training=True)
            fake_logits = self.discriminator(fake, training=True)
            d_per_example = self.gan_loss.discriminator(real_logits, fake_logits)
            d_loss = tf.nn.compute_average_loss(d_per_example)
        d_grads = d_tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables, strict=True))

        with tf.GradientTape() as g_tape:
            fake = self.generator(source, training=True)
            g_per_example = self.gan_loss.generator(self.discriminator(fake, training=True))
            g_loss = tf.nn.compute_average_loss(g_per_example)
        g_grads = g_tape.gradient(g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables, strict=True))

        says_real = self.gan_loss.says_real
        self.tracked["g_loss"].update_state(g_per_example)
        self.tracked["d_loss"].update_state(d_per_example)
        self.tracked["d_acc_real"].update_state(tf.reduce_mean(says_real(real_logits), axis=[1, 2, 3]))
        self.tracked["d_acc_fake"].update_state(tf.reduce_mean(1.0 - says_real(fake_logits), axis=[1, 2, 3]))
        return {name: metric.result() for name, metric in self.tracked.items()}
