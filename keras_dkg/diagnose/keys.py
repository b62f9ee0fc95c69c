"""Keys of a run's generator for a held-back seed: one per nonce, and one-pixel-changed twins.

The generator is `generator.keras`, or for an unfinished run the newest checkpoint's
weights. Keys go through the runtime's own steps (`preprocess_uint8`, `perturb_seed`,
`scale_to_unit`, `quantize_key`), so they are the keys `dkg-keygen` would make.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_dkg.errors import InputError
from keras_dkg.runtime.nonces import perturb_seed
from keras_dkg.runtime.preprocess import quantize_key, scale_to_unit


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
    generator = networks.build_generator(int(options.get("residual_blocks", networks.DEFAULT_RESIDUAL_BLOCKS)))
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


def one_pixel_twin(seed_uint8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The seed with one pixel (all channels) set to another random value (paper Table IV)."""
    twin = seed_uint8.copy()
    row, col = rng.integers(0, twin.shape[0]), rng.integers(0, twin.shape[1])
    old = int(twin[row, col, 0])
    twin[row, col, :] = (old + rng.integers(1, 256)) % 256
    return twin
