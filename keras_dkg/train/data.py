"""Folders of images → unpaired, step-indexed batches (a `tf.data` pipeline, or arrays for JAX).

Images are decoded once with the runtime's shared preprocessing
(`keras_dkg.runtime.keys.preprocess`, the same function `dkg-keygen` uses) into uint8 arrays
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

`step_orders` fixes the pairs and `batch_from` gathers (and augments) one batch with
`keras.ops`, so the TensorFlow pipeline (`make_dataset`) and the JAX step (which gathers
on the device from the images held there) feed the same numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from keras import ops

from keras_dkg.errors import InputError
from keras_dkg.runtime.formats.sources import source_files, source_images
from keras_dkg.runtime.keys.preprocess import preprocess_uint8

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
    """Decode every image of `folder` (recursively) at size×size; errors name the file.

    NIfTI volumes give their axial slices (`imageio.source_images`; docs/training.md, "Data");
    DICOM series are folders of slices, one image each.
    """
    if size % 4:
        raise InputError(f"image size {size} is not a multiple of 4 (the generator downsamples twice by 2)")
    paths, images = [], []
    for path in source_files(folder):
        for label, image in source_images(path):
            if image.shape[0] != size or image.shape[1] != size:
                log.debug("%s: resized from %s to %d", label, image.shape[:2], size)
            paths.append(label)
            images.append(preprocess_uint8(image, size))
    return ImageFolder(Path(folder), paths, np.stack(images))


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


def augment_image(image, parameters):
    """One image after its `augment_parameters` row: circular shift, then the flips."""
    image = ops.roll(ops.roll(image, parameters[0], axis=0), parameters[1], axis=1)
    image = ops.where(parameters[2] > 0, ops.flip(image, axis=1), image)
    return ops.where(parameters[3] > 0, ops.flip(image, axis=0), image)


def batch_from(pixels, indices, parameters=None):
    """The batch `indices` of uint8 `pixels` as float32 in [-1, 1], augmented by `parameters` rows."""
    images = ops.take(pixels, indices, axis=0)
    if parameters is not None:
        images = ops.stack([augment_image(images[i], parameters[i]) for i in range(images.shape[0])])
    return ops.cast(images, "float32") / 127.5 - 1.0


def step_indices(count: int, steps: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """steps×batch_size indices: concatenated random permutations of range(count)."""
    needed = steps * batch_size
    passes = -(-needed // count)
    order = np.concatenate([rng.permutation(count) for _ in range(passes)])
    return order[:needed].reshape(steps, batch_size)


def step_orders(source_count: int, domain_count: int, steps: int, batch_size: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """steps×batch_size source and domain indices: independent shuffles from `seed` (unpaired)."""
    source_rng, domain_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    return (step_indices(source_count, steps, batch_size, source_rng),
            step_indices(domain_count, steps, batch_size, domain_rng))


def replica_rows(columns: tuple, batch_size: int, input_context=None) -> tuple:
    """Each step's global rows → the rows of this input pipeline's replicas, one element per replica.

    `--batch-size` is the global batch: step k's B rows are split in order over the
    `num_replicas_in_sync` replicas, B/n each (replica r gets rows r·B/n … (r+1)·B/n − 1),
    whatever the cluster's shape, so the images a step sees do not depend on it. A pipeline
    (one per worker) feeds its L local replicas L consecutive elements per step, which
    tf.distribute hands to them in turn. Without a context (one replica) the rows are unchanged.
    """
    if input_context is None or input_context.num_replicas_in_sync == 1:
        return columns
    per_replica = input_context.get_per_replica_batch_size(batch_size)
    local = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    first = input_context.input_pipeline_id * local * per_replica
    return tuple(np.ascontiguousarray(c[:, first:first + local * per_replica]).reshape(-1, per_replica, *c.shape[2:])
                 for c in columns)


def make_dataset(source: ImageFolder, domain: ImageFolder, steps: int, batch_size: int, seed: int,
                 start_step: int = 0, augment: bool = False, input_context=None):
    """A `tf.data.Dataset` of (source, domain) batches for steps start_step..steps-1 (TensorFlow backend).

    With a `tf.distribute.InputContext` (`strategy.distribute_datasets_from_function`) the
    batches are this pipeline's replicas' shares of each global batch (`replica_rows`).
    """
    import tensorflow as tf

    source_order, domain_order = step_orders(len(source), len(domain), steps, batch_size, seed)
    source_pixels = tf.constant(source.pixels)
    domain_pixels = tf.constant(domain.pixels)
    columns = (source_order[start_step:], domain_order[start_step:])
    if augment:
        columns += (augment_parameters(steps, batch_size, domain.pixels.shape[1:3], seed)[start_step:],)
    columns = replica_rows(columns, batch_size, input_context)

    def pair(s, d, p=None):
        return batch_from(source_pixels, s), batch_from(domain_pixels, d, p)
    indices = tf.data.Dataset.from_tensor_slices(columns)
    return indices.map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
