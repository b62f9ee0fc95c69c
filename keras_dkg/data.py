"""Folders of images → an unpaired, step-indexed `tf.data` pipeline.

Images are decoded once with the runtime's shared preprocessing
(`keras_dkg.runtime.preprocess`, the same function `dkg-keygen` uses) into uint8 arrays
at the training size and kept in memory (138 images at 256² are 27 MB). Which source
and which domain image each step sees is fixed in advance from `--seed`: permutations
per pass, independent for the two domains (unpaired). Step k therefore always sees the
same pair, so a resumed run continues exactly where the interrupted one stopped.

Two domain ablations of the key-quality study (docs/key_quality.md), both off by default:
`gray_domain` repeats each domain image's first channel to three (the seeds are gray
repeated to three channels, the chaotic domain's channels are independent byte planes; a
luma mix of those would no longer be uniform), and `augment` gives each step's domain
images a random cyclic crop (a crop of the image tiled 2×2, i.e. a circular shift, so the
size and the byte histogram stay the same) and random horizontal/vertical flips, drawn in
advance from `--seed` like the pairs.
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


def gray_domain(folder: ImageFolder) -> ImageFolder:
    """The folder with every image's first channel repeated to three channels."""
    return ImageFolder(folder.root, folder.paths, np.repeat(folder.pixels[..., :1], 3, axis=-1))


def augment_parameters(steps: int, batch_size: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """steps×batch_size×4 int32: (shift down, shift right, flip left-right, flip up-down) per image.

    Drawn from the third child of `SeedSequence(seed)` (the first two order the data), so
    turning augmentation on does not change which images a step sees; drawn step by step,
    so the first k rows do not depend on `steps` (a run extended with --resume continues).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    highs = np.array([size[0], size[1], 2, 2])
    return rng.integers(0, highs, size=(steps, batch_size, 4)).astype(np.int32)


def augment_batch(images, parameters):
    """Apply `augment_parameters` rows to a batch: circular shift, then the flips."""
    def one(pair):
        image, p = pair
        image = tf.roll(image, shift=p[:2], axis=[0, 1])
        image = tf.where(p[2] > 0, tf.reverse(image, [1]), image)
        return tf.where(p[3] > 0, tf.reverse(image, [0]), image)
    return tf.map_fn(one, (images, parameters), fn_output_signature=images.dtype)


def step_indices(count: int, steps: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """steps×batch_size indices: concatenated random permutations of range(count)."""
    needed = steps * batch_size
    passes = -(-needed // count)
    order = np.concatenate([rng.permutation(count) for _ in range(passes)])
    return order[:needed].reshape(steps, batch_size)


def _to_unit(batch):
    return tf.cast(batch, tf.float32) / 127.5 - 1.0


def make_dataset(source: ImageFolder, domain: ImageFolder, steps: int, batch_size: int, seed: int,
                 start_step: int = 0, augment: bool = False) -> tf.data.Dataset:
    """Batches (source, domain) for steps start_step..steps-1, float32 in [-1, 1]."""
    source_rng, domain_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    source_order = step_indices(len(source), steps, batch_size, source_rng)
    domain_order = step_indices(len(domain), steps, batch_size, domain_rng)
    source_pixels = tf.constant(source.pixels)
    domain_pixels = tf.constant(domain.pixels)
    if augment:
        parameters = augment_parameters(steps, batch_size, domain.pixels.shape[1:3], seed)[start_step:]
        indices = tf.data.Dataset.from_tensor_slices((source_order[start_step:], domain_order[start_step:], parameters))

        def pair(s, d, p):
            return _to_unit(tf.gather(source_pixels, s)), _to_unit(augment_batch(tf.gather(domain_pixels, d), p))
    else:
        indices = tf.data.Dataset.from_tensor_slices((source_order[start_step:], domain_order[start_step:]))

        def pair(s, d):
            return _to_unit(tf.gather(source_pixels, s)), _to_unit(tf.gather(domain_pixels, d))
    return indices.map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
