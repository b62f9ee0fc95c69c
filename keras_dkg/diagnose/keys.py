"""Keys of a run's generator for a held-back seed: one per nonce, and one-pixel-changed twins.

The generator is `generator.keras`, or for an unfinished run the newest checkpoint's
weights. Keys go through the runtime's own steps (`preprocess_uint8`, `perturb_seed`,
`scale_to_unit`, `quantize_key`), so they are the keys `dkg-keygen` would make.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_dkg.errors import InputError
from keras_dkg.runtime.keys.nonces import perturb_seed
from keras_dkg.runtime.keys.preprocess import quantize_key, scale_to_unit


def load_generator(run_dir: str | Path, options: dict):
    """The run's generator (Keras); InputError when the run has neither a generator nor a checkpoint."""
    import keras

    from keras_dkg.train import checkpoints, networks

    run_dir = Path(run_dir)
    if (run_dir / "generator.keras").is_file():
        return keras.models.load_model(run_dir / "generator.keras", compile=False)
    saved = checkpoints.list_checkpoints(run_dir / "checkpoints")
    if not saved:
        raise InputError(f"{run_dir}: no generator.keras and no checkpoint to take the generator from")
    generator = networks.build_generator(int(options.get("residual_blocks", networks.DEFAULT_RESIDUAL_BLOCKS)),
                                         upsample=options.get("upsample", "transpose"))
    generator.load_weights(saved[-1] / "generator.weights.h5")
    return generator


def generate(generator, seeds: list[np.ndarray], batch: int = 8) -> np.ndarray:
    """Keys (N×H×W×3 uint8) for preprocessed uint8 seeds."""
    keys = []
    for start in range(0, len(seeds), batch):
        inputs = np.stack([scale_to_unit(s) for s in seeds[start:start + batch]])
        outputs = np.asarray(generator(inputs, training=False))
        keys.extend(quantize_key(o) for o in outputs)
    return np.stack(keys)


def nonce_seeds(seed_uint8: np.ndarray, count: int) -> list[np.ndarray]:
    """The seed under nonces 1..count (the runtime's per-file keys)."""
    return [perturb_seed(seed_uint8, nonce) for nonce in range(1, count + 1)]


def one_pixel_twin(seed_uint8: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """The seed with one pixel (all channels) set to another random value (paper Table IV), and where."""
    twin = seed_uint8.copy()
    row, col = int(rng.integers(0, twin.shape[0])), int(rng.integers(0, twin.shape[1]))
    old = int(twin[row, col, 0])
    twin[row, col, :] = (old + rng.integers(1, 256)) % 256
    return twin, (row, col)


def local_reach(generator, size: int, position: int) -> np.ndarray:
    """Which of `size` key positions along one axis a seed change at `position` reaches locally.

    Follows G's padding and convolutions (their own kernel sizes, strides and padding rules,
    through `keras.ops`) on a 0/1 indicator; a square kernel makes the reach of a pixel the
    product of its row and column reaches. Instance norm is left out on purpose: its
    image-wide mean and variance carry every change everywhere, but diluted by the image's
    area, and `statistics.one_pixel_locality` measures how much of the key that moves.
    """
    import keras

    from keras_dkg.train.networks import ReflectionPadding2D

    reach = np.zeros(size, np.float32)
    reach[position] = 1.0
    for layer in generator.layers:
        if isinstance(layer, ReflectionPadding2D):
            reach = np.pad(reach, layer.padding, mode="reflect")
            continue
        if isinstance(layer, keras.layers.UpSampling2D):
            reach = np.repeat(reach, layer.size[0])
            continue
        if isinstance(layer, keras.layers.Conv2DTranspose):
            kernel = np.ones((layer.kernel_size[0], 1, 1), np.float32)
            reach = keras.ops.conv_transpose(reach[None, :, None], kernel, strides=layer.strides[0],
                                             padding=layer.padding)
        elif isinstance(layer, keras.layers.Conv2D):
            kernel = np.ones((layer.kernel_size[0], 1, 1), np.float32)
            reach = keras.ops.conv(reach[None, :, None], kernel, strides=layer.strides[0], padding=layer.padding,
                                   dilation_rate=layer.dilation_rate[0])
        else:
            continue
        reach = (np.asarray(reach).reshape(-1) > 0).astype(np.float32)
    if reach.size != size:
        raise ValueError(f"the generator maps {size} positions to {reach.size}; expected a same-size key")
    return reach > 0


def locality_of_pairs(generator, size: int, pairs: list, positions: list[tuple[int, int]],
                      paper_size: int = 256) -> dict:
    """`statistics.one_pixel_locality` of one-pixel pairs, plus the share a centred pixel reaches here and at 256²."""
    from keras_dkg.diagnose import statistics

    reaches = [np.outer(local_reach(generator, size, r), local_reach(generator, size, c)) for r, c in positions]
    result = statistics.one_pixel_locality(pairs, positions, reaches)
    centred, centred_paper = (local_reach(generator, n, n // 2) for n in (size, paper_size))
    result["centred_reach_share"] = float(centred.mean()) ** 2  # a square kernel: row reach × column reach
    result["centred_reach_share_256"] = float(centred_paper.mean()) ** 2
    result["reach_span_256"] = int(centred_paper.sum())  # key pixels along one axis a centred seed pixel reaches
    return result
