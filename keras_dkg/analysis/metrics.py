"""Image statistics used in the DeepKeyGen security analysis (paper Section IV).

Conventions (see ``docs/analysis.md`` for the full write-up):

* Images are numpy arrays ``H×W`` (gray) or ``H×W×C`` (colour, channels last).
  Keys are ``256×256×3`` ``uint8``.
* "Level" metrics (entropy, histogram, chi-square, NPCR/UACI) take 8- or 16-bit
  integer samples. Signed samples (e.g. CT ``int16``) are read by their bit pattern
  as the unsigned type of the same size, which is what a byte-wise XOR cipher sees.
  ``uint8`` has ``L = 256`` levels, 16-bit samples ``L = 65536``; ``F = L - 1``.
* Everything is computed over **all samples** (all channels pooled) unless the
  function name says "per channel". For NPCR/UACI this means the Wu et al. sample
  count is ``M = H·W·C``.
* NPCR/UACI, their critical values and the XOR differential tests (Tables IV, XIV, XV)
  are in :mod:`keras_dkg.analysis.differential`.

No TensorFlow/Keras here; scipy and scikit-image are imported lazily where needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from keras_dkg.errors import InputError

DIRECTIONS = ("horizontal", "vertical", "diagonal")
_OFFSETS = {"horizontal": (0, 1), "vertical": (1, 0), "diagonal": (1, 1)}

#: Default number of random adjacent pairs per direction (the paper used 256).
DEFAULT_PAIRS = 10_000
#: SSIM settings passed to skimage.metrics.structural_similarity (its defaults, stated).
SSIM_SETTINGS = {
    "win_size": 7,
    "gaussian_weights": False,
    "K1": 0.01,
    "K2": 0.03,
    "use_sample_covariance": True,
    "channel_axis": "-1 for H×W×C images, None for gray",
    "data_range": "255 for uint8, 65535 for 16-bit (or as given)",
}


# --------------------------------------------------------------------------- helpers


def checked_array(image, name: str = "image") -> np.ndarray:
    try:
        array = np.asarray(image)
    except Exception as exc:  # ragged lists etc.
        raise InputError(f"{name}: cannot be read as an array ({exc})") from exc
    if array.dtype == object or array.dtype.kind not in "uifb":
        raise InputError(f"{name}: unsupported dtype {array.dtype}; expected numeric pixels")
    if array.size == 0:
        raise InputError(f"{name}: is empty (shape {array.shape})")
    if array.ndim not in (2, 3):
        raise InputError(f"{name}: expected H×W or H×W×C, got shape {array.shape}")
    return array


def levels_view(image, name: str = "image") -> tuple[np.ndarray, int]:
    """Samples as unsigned integers (bit pattern) and the number of levels L."""
    array = checked_array(image, name)
    if array.dtype.kind not in "ui" or array.dtype.itemsize not in (1, 2):
        raise InputError(
            f"{name}: level metrics need 8- or 16-bit integer samples, got {array.dtype}"
        )
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    unsigned = np.dtype(f"u{array.dtype.itemsize}")
    if array.dtype != unsigned:
        array = array.view(unsigned) if array.dtype.kind == "i" else array.astype(unsigned)
    return array, 1 << (8 * array.dtype.itemsize)


def checked_pair(a, b, names=("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    a = checked_array(a, names[0])
    b = checked_array(b, names[1])
    if a.shape != b.shape:
        raise InputError(f"{names[0]} and {names[1]} differ in shape: {a.shape} vs {b.shape}")
    if a.dtype != b.dtype:
        raise InputError(f"{names[0]} and {names[1]} differ in dtype: {a.dtype} vs {b.dtype}")
    return a, b


def _channels_last(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 2 else array


# --------------------------------------------------------------------------- entropy


def histogram(image) -> np.ndarray:
    """Count of each level over all samples.

    Parameters
    ----------
    image : array, H×W or H×W×C, uint8 (or 8/16-bit integer)

    Returns
    -------
    numpy.ndarray of int64, shape (L,)
        ``L = 256`` for 8-bit samples (65536 for 16-bit); ``counts[v]`` is the number of
        samples equal to ``v``; the counts sum to ``image.size``.
    """
    array, levels = levels_view(image)
    return np.bincount(array.reshape(-1), minlength=levels).astype(np.int64)


def _entropy_of_counts(counts: np.ndarray) -> float:
    total = counts.sum()
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def entropy(image) -> float:
    """Shannon entropy of the sample values, base 2 (paper eq. 10).

    ``H = -sum_i p_i log2 p_i`` over the empirical distribution of all samples
    (all channels pooled; for uint8 that is all bytes).

    Parameters
    ----------
    image : array, H×W or H×W×C, 8- or 16-bit integer

    Returns
    -------
    float in [0, 8] for 8-bit samples ([0, 16] for 16-bit). A constant image gives 0;
    an image in which all 256 values are equally frequent gives exactly 8. A uniform
    random 256×256×3 key gives about 7.9991 (the finite-sample bias is ~(L-1)/(2N ln 2)).
    """
    return _entropy_of_counts(histogram(image))


def entropy_per_channel(image) -> list[float]:
    """Entropy (eq. 10, base 2) of each channel separately.

    Parameters
    ----------
    image : array, H×W or H×W×C, 8- or 16-bit integer

    Returns
    -------
    list of C floats (one float for a gray image), each in [0, 8] for 8-bit samples.
    """
    array, levels = levels_view(image)
    array = _channels_last(array)
    return [
        _entropy_of_counts(np.bincount(array[..., c].reshape(-1), minlength=levels))
        for c in range(array.shape[-1])
    ]


class ChiSquare(NamedTuple):
    """Pearson chi-square goodness of fit of the histogram to the uniform distribution."""

    statistic: float
    df: int
    p_value: float


def chi_square_uniformity(image) -> ChiSquare:
    """Chi-square test that all levels are equally likely.

    ``chi2 = sum_v (O_v - E)^2 / E`` with ``E = N / L``, ``df = L - 1`` (255 for uint8),
    ``p = P(X >= chi2)`` for X ~ chi-square(df). Small p (< 0.01) rejects uniformity.
    For the approximation to hold, ``E`` should be at least ~5 (N >= 1280 for uint8).

    Parameters
    ----------
    image : array, H×W or H×W×C, 8- or 16-bit integer

    Returns
    -------
    ChiSquare(statistic: float >= 0, df: int, p_value: float in [0, 1])
    """
    from scipy.stats import chi2

    counts = histogram(image).astype(np.float64)
    expected = counts.sum() / counts.size
    statistic = float(((counts - expected) ** 2).sum() / expected)
    df = counts.size - 1
    return ChiSquare(statistic, df, float(chi2.sf(statistic, df)))


# --------------------------------------------------------------------------- similarity


def _data_range(array: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    if array.dtype.kind in "ui":
        info = np.iinfo(array.dtype)
        return float(int(info.max) - int(info.min))
    raise InputError(f"data_range is required for {array.dtype} images")


def mse(a, b) -> float:
    """Mean squared error (paper eq. 13) over all H·W·C samples.

    Parameters
    ----------
    a, b : arrays of the same shape and dtype, H×W or H×W×C

    Returns
    -------
    float >= 0, in squared sample units (uint8: at most 65025). A uniform random key
    XOR a typical image gives roughly 1e4.
    """
    a, b = checked_pair(a, b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr(a, b, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio ``10·log10(R^2 / MSE)`` in dB.

    Parameters
    ----------
    a, b : arrays of the same shape and dtype
    data_range : float, optional
        ``R``; default max - min of the integer dtype (255 for uint8, 65535 for 16-bit).

    Returns
    -------
    float; ``inf`` for identical images.
    """
    a, b = checked_pair(a, b)
    error = mse(a, b)
    peak = _data_range(a, data_range)
    return math.inf if error == 0.0 else float(10.0 * math.log10(peak * peak / error))


def ssim(a, b, data_range: float | None = None) -> float:
    """Structural similarity (paper eq. 14) via ``skimage.metrics.structural_similarity``.

    Settings (skimage defaults, stated here so results are reproducible): 7×7 uniform
    window (``gaussian_weights=False``), ``K1=0.01``, ``K2=0.03``,
    ``use_sample_covariance=True``, ``data_range=255`` for uint8 (65535 for uint16),
    ``channel_axis=-1`` for H×W×C images (mean of the per-channel SSIMs). Images
    smaller than 7 pixels on a side use the largest odd window that fits (>= 3).

    Parameters
    ----------
    a, b : arrays of the same shape and dtype, H×W or H×W×C, each side >= 3

    Returns
    -------
    float in [-1, 1]; 1 for identical images, ~0 for unrelated ones.
    """
    from skimage.metrics import structural_similarity

    a, b = checked_pair(a, b)
    side = min(a.shape[0], a.shape[1])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise InputError(f"ssim: images of shape {a.shape} are too small (need >= 3×3)")
    return float(
        structural_similarity(
            a,
            b,
            data_range=_data_range(a, data_range),
            channel_axis=-1 if a.ndim == 3 else None,
            win_size=win,
        )
    )


# --------------------------------------------------------------------------- correlation


@dataclass
class AdjacentCorrelation:
    """Pearson correlation of adjacent samples in one direction (paper eqs. 15-17)."""

    direction: str
    r: float  # nan when one of the two sample vectors is constant
    n_pairs: int
    all_pairs: bool
    seed: int | None
    x: np.ndarray = field(repr=False)  # first sample of each pair, float64
    y: np.ndarray = field(repr=False)  # its neighbour (right, below, or below-right)

    def to_dict(self, include_pairs: bool = False) -> dict:
        out = {
            "direction": self.direction,
            "r": None if math.isnan(self.r) else self.r,
            "n_pairs": self.n_pairs,
            "all_pairs": self.all_pairs,
            "seed": self.seed,
        }
        if include_pairs:
            out["x"] = self.x.tolist()
            out["y"] = self.y.tolist()
        return out


def pearson(x, y) -> float:
    """Pearson r with population moments (eqs. 15-17); nan if x or y is constant."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape or x.size < 2:
        raise InputError(f"pearson: need two vectors of equal length >= 2, got {x.size} and {y.size}")
    dx = x - x.mean()
    dy = y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator == 0.0:
        return math.nan
    return float(np.clip(float(dx @ dy) / denominator, -1.0, 1.0))


def adjacent_correlation(
    image,
    direction: str = "horizontal",
    pairs: int = DEFAULT_PAIRS,
    seed: int | None = 0,
    all_pairs: bool = False,
) -> AdjacentCorrelation:
    """Correlation of adjacent samples in one direction.

    A pair is a sample at (row, col, channel) and its neighbour at (row, col+1)
    ("horizontal"), (row+1, col) ("vertical") or (row+1, col+1) ("diagonal") in the
    **same channel**. Random mode draws ``pairs`` distinct pair positions uniformly
    (without replacement, all channels pooled) with ``numpy.random.default_rng([seed,
    k])``, k = index of the direction; the paper drew 256 pairs, our default is 10000.
    ``all_pairs=True`` uses every pair (exact, no sampling).

    Parameters
    ----------
    image : array, H×W or H×W×C (H, W >= 2), any real dtype
    direction : {"horizontal", "vertical", "diagonal"}
    pairs : int >= 2; clamped to the number of available pairs
    seed : int or None (None: fresh OS entropy, not reproducible)
    all_pairs : bool

    Returns
    -------
    AdjacentCorrelation with ``r`` in [-1, 1] (nan for a constant image), ``n_pairs``
    and the sampled values ``x``, ``y`` (float64, for scatter plots).
    """
    if direction not in _OFFSETS:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")
    array = _channels_last(checked_array(image))
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError("image contains NaN or infinite values")
    height, width, channels = array.shape
    if height < 2 or width < 2:
        raise InputError(f"image of shape {np.shape(image)} has no adjacent pairs (need H, W >= 2)")
    dr, dc = _OFFSETS[direction]
    first = array[: height - dr, : width - dc, :]
    second = array[dr:, dc:, :]
    total = first.size
    if all_pairs:
        x = first.reshape(-1).astype(np.float64)
        y = second.reshape(-1).astype(np.float64)
        used_seed = None
    else:
        if int(pairs) < 2:
            raise InputError(f"pairs must be >= 2, got {pairs}")
        count = min(int(pairs), total)
        entropy_source = None if seed is None else [int(seed), DIRECTIONS.index(direction)]
        rng = np.random.default_rng(entropy_source)
        flat = rng.choice(total, size=count, replace=False)
        rows, cols, chans = np.unravel_index(flat, first.shape)
        x = first[rows, cols, chans].astype(np.float64)
        y = second[rows, cols, chans].astype(np.float64)
        used_seed = seed
    return AdjacentCorrelation(direction, pearson(x, y), int(x.size), bool(all_pairs), used_seed, x, y)


def correlations(
    image, pairs: int = DEFAULT_PAIRS, seed: int | None = 0, all_pairs: bool = False
) -> dict[str, AdjacentCorrelation]:
    """:func:`adjacent_correlation` for the three directions, keyed by direction."""
    return {d: adjacent_correlation(image, d, pairs=pairs, seed=seed, all_pairs=all_pairs) for d in DIRECTIONS}
