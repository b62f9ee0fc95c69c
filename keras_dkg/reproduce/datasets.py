"""Plaintexts per modality and the training source, labelled by what they really are.

The paper encrypts chest X-rays (Montgomery), ultrasound (Brachial Plexus) and brain MRI
(BraTS18). None of these ships in a registry package, so by default we use what the
installed wheels embed and say so in every table:

* ``xray``: NO chest X-ray is embedded. The substitute is the CT slice(s) that pydicom
  ships (``CT_small.dcm``, 128×128, 16-bit) — one image, which is also the key seed.
* ``ultrasound``: pydicom's ultrasound examples: ``examples_rgb_color.dcm`` (US, RGB,
  uncompressed) and frames of ``examples_ybr_color.dcm`` (US, JPEG baseline; decoded
  with Pillow when available). Not brachial plexus.
* ``mri``: slices of nibabel's brain EPI (fMRI) volume, the same volume our training
  source comes from (the paper's BraTS18 images were not in its training source).

``--xray DIR`` / ``--ultrasound DIR`` / ``--mri DIR`` replace a modality with the first
``n`` images (sorted) of the user's folder. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

import numpy as np

from keras_dkg import embedded
from keras_dkg.common import short_error
from keras_dkg.runtime.formats.images import read_image, write_image
from keras_dkg.runtime.formats.sources import source_files, source_images
from keras_dkg.runtime.keys.preprocess import preprocess_uint8

MODALITIES = ("xray", "ultrasound", "mri")
PAPER_DATASETS = {
    "xray": "Montgomery County chest X-ray",
    "ultrasound": "Ultrasonic Brachial Plexus",
    "mri": "BraTS18 brain MRI",
}
EMBEDDED_LABELS = {
    "xray": "SUBSTITUTE — no chest X-ray is embedded: pydicom's CT slice CT_small.dcm (128×128, 16-bit CT)",
    "ultrasound": "pydicom's ultrasound examples (examples_rgb_color.dcm; frames of examples_ybr_color.dcm) "
                  "— not brachial plexus",
    "mri": "slices of nibabel's brain EPI volume example4d.nii.gz (fMRI, 128×96) — also our training source",
}
VALIDATION_EVERY = 10  # Table XXI: every 10th source image is held out (the paper: 90 % / 10 %)


def _pydicom_file(name: str) -> Path:
    return Path(str(importlib.resources.files("pydicom").joinpath("data", "test_files", name)))


def _embedded_xray(count: int) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    return [("CT_small.dcm", read_image(embedded.seed_path()))][:count], []


def _embedded_ultrasound(count: int) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    images = [("examples_rgb_color.dcm", read_image(_pydicom_file("examples_rgb_color.dcm")))]
    notes = []
    try:
        import pydicom

        frames = pydicom.dcmread(_pydicom_file("examples_ybr_color.dcm")).pixel_array
        picks = np.linspace(0, frames.shape[0] - 1, num=max(count - 1, 1)).round().astype(int)
        images += [(f"examples_ybr_color.dcm frame {int(i)}", np.ascontiguousarray(frames[i])) for i in picks]
    except Exception as exc:  # no JPEG decoder, file missing, ...
        notes.append(f"examples_ybr_color.dcm not decodable here ({type(exc).__name__}: {short_error(exc, 120)}); "
                     "only the uncompressed ultrasound image is used")
    return images[:count], notes


def _embedded_mri(count: int) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    slices = embedded.source_slices()
    first_volume = len(slices) // 2  # 24 slices of the first time point
    picks = np.linspace(4, first_volume - 5, num=count).round().astype(int)
    return [(f"example4d.nii.gz slice {int(i)} (t=0)", slices[i]) for i in picks], []


EMBEDDED = {"xray": _embedded_xray, "ultrasound": _embedded_ultrasound, "mri": _embedded_mri}


def _user_images(folder: str, count: int) -> list[tuple[str, np.ndarray]]:
    """The first `count` images of a folder; a NIfTI volume gives one, its middle kept axial slice
    (a BraTS folder: one slice per case and modality; `*_seg` label maps are not images)."""
    images = []
    for path in source_files(folder):
        if path.name.lower().endswith(("_seg.nii", "_seg.nii.gz")):
            continue
        slices = source_images(path)
        label, pixels = slices[len(slices) // 2]
        images.append((str(label), pixels))
        if len(images) == count:
            break
    return images


def prepare_plaintexts(out: Path, size: int, count: int, options: dict) -> dict:
    """Write uint8 RGB plaintexts at size×size to out/<modality>/NN.png; return the manifest.

    Gray images are repeated to three channels and 16-bit images min-max windowed to
    8 bits (the runtime's one preprocessing rule), so a size×size×3 key covers each
    plaintext exactly, as the paper's 256×256×3 keys cover its images.
    """
    manifest: dict = {"size": size, "modalities": {}}
    for modality in MODALITIES:
        folder = options.get(modality)
        if folder:
            images, notes, label = _user_images(folder, count), [], f"user data from {folder}"
        else:
            images, notes = EMBEDDED[modality](count)
            label = EMBEDDED_LABELS[modality]
        target = out / modality
        target.mkdir(parents=True, exist_ok=True)
        entries = []
        for index, (origin, pixels) in enumerate(images):
            plain = preprocess_uint8(pixels, size)
            name = f"{index + 1:02d}.png"
            write_image(target / name, plain, overwrite=True)
            entries.append({"file": f"{modality}/{name}", "origin": origin,
                            "original_shape": list(pixels.shape), "original_dtype": str(pixels.dtype)})
        if len(entries) < count:
            notes.append(f"only {len(entries)} image(s) available, the paper used {count}")
        manifest["modalities"][modality] = {"label": label, "paper_dataset": PAPER_DATASETS[modality],
                                            "embedded": not folder, "images": entries, "notes": notes}
    return manifest


def prepare_source(out: Path, source: str | None) -> tuple[Path, str]:
    """The training source folder (embedded brain EPI slices by default) and its label."""
    if source:
        source_files(source)  # InputError when it holds no images or volumes
        return Path(source).resolve(), f"user data from {source}"
    target = out / "source"
    embedded.materialize_source(target)
    return target, embedded.SOURCE_DESCRIPTION


def split_source(source: Path, out: Path) -> dict:
    """Copy the source into train (9 of 10) and validation (every 10th) folders (Table XXI)."""
    paths = source_files(source)  # volumes are split whole, by file
    train, validation = out / "grid_train", out / "grid_validation"
    for folder in (train, validation):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    chosen = []
    for index, path in enumerate(paths):
        held_out = index % VALIDATION_EVERY == 0
        suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()
        target = (validation if held_out else train) / f"{index:04d}{suffix}"
        shutil.copy2(path, target)
        if held_out:
            chosen.append(str(path))
    return {"train": str(train), "validation": str(validation), "train_count": len(paths) - len(chosen),
            "validation_count": len(chosen), "validation_images": chosen}
