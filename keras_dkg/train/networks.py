"""Generator (paper Table I) and discriminator (Table II) as functional Keras 3 models.

Shaped like the CycleGAN ResNet generator the paper builds on: reflection padding before
the 7×7 convolutions and inside the residual blocks, instance normalization + ReLU after
every convolution except the last, tanh output. The discriminator is a PatchGAN:
five 4×4 convolutions, LeakyReLU 0.2, instance norm on all but the first and last.

Only `keras.layers` and `keras.ops` are used, so the builders also run on the JAX
backend. Both networks are fully convolutional: the generator maps H×W×3 to H×W×3 for
any H, W divisible by 4.

Choices the paper leaves open (docs/architecture.md explains each):
* convolutions followed by instance norm have no bias (the norm's beta replaces it);
  the last generator convolution and the first/last discriminator convolutions do;
* instance norm is affine (gamma, beta) with epsilon 1e-5 (PyTorch's);
* weights start from N(0, 0.02) as in CycleGAN.

`build_discriminator(spectral_norm=True)` makes every D convolution a `SpectralConv2D`
(Miyato et al. 2018), an ablation of the key-quality study that bounds how sharp D can
get; off by default. Not Keras' SpectralNormalization wrapper: Keras 3.15 does not restore
a wrapped layer's weights from `save_weights` files (it warns and keeps fresh ones), which
would silently reset D on --resume; and the wrapper rescales the kernel in place, so its
gradient ignores the normalization.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_dkg.train.config import UPSAMPLE_KINDS

WEIGHT_STDDEV = 0.02
NORM_EPSILON = 1e-5
GENERATOR_FILTERS = (16, 32, 64)
DISCRIMINATOR_FILTERS = (16, 32, 64, 128)
DEFAULT_RESIDUAL_BLOCKS = 6
SIZE_MULTIPLE = 4  # two stride-2 downsamplings in G
__all__ = ["DEFAULT_RESIDUAL_BLOCKS", "DISCRIMINATOR_FILTERS", "GENERATOR_FILTERS", "NORM_EPSILON", "SIZE_MULTIPLE",
           "UPSAMPLE_KINDS", "WEIGHT_STDDEV", "InstanceNormalization", "ReflectionPadding2D", "SpectralConv2D",
           "build_discriminator", "build_generator", "build_predictor", "residual_block"]


@keras.saving.register_keras_serializable(package="keras_dkg")
class ReflectionPadding2D(layers.Layer):
    """Reflection padding (Keras 3 has none); exports as ONNX Pad(reflect) / TFLite MIRROR_PAD."""

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, inputs):
        p = self.padding
        return ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        grow = 2 * self.padding
        return (
            batch,
            None if height is None else height + grow,
            None if width is None else width + grow,
            channels,
        )

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="keras_dkg")
class InstanceNormalization(layers.Layer):
    """Per-sample, per-channel normalization over H and W, with learned scale and offset.

    Written with mean/variance ops rather than `GroupNormalization(groups=-1)` so the
    ONNX graph is a handful of plain Reduce/Sub/Mul nodes that onnxruntime runs exactly.
    """

    def __init__(self, epsilon: float = NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer=_weights(1.0), name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        mean = ops.mean(inputs, axis=(1, 2), keepdims=True)
        centred = inputs - mean
        variance = ops.mean(ops.square(centred), axis=(1, 2), keepdims=True)
        return centred * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_dkg")
class SpectralConv2D(layers.Conv2D):
    """Conv2D with kernel W / sigma(W), sigma from one power iteration per training call.

    W is reshaped to (kh·kw·cin, cout) as in Miyato et al.; the running estimate of the
    top right-singular vector `vector_u` is a non-trainable weight, so it is checkpointed.
    The gradient flows through sigma(W) (u and v are constants of the step).
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.vector_u = self.add_weight(shape=(1, self.filters), initializer=_weights(), trainable=False,
                                        name="vector_u")

    def normalized_kernel(self, training: bool = False):
        """W / sigma(W); with `training`, first one power-iteration step updates `vector_u`."""
        matrix = ops.reshape(self.kernel, (-1, self.filters))
        u = self.vector_u
        v = _unit(ops.matmul(u, ops.transpose(matrix)))
        u = _unit(ops.matmul(v, matrix))
        if training:
            self.vector_u.assign(u)
        u, v = ops.stop_gradient(u), ops.stop_gradient(v)
        sigma = ops.sum(ops.matmul(v, matrix) * u)
        return self.kernel / sigma

    def _own_variables(self) -> list:
        return [self._kernel, *([self.bias] if self.use_bias else []), self.vector_u]

    def save_own_variables(self, store):
        """Conv2D saves only kernel and bias; `vector_u` must survive a checkpoint too."""
        if self.built:
            for index, variable in enumerate(self._own_variables()):
                store[str(index)] = variable

    def load_own_variables(self, store):
        self._check_load_own_variables(store)
        if self.built:
            for index, variable in enumerate(self._own_variables()):
                variable.assign(store[str(index)])

    def call(self, inputs, training=False):
        outputs = self.convolution_op(inputs, self.normalized_kernel(training))
        if self.use_bias:
            outputs = ops.add(outputs, ops.reshape(self.bias, (1, 1, 1, self.filters)))
        return outputs


def _unit(x):
    return x / ops.sqrt(ops.sum(ops.square(x)) + 1e-12)


def _weights(mean: float = 0.0):
    """A fresh N(mean, 0.02) initializer per layer.

    Keras 3 seeds an unseeded initializer once, at construction, so one shared instance
    would give every same-shaped layer identical weights; building one per layer after
    `keras.utils.set_random_seed` keeps runs repeatable and layers independent.
    """
    return keras.initializers.RandomNormal(mean=mean, stddev=WEIGHT_STDDEV)


def _conv(filters: int, kernel: int, strides: int = 1, padding: str = "same", bias: bool = False, name: str | None = None):
    return layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, use_bias=bias,
        kernel_initializer=_weights(), name=name,
    )


def residual_block(x, filters: int, name: str):
    """Two reflection-padded 3×3 convolutions with instance norm; ReLU between them."""
    shortcut = x
    x = ReflectionPadding2D(1, name=f"{name}_pad1")(x)
    x = _conv(filters, 3, padding="valid", name=f"{name}_conv1")(x)
    x = InstanceNormalization(name=f"{name}_norm1")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = ReflectionPadding2D(1, name=f"{name}_pad2")(x)
    x = _conv(filters, 3, padding="valid", name=f"{name}_conv2")(x)
    x = InstanceNormalization(name=f"{name}_norm2")(x)
    return layers.Add(name=f"{name}_add")([shortcut, x])


def build_generator(num_residual_blocks: int = DEFAULT_RESIDUAL_BLOCKS, name: str = "generator",
                    upsample: str = "transpose") -> keras.Model:
    """Table I: 7×7 3→16, 3×3/2 16→32, 3×3/2 32→64, N residual blocks, 2 transposed 3×3/2, 7×7 16→3, tanh.

    `num_residual_blocks` gives the attack networks of Table XVI (3, 6, 9, 12); `upsample`
    "resize" swaps each transposed convolution for ×2 nearest resize + 3×3 convolution
    (UPSAMPLE_KINDS), keeping the layer names `up{1,2}_conv` and their weight shapes.
    """
    if upsample not in UPSAMPLE_KINDS:
        raise ValueError(f"upsample {upsample!r} is not one of {', '.join(UPSAMPLE_KINDS)}")
    f1, f2, f3 = GENERATOR_FILTERS
    inputs = keras.Input(shape=(None, None, 3), name="seed")
    x = ReflectionPadding2D(3, name="down1_pad")(inputs)
    x = _conv(f1, 7, padding="valid", name="down1_conv")(x)
    x = InstanceNormalization(name="down1_norm")(x)
    x = layers.ReLU(name="down1_relu")(x)
    for index, filters in ((2, f2), (3, f3)):
        x = _conv(filters, 3, strides=2, name=f"down{index}_conv")(x)
        x = InstanceNormalization(name=f"down{index}_norm")(x)
        x = layers.ReLU(name=f"down{index}_relu")(x)
    for block in range(num_residual_blocks):
        x = residual_block(x, f3, name=f"res{block + 1}")
    for index, filters in ((1, f2), (2, f1)):
        if upsample == "resize":
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{index}_resize")(x)
            x = _conv(filters, 3, name=f"up{index}_conv")(x)
        else:
            x = layers.Conv2DTranspose(
                filters, 3, strides=2, padding="same", use_bias=False,
                kernel_initializer=_weights(), name=f"up{index}_conv",
            )(x)
        x = InstanceNormalization(name=f"up{index}_norm")(x)
        x = layers.ReLU(name=f"up{index}_relu")(x)
    x = ReflectionPadding2D(3, name="up3_pad")(x)
    x = _conv(3, 7, padding="valid", bias=True, name="up3_conv")(x)
    outputs = layers.Activation("tanh", name="key", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def build_discriminator(name: str = "discriminator", spectral_norm: bool = False) -> keras.Model:
    """Table II: PatchGAN, 4×4 convs 3→16/2 →32/2 →64/2 →128/1 →1/1; outputs logits."""

    def conv(filters: int, strides: int, bias: bool, layer_name: str):
        if not spectral_norm:
            return _conv(filters, 4, strides=strides, bias=bias, name=layer_name)
        return SpectralConv2D(filters, 4, strides=strides, padding="same", use_bias=bias,
                              kernel_initializer=_weights(), name=layer_name)

    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = conv(DISCRIMINATOR_FILTERS[0], 2, True, "state1_conv")(inputs)
    x = layers.LeakyReLU(0.2, name="state1_lrelu")(x)
    for index, filters in enumerate(DISCRIMINATOR_FILTERS[1:], start=2):
        strides = 2 if index < len(DISCRIMINATOR_FILTERS) else 1
        x = conv(filters, strides, False, f"state{index}_conv")(x)
        x = InstanceNormalization(name=f"state{index}_norm")(x)
        x = layers.LeakyReLU(0.2, name=f"state{index}_lrelu")(x)
    outputs = conv(1, 1, True, "state5_conv")(x)
    outputs = layers.Activation("linear", name="logits", dtype="float32")(outputs)
    return keras.Model(inputs, outputs, name=name)


def build_predictor(name: str = "predictor") -> keras.Model:
    """P of the unpredictability term (train.losses): the visible key in [0, 1] with hidden
    pixels zeroed, plus the mask → guesses in [0, 1]."""
    inputs = keras.Input(shape=(None, None, 4), name="masked_key")
    x = inputs
    for index, dilation in enumerate((1, 2, 1)):
        x = layers.Conv2D(32, 3, padding="same", dilation_rate=dilation, activation="relu",
                          name=f"{name}_conv{index}")(x)
    outputs = layers.Conv2D(3, 1, activation="sigmoid", name=f"{name}_guess", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
