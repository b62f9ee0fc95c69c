"""Folders of images → an unpaired, step-indexed `tf.data` pipeline.

Images are decoded once with the runtime's shared preprocessing
(`keras_dkg.runtime.preprocess`, the same function `dkg-keygen` uses) into uint8 arrays
at the training size and kept in memory (138 images at 256² are 27 MB). Which source
and which domain image each step sees is fixed in advance from `--seed`: permutations
per pass, independent for the two domains (unpaired). Step k therefore always sees the
same pair, so a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_dkg.errors import InputError
from keras_dkg.runtime.imageio import list_images, read_image
from keras_dkg.runtime.preprocess import preprocess_uint8

log = logging.getLogger(__name__)


@dataclass
class ImageFolder:
    """Decoded images of one folder, all at one size."""

    root: Path
    paths: list[Path]
    pixels: np.ndarray  # N×H×W×3 uint8

    def __len__(self) -> int:
        return len(self.paths)


def load_folder(folder: str | Path, size: int) -> ImageFolder:
    """Decode every image of `folder` (recursively) at size×size; errors name the file."""
    if size % 4:
        raise InputError(f"image size {size} is not a multiple of 4 (the generator downsamples twice by 2)")
    paths = list_images(folder)
    pixels = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for index, path in enumerate(paths):
        image = read_image(path)  # raises InputError naming the file
        if image.shape[0] != size or image.shape[1] != size:
            log.debug("%s: resized from %s to %d", path, image.shape[:2], size)
        pixels[index] = preprocess_uint8(image, size)
    return ImageFolder(Path(folder), paths, pixels)


def step_indices(count: int, steps: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """steps×batch_size indices: concatenated random permutations of range(count)."""
    needed = steps * batch_size
    passes = -(-needed // count)
    order = np.concatenate([rng.permutation(count) for _ in range(passes)])
    return order[:needed].reshape(steps, batch_size)


def _to_unit(batch):
    return tf.cast(batch, tf.float32) / 127.5 - 1.0


def make_dataset(source: ImageFolder, domain: ImageFolder, steps: int, batch_size: int, seed: int,
                 start_step: int = 0) -> tf.data.Dataset:
    """Batches (source, domain) for steps start_step..steps-1, float32 in [-1, 1]."""
    source_rng, domain_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    source_order = step_indices(len(source), steps, batch_size, source_rng)
    domain_order = step_indices(len(domain), steps, batch_size, domain_rng)
    source_pixels = tf.constant(source.pixels)
    domain_pixels = tf.constant(domain.pixels)
    indices = tf.data.Dataset.from_tensor_slices((source_order[start_step:], domain_order[start_step:]))
    return indices.map(
        lambda s, d: (_to_unit(tf.gather(source_pixels, s)), _to_unit(tf.gather(domain_pixels, d))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    ).prefetch(tf.data.AUTOTUNE)
