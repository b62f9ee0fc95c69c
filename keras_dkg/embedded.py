"""The embedded default data: real medical images shipped inside registry packages.

Nothing is downloaded. Provenance (see docs/data.md):

* source domain: the 48 axial slices (24 slices × 2 time points) of
  ``nibabel/tests/data/example4d.nii.gz`` — a real brain EPI (fMRI) volume,
  128×96, shipped in the nibabel wheel (MIT licence);
* held-back seed: ``pydicom/data/test_files/CT_small.dcm`` — a real 128×128 16-bit CT
  slice shipped in the pydicom wheel (MIT licence). It is not in the source domain, so the
  key's seed was never seen in training (as in the paper's setup).

The paper used Montgomery chest X-rays; no chest X-ray ships in a small registry
package, so `--source DIR` takes the user's own data.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np

from keras_dkg.errors import InputError

SOURCE_DESCRIPTION = "nibabel example4d.nii.gz: real brain EPI, 48 slices of 128x96 (MIT)"
SEED_DESCRIPTION = "pydicom CT_small.dcm: real CT slice 128x128, 16-bit (MIT)"


def _package_file(package: str, relative: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        raise InputError(
            f"embedded data needs the '{package}' package; pip install 'keras-dkg[train-cpu]' "
            "or pass --source DIR"
        ) from exc
    path = Path(str(root.joinpath(relative)))
    if not path.is_file():
        raise InputError(f"embedded data file missing from the {package} install: {path}")
    return path


def source_volume_path() -> Path:
    """Path of the real brain EPI volume nibabel ships (NIfTI-1, int16, 128×96×24×2)."""
    return _package_file("nibabel", "tests/data/example4d.nii.gz")


def source_slices() -> list[np.ndarray]:
    """The 48 brain EPI slices as uint16 arrays (min-max windowed per volume)."""
    import nibabel

    volume = np.asarray(nibabel.load(source_volume_path()).dataobj)
    volume = volume.astype(np.float64)
    scaled = (volume - volume.min()) * (65535.0 / max(float(volume.max() - volume.min()), 1e-9))
    volume16 = np.rint(scaled).astype(np.uint16)
    slices = []
    for t in range(volume16.shape[3]):
        for z in range(volume16.shape[2]):
            # NIfTI is (x, y); rotate so anatomy is upright when viewed as an image.
            slices.append(np.ascontiguousarray(np.rot90(volume16[:, :, z, t])))
    return slices


def seed_path() -> Path:
    """Path of the held-back seed image (a DICOM CT slice)."""
    return _package_file("pydicom", "data/test_files/CT_small.dcm")


def materialize_source(folder: str | Path) -> list[Path]:
    """Write the embedded source slices as 16-bit PNGs (idempotent) and return their paths."""
    from keras_dkg.runtime.formats.images import write_image

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(source_slices()):
        path = target / f"brain_epi_{index:03d}.png"
        if not path.exists():
            write_image(path, image)
        paths.append(path)
    return paths
