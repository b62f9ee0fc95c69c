"""`DeepKeyGen`: G, D (and the key study's predictor P), their optimizers and training state.

One model for both backends. Under TensorFlow the training loop runs `train_step`
(keras_dkg.train.step_tf) with `strategy.run` under `tf.distribute` (`model.fit` runs it
too); under JAX `keras_dkg.train.step_jax` runs the same step as a pure jitted function
over this model's variables. Both take the
losses from keras_dkg.train.losses and update D then G in every step, as the paper's
Algorithm 1; with `reuse_generator_pass` (the default) G(x) is computed once per step,
since D's update does not change G (only D(G(x)) is recomputed with the updated D).
"""

from __future__ import annotations

import keras

from keras_dkg.train import losses, streams
from keras_dkg.train.networks import build_discriminator, build_generator, build_predictor

LEARNING_RATE = 2e-4
BETA_1 = 0.5
BETA_2 = 0.999


def default_optimizer(learning_rate: float = LEARNING_RATE, beta_1: float = BETA_1, beta_2: float = BETA_2):
    """Adam with the paper's settings (2e-4, 0.5, 0.999)."""
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2)


class ImagePool:
    """The image pool's state (losses.pool_query) as two variables, checkpointed with the run.

    Per replica under `tf.distribute` (ON_READ): each replica keeps the history of its own fakes.
    """

    def __init__(self, size: int, image_shape: tuple[int, int, int]):
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got {size}")
        sync = {"synchronization": "on_read", "aggregation": "only_first_replica", "trainable": False}
        self.buffer = keras.Variable(keras.ops.zeros((int(size), *image_shape)), name="pool_images", **sync)
        self.count = keras.Variable(0, dtype="int32", name="pool_count", **sync)

    @property
    def variables(self) -> list:
        return [self.buffer, self.count]


class DeepKeyGen(keras.Model):
    """G and D with the paper's alternating update; `model(x)` runs the generator."""

    def __init__(self, generator: keras.Model | None = None, discriminator: keras.Model | None = None,
                 num_residual_blocks: int = 6, d_spectral_norm: bool = False, upsample: str = "transpose",
                 **kwargs):
        super().__init__(**kwargs)
        self.generator = generator or build_generator(num_residual_blocks, upsample=upsample)
        self.discriminator = discriminator or build_discriminator(spectral_norm=d_spectral_norm)

    def call(self, inputs, training: bool = False):
        return self.generator(inputs, training=training)

    def compile(self, g_optimizer=None, d_optimizer=None, loss: str = "bce",
                stabilizers: losses.Stabilizers | None = None, image_shape: tuple[int, int, int] | None = None,
                objectives: losses.KeyObjectives | None = None, p_optimizer=None,
                reuse_generator_pass: bool = True, **kwargs):
        """`image_shape` (H, W, 3) is needed only for the image pool's buffer.

        `p_optimizer` (the predictor's, when `objectives.predictor_weight`) defaults to Adam
        with G's learning rate and betas. `reuse_generator_pass=False` computes G(x) again
        for G's update, as a literal reading of Algorithm 1 does (the same numbers, more
        work; tools/bench_train.py measures the difference).
        """
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer or default_optimizer()
        self.d_optimizer = d_optimizer or default_optimizer()
        self.gan_loss = losses.GANLoss(loss)
        self.stabilizers = stabilizers or losses.Stabilizers()
        self.reuse_generator_pass = reuse_generator_pass
        self.pool = None
        if self.stabilizers.d_history:
            if image_shape is None:
                raise ValueError("an image pool (d_history > 0) needs image_shape")
            self.pool = ImagePool(self.stabilizers.d_history, image_shape)
        self.objectives = objectives or losses.KeyObjectives()
        self.predictor = self.p_optimizer = None
        if self.objectives.predictor_weight:
            self.predictor = build_predictor()
            g_opt = self.g_optimizer
            # the learning rate is a variable (a MirroredVariable under tf.distribute: read it as an array)
            self.p_optimizer = p_optimizer or default_optimizer(
                float(keras.ops.convert_to_numpy(g_opt.learning_rate)), float(g_opt.beta_1), float(g_opt.beta_2))
        self.tracked = {name: keras.metrics.Mean(name=name) for name in self.metric_names}

    @property
    def metric_names(self) -> list[str]:
        """The per-step values a step reports, in a fixed order."""
        names = ["g_loss", "d_loss", "d_acc_real", "d_acc_fake"]
        names += ["r1"] if self.stabilizers.r1_gamma else []
        names += ["noise_sigma"] if self.stabilizers.instance_noise else []
        names += ["sensitivity"] if self.objectives.sensitivity_weight else []
        names += ["uniformity"] if self.objectives.uniformity_weight else []
        names += ["p_error", "unpredictability"] if self.objectives.predictor_weight else []
        return names

    @property
    def state_variables(self) -> list:
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

    # ---- the step's random inputs, shared by step_tf and step_jax (streams: stateless, per backend)

    def noisy(self, images, step, purpose: int):
        """D's input with this step's instance noise (`images` itself when the noise is off)."""
        aids = self.stabilizers
        if not aids.instance_noise:
            return images
        draws = streams.normal(keras.ops.shape(images), streams.key(aids.seed, step, purpose))
        return losses.add_noise(images, aids.noise_sigma(step), draws)

    def generator_inputs(self, source, step):
        """The seeds G runs on: the batch, and with the sensitivity term its two neighbours after it."""
        goals = self.objectives
        if not goals.sensitivity_weight:
            return source
        shape = keras.ops.shape(source)
        pixel = streams.uniform((shape[0], 3), streams.key(goals.seed, step, streams.PIXEL))
        nonce = streams.uniform(shape, streams.key(goals.seed, step, streams.NONCE))
        return keras.ops.concatenate([source, losses.one_pixel_change(source, pixel),
                                      losses.nonce_perturbation(source, nonce)], 0)

    def predictor_mask(self, keys, step):
        """Which key pixels P must guess this step (losses.hidden_mask)."""
        shape = keras.ops.shape(keys)
        draws = streams.uniform((shape[0], shape[1], shape[2], 1), streams.key(self.objectives.seed, step, streams.MASK))
        return losses.hidden_mask(draws)

    def train_step(self, data):
        """The TensorFlow step (the loop's `strategy.run`, or `model.fit`); under JAX the loop uses step_jax."""
        if keras.config.backend() != "tensorflow":
            raise NotImplementedError("DeepKeyGen.train_step is the TensorFlow step; JAX runs step_jax.make_step")
        from keras_dkg.train import step_tf

        return step_tf.train_step(self, data)
