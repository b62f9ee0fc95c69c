"""What training, domains and seeds read: image files and NIfTI volumes as lists of images.

`source_files` lists a folder's images and volumes; `source_images` turns one into
(label, image) pairs, a volume into its kept axial slices (`training_slices`, windowed
per volume); `split_slice_spec`/`seed_slice` read `VOLUME.nii[.gz][:SLICE]` as a seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_dkg.errors import InputError
from keras_dkg.runtime.formats.detect import IMAGE_SUFFIXES
from keras_dkg.runtime.formats.images import read_image
from keras_dkg.runtime.formats.nifti import SUFFIXES, is_nifti_name, volume_array


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Sorted image files under `folder`; a clear error if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    pattern = root.rglob("*") if recursive else root.glob("*")
    files = sorted(
        p for p in pattern
        if p.is_file() and not p.name.startswith(".") and (p.suffix.lower() in IMAGE_SUFFIXES)
    )
    if not files:
        raise InputError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def source_files(folder: str | os.PathLike) -> list[Path]:
    """Sorted images and NIfTI volumes under `folder` (recursively): what training and domains read."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    volumes = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and is_nifti_name(p)]
    try:
        images = list_images(root)
    except InputError:
        if not volumes:
            raise InputError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES | set(SUFFIXES)))})"
                             ) from None
        images = []
    return sorted(images + volumes)


def source_images(path: Path) -> list[tuple[Path, np.ndarray]]:
    """(label, image) of one source file: the image, or a NIfTI volume's kept axial slices
    (`training_slices`, labelled FILE:z); errors name the file."""
    if is_nifti_name(path):
        return [(Path(label), image) for label, image in training_slices(path)]
    return [(path, read_image(path))]


# --------------------------------------------------------------------------- slices (training data, seeds)

#: a slice is kept for training when at least this share of its voxels is above the volume's minimum
MIN_FOREGROUND = 0.10
#: the intensity window: these percentiles of the volume's voxels map to 0 and 65535
WINDOW_PERCENTILES = (0.5, 99.5)


def _window(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, WINDOW_PERCENTILES)
    return float(low), float(max(high, low + 1e-9))


def _to_image(plane: np.ndarray, low: float, high: float) -> np.ndarray:
    """One x-y plane as an upright uint16 image (rot90, as the embedded EPI slices)."""
    scaled = np.clip((plane - low) / (high - low), 0.0, 1.0) * 65535.0
    return np.ascontiguousarray(np.rot90(np.rint(scaled).astype(np.uint16)))


def training_slices(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """The axial slices of a volume for training: (label "file:z" or "file:z:t", uint16 image).

    Every volume of a 4-D file; a slice is kept when at least MIN_FOREGROUND of it lies above
    the volume's minimum (BraTS pads the brain with zero slices); intensities are windowed
    per volume at WINDOW_PERCENTILES to the uint16 range.
    """
    source = Path(path)
    values, _ = volume_array(source)
    low, high = _window(values)
    floor = values.min()
    slices = []
    for t in range(values.shape[3]):
        for z in range(values.shape[2]):
            plane = values[:, :, z, t]
            if np.mean(plane > floor) >= MIN_FOREGROUND:
                label = f"{source}:{z}" if values.shape[3] == 1 else f"{source}:{z}:{t}"
                slices.append((label, _to_image(plane, low, high)))
    if not slices:
        raise InputError(f"{source}: no slice has {MIN_FOREGROUND:.0%} of its voxels above the volume's minimum")
    return slices


def split_slice_spec(spec: str | os.PathLike) -> tuple[Path, int | None] | None:
    """`VOLUME.nii[.gz][:SLICE]` -> (path, slice or None); None when `spec` names no volume."""
    text = str(spec)
    head, _, tail = text.rpartition(":")
    if head and tail.isdigit() and is_nifti_name(head):
        return Path(head), int(tail)
    return (Path(text), None) if is_nifti_name(text) else None


def seed_slice(path: Path, index: int | None) -> tuple[np.ndarray, bytes, str]:
    """A volume's axial slice as a seed: (uint16 image, the bytes its digest is of, a label).

    The default slice is the middle one of the first volume; the window is the volume's.
    The digest covers the file (the bytes the slice was decoded from) and the slice number,
    so two slices are two seeds.
    """
    values, raw = volume_array(path, "seed")
    depth = values.shape[2]
    index = depth // 2 if index is None else index
    if not 0 <= index < depth:
        raise InputError(f"{path}: slice {index} is outside the volume's {depth} axial slices (0-{depth - 1})")
    low, high = _window(values)
    return _to_image(values[:, :, index, 0], low, high), raw + f"\0slice={index}".encode(), f"{path.name}:{index}"
