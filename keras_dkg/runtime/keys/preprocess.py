"""The one preprocessing function shared by training and key generation.

A key must never depend on which path made it, so `keras_dkg.train.data` (training) and
`keras_dkg.runtime.keys.generator` (inference) both call `preprocess` from here; it uses only
numpy and OpenCV.

Rules (documented in docs/data.md, "Preprocessing"):
* any image becomes uint8 RGB: gray is repeated to three channels, alpha is dropped,
  non-uint8 data (16-bit DICOM/PNG, floats) is min-max windowed to 0..255;
* it is resized to the requested size (INTER_AREA to shrink, INTER_LINEAR to grow);
* it is scaled to float32 in [-1, 1] as ``x / 127.5 - 1``;
* generator outputs y in [-1, 1] become key bytes as ``clip(round((y + 1) * 127.5), 0, 255)``.
"""

from __future__ import annotations

import cv2
import numpy as np

from keras_dkg.errors import InputError, ModelError

PREPROCESSING_SPEC = (
    "uint8 RGB (gray repeated, alpha dropped, non-uint8 min-max windowed to 0..255); "
    "resize INTER_AREA down / INTER_LINEAR up; x/127.5-1 -> float32 NHWC"
)
QUANTISATION_RULE = "uint8 = clip(round((y + 1) * 127.5), 0, 255)"
_WINDOW_BAND_VALUES = 1 << 22  # values per float64 band in _window_to_uint8 (32 MB)


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Return an H×W×3 uint8 RGB view of any 2-D, H×W×1, H×W×3 or H×W×4 image."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise InputError(f"expected a 2-D gray or H×W×3 image, got shape {array.shape}")
    if array.size == 0:
        raise InputError(f"image is empty (shape {array.shape})")
    if array.dtype != np.uint8:
        array = _window_to_uint8(array)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array)


def _window_to_uint8(array: np.ndarray) -> np.ndarray:
    """Min-max window to 0..255; medical data rarely uses its dtype's full range.

    Done in float64 a band of rows at a time (the same operations per value, so the same
    bytes as one pass): a whole large seed in float64 costs 8 bytes per value per temporary.
    """
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise InputError("image contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())  # float() rounds monotonically: same as in float64
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    scale = 255.0 / (high - low)
    result = np.empty(array.shape, dtype=np.uint8)
    rows = max(1, _WINDOW_BAND_VALUES // max(1, array[0].size))
    for start in range(0, array.shape[0], rows):
        values = array[start:start + rows].astype(np.float64)
        values -= low
        values *= scale
        np.rint(values, out=values)
        result[start:start + rows] = np.clip(values, 0, 255, out=values)
    return result


def parse_size(size: int | tuple[int, int] | str | None) -> tuple[int, int] | None:
    """Accept 256, (h, w) or "HxW"; return (h, w) or None. Anything else is one InputError."""
    if size is None:
        return None
    if isinstance(size, str):
        parts = size.lower().replace("×", "x").split("x")
        try:
            numbers = [int(p) for p in parts]
        except ValueError as exc:
            raise InputError(f"size {size!r} is not N or HxW") from exc
        if len(numbers) > 2:  # "16x16x3": keys always have 3 channels, the size is H and W only
            raise InputError(f"size {size!r} is not N or HxW (give height and width only; keys are RGB)")
        size = (numbers[0], numbers[0]) if len(numbers) == 1 else tuple(numbers)  # type: ignore[assignment]
    if isinstance(size, int | np.integer):
        size = (int(size), int(size))
    try:
        height, width = (int(v) for v in size)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise InputError(f"size {size!r} is not N or (height, width)") from exc
    if height <= 0 or width <= 0:
        raise InputError(f"size must be positive, got {height}x{width}")
    return height, width


def resize_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an H×W×3 uint8 image to (height, width) deterministically."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def preprocess_uint8(image: np.ndarray, size: int | tuple[int, int] | str | None) -> np.ndarray:
    """Any image → H×W×3 uint8 RGB at `size` (None keeps the image's own size)."""
    rgb = to_uint8_rgb(image)
    target = parse_size(size)
    return rgb if target is None else resize_uint8(rgb, target)


def scale_to_unit(image_uint8: np.ndarray) -> np.ndarray:
    """uint8 0..255 → float32 in [-1, 1]."""
    return image_uint8.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def preprocess(image: np.ndarray, size: int | tuple[int, int] | str | None = None) -> np.ndarray:
    """Any image → float32 H×W×3 in [-1, 1], the generator's input."""
    return scale_to_unit(preprocess_uint8(image, size))


def quantize_key(output: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] → key bytes (uint8), the one rule used everywhere."""
    values = np.asarray(output, dtype=np.float32)
    if not np.isfinite(values).all():
        raise ModelError("generator output contains NaN or infinite values (broken weights?)")
    return np.clip(np.rint((values + 1.0) * 127.5), 0, 255).astype(np.uint8)
