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
* The XOR used here (:func:`raw_xor`) is the reference rule of the cipher contract:
  plaintext raw bytes (little-endian) XOR the first N bytes of the key's C-order
  bytes, never tiled. It does not depend on ``keras_dkg.runtime.cipher``.

No TensorFlow/Keras here; scipy and scikit-image are imported lazily where needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from keras_dkg.errors import InputError, KeyMaterialError

DIRECTIONS = ("horizontal", "vertical", "diagonal")
_OFFSETS = {"horizontal": (0, 1), "vertical": (1, 0), "diagonal": (1, 1)}

#: Expected NPCR (%) of two independent uniform 8-bit images: F/(F+1) with F = 255.
IDEAL_NPCR = 100.0 * 255 / 256  # 99.609375
#: Expected UACI (%) of two independent uniform 8-bit images: (F+2)/(3F+3) with F = 255.
IDEAL_UACI = 100.0 * 257 / 768  # 33.463541...
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


def _array(image, name: str = "image") -> np.ndarray:
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


def _levels_view(image, name: str = "image") -> tuple[np.ndarray, int]:
    """Samples as unsigned integers (bit pattern) and the number of levels L."""
    array = _array(image, name)
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


def _pair(a, b, names=("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    a = _array(a, names[0])
    b = _array(b, names[1])
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
    array, levels = _levels_view(image)
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
    array, levels = _levels_view(image)
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


# --------------------------------------------------------------------------- NPCR / UACI


class NpcrUaci(NamedTuple):
    """NPCR and UACI in percent."""

    npcr: float
    uaci: float


def npcr_uaci(a, b) -> NpcrUaci:
    """NPCR and UACI between two images (paper eqs. 11-12), in percent.

    ``NPCR = 100 · mean(a != b)`` and ``UACI = 100 · mean(|a - b|) / F`` over all
    samples (all channels pooled), ``F = L - 1`` (255 for uint8). The paper's text
    defines D(i, j) = 1 for equal pixels, which is a typo: NPCR counts *changed* samples.

    Parameters
    ----------
    a, b : arrays of the same shape and dtype, H×W or H×W×C, 8- or 16-bit integer

    Returns
    -------
    NpcrUaci(npcr: float in [0, 100], uaci: float in [0, 100])
        Identical images give (0, 0); ``a`` vs ``255 - a`` gives NPCR 100 except where
        ``a == 127.5`` (never for integers) and UACI ``100·mean(|2a-255|)/255``. Two
        independent uniform uint8 images give about 99.6094 / 33.4635.
    """
    a, b = _pair(a, b)
    a, levels = _levels_view(a, "a")
    b, _ = _levels_view(b, "b")
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    npcr = 100.0 * float(np.count_nonzero(diff)) / diff.size
    uaci = 100.0 * float(diff.mean()) / (levels - 1)
    return NpcrUaci(npcr, uaci)


@dataclass(frozen=True)
class NpcrUaciCritical:
    """Wu, Noonan & Agaian (2011) critical values, all in percent."""

    samples: int  # M
    levels: int  # L = F + 1
    alpha: float
    npcr_mean: float
    npcr_std: float
    npcr_critical: float  # N*_alpha: reject randomness if NPCR < this
    uaci_mean: float
    uaci_std: float
    uaci_lower: float  # U*-_alpha
    uaci_upper: float  # U*+_alpha

    def npcr_pass(self, npcr: float) -> bool:
        """One-sided NPCR test: pass when NPCR >= N*_alpha."""
        return bool(npcr >= self.npcr_critical)

    def uaci_pass(self, uaci: float) -> bool:
        """Two-sided UACI test: pass when U*- <= UACI <= U*+."""
        return bool(self.uaci_lower <= uaci <= self.uaci_upper)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def npcr_uaci_critical(shape, alpha: float = 0.05, levels: int = 256) -> NpcrUaciCritical:
    """Critical values of the NPCR and UACI randomness tests (Wu, Noonan, Agaian 2011).

    Under H0 ("the two images are independent and uniform over L = F + 1 levels") with
    ``M`` compared samples:

    * NPCR: mean ``F/(F+1)``, variance ``F/((F+1)^2 M)``, one-sided critical value
      ``N*_alpha = (F - z_alpha·sqrt(F/M)) / (F+1)``, ``z_alpha = Phi^{-1}(1-alpha)``.
    * UACI: mean ``mu = (F+2)/(3F+3)``, variance
      ``sigma^2 = (F+2)(F^2+2F+3) / (18 (F+1)^2 F M)``, two-sided interval
      ``U*± = mu ± z_{alpha/2}·sigma``, ``z_{alpha/2} = Phi^{-1}(1-alpha/2)``.

    (Wu et al. write ``Phi^{-1}(alpha)`` for the upper-tail quantile, hence the signs
    "F - ..." and "mu ∓ ..." in the paper.) For 256×256 and alpha = 0.05 this gives
    N* = 99.5693 %, U*- = 33.2824 %, U*+ = 33.6447 % (their Table). Note
    ``M = prod(shape)``: all H·W·C samples are compared, so for a 256×256×3 key
    M = 196608 (Wu et al. test each 8-bit channel with M = H·W; pooling channels is the
    same test with a larger M).

    Parameters
    ----------
    shape : int or tuple of ints
        Shape of the compared images (or the sample count M directly).
    alpha : float in (0, 1)
        Significance level.
    levels : int
        Number of levels L (256 for uint8).

    Returns
    -------
    NpcrUaciCritical (all values in percent)
    """
    samples = int(shape) if np.isscalar(shape) else int(np.prod(shape))
    if samples <= 0:
        raise InputError(f"npcr_uaci_critical: need a positive sample count, got {shape}")
    if not 0.0 < alpha < 1.0:
        raise InputError(f"npcr_uaci_critical: alpha must be in (0, 1), got {alpha}")
    if levels < 2:
        raise InputError(f"npcr_uaci_critical: need at least 2 levels, got {levels}")
    f = float(levels - 1)
    m = float(samples)
    z1 = NormalDist().inv_cdf(1.0 - alpha)
    z2 = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    npcr_mean = f / (f + 1.0)
    npcr_std = math.sqrt(f / m) / (f + 1.0)
    npcr_star = (f - z1 * math.sqrt(f / m)) / (f + 1.0)
    uaci_mean = (f + 2.0) / (3.0 * f + 3.0)
    uaci_std = math.sqrt((f + 2.0) * (f * f + 2.0 * f + 3.0) / (18.0 * (f + 1.0) ** 2 * f * m))
    return NpcrUaciCritical(
        samples=samples,
        levels=levels,
        alpha=alpha,
        npcr_mean=100.0 * npcr_mean,
        npcr_std=100.0 * npcr_std,
        npcr_critical=100.0 * npcr_star,
        uaci_mean=100.0 * uaci_mean,
        uaci_std=100.0 * uaci_std,
        uaci_lower=100.0 * (uaci_mean - z2 * uaci_std),
        uaci_upper=100.0 * (uaci_mean + z2 * uaci_std),
    )


def npcr_uaci_report(a, b, compared: str, alpha: float = 0.05, **extra) -> dict:
    """NPCR/UACI of ``a`` vs ``b`` with the Wu et al. verdicts; ``compared`` names the pair."""
    result = npcr_uaci(a, b)
    levels = _levels_view(np.asarray(a), "a")[1]
    critical = npcr_uaci_critical(np.shape(a), alpha=alpha, levels=levels)
    report = {
        "compared": compared,
        "npcr": result.npcr,
        "uaci": result.uaci,
        "samples": critical.samples,
        "wu_alpha": alpha,
        "npcr_critical": critical.npcr_critical,
        "uaci_interval": [critical.uaci_lower, critical.uaci_upper],
        "npcr_pass": critical.npcr_pass(result.npcr),
        "uaci_pass": critical.uaci_pass(result.uaci),
        "ideal": {"npcr": critical.npcr_mean, "uaci": critical.uaci_mean},
    }
    report.update(extra)
    return report


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
    a, b = _pair(a, b)
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
    a, b = _pair(a, b)
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

    a, b = _pair(a, b)
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
    array = _channels_last(_array(image))
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


# --------------------------------------------------------------------------- XOR differentials


def raw_xor(data, key) -> np.ndarray:
    """Reference XOR: raw little-endian bytes of ``data`` XOR the first N key bytes.

    Parameters
    ----------
    data : integer array, any shape (8/16/32/64-bit)
    key : uint8 array with at least ``data.nbytes`` bytes (C order; never tiled)

    Returns
    -------
    array of the shape of ``data`` and its dtype in little-endian byte order.
    XOR with the same key twice gives ``data`` back.
    """
    data = np.asarray(data)
    key = np.asarray(key)
    if data.dtype.kind not in "ui":
        raise InputError(f"raw_xor: data must have integer samples, got {data.dtype}")
    if key.dtype != np.uint8:
        raise KeyMaterialError(f"key must be uint8, got {key.dtype}")
    little = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    stream = little.reshape(-1).view(np.uint8)
    key_bytes = np.ascontiguousarray(key).reshape(-1)
    if key_bytes.size < stream.size:
        raise KeyMaterialError(
            f"key has {key_bytes.size} bytes but the data needs {stream.size}; keys are never tiled"
        )
    return np.bitwise_xor(stream, key_bytes[: stream.size]).view(little.dtype).reshape(data.shape)


def key_sensitivity(key_a, key_b, alpha: float = 0.05) -> dict:
    """NPCR/UACI between two keys (paper Table IV: keys from seeds differing in one pixel).

    Parameters
    ----------
    key_a, key_b : uint8 arrays of the same shape (H×W×3)

    Returns
    -------
    dict with ``compared`` (which pair), ``npcr``/``uaci`` (percent), the Wu et al.
    critical values for this size and ``npcr_pass``/``uaci_pass``.
    """
    return npcr_uaci_report(
        key_a, key_b, "key_a vs key_b (keys generated from seeds differing in one pixel; paper Table IV)", alpha
    )


def chosen_plaintext(plain, key_a, key_b, alpha: float = 0.05) -> dict:
    """Paper Table XIV protocol: ONE plaintext encrypted with TWO keys; compare the ciphertexts.

    The paper's Section IV-C3 changes one pixel of the *seed*, generates keys K_a and
    K_b, encrypts the same plaintext P with both and reports NPCR/UACI of
    ``C_a = P ⊕ K_a`` vs ``C_b = P ⊕ K_b``. For XOR, ``C_a ⊕ C_b = K_a ⊕ K_b``, so the
    NPCR equals the NPCR of the two keys whatever P is (reported as ``key_npcr``); this
    is a key-sensitivity test, not a plaintext-sensitivity test — see
    :func:`plaintext_differential` for the classic differential.

    Parameters
    ----------
    plain : uint8 array H×W×C (or 8/16-bit integer)
    key_a, key_b : uint8 keys with at least ``plain.nbytes`` bytes

    Returns
    -------
    dict: ``compared``, ``npcr``, ``uaci`` (percent), Wu verdicts, ``key_npcr``.
    """
    plain = _array(plain, "plain")
    c_a = raw_xor(plain, key_a)
    c_b = raw_xor(plain, key_b)
    key_bytes = plain.nbytes
    key_npcr = 100.0 * float(
        np.count_nonzero(np.asarray(key_a).reshape(-1)[:key_bytes] != np.asarray(key_b).reshape(-1)[:key_bytes])
    ) / key_bytes
    return npcr_uaci_report(
        c_a,
        c_b,
        "C_a = P xor K_a vs C_b = P xor K_b (one plaintext, two keys from seeds differing in one pixel; paper Table XIV)",
        alpha,
        key_npcr=key_npcr,
        note="for XOR, C_a xor C_b = K_a xor K_b, so this NPCR is the keys' byte-change rate whatever P is",
    )


def chosen_ciphertext(cipher, key_a, key_b, alpha: float = 0.05) -> dict:
    """Paper Table XV protocol: ONE ciphertext decrypted with TWO keys; compare the plaintexts.

    ``P_a = C ⊕ K_a`` vs ``P_b = C ⊕ K_b`` with K_a, K_b generated from seeds that differ
    in one pixel. Again ``P_a ⊕ P_b = K_a ⊕ K_b``: it measures key sensitivity only.

    Parameters
    ----------
    cipher : integer array (8/16-bit)
    key_a, key_b : uint8 keys with at least ``cipher.nbytes`` bytes

    Returns
    -------
    dict: ``compared``, ``npcr``, ``uaci`` (percent), Wu verdicts.
    """
    cipher = _array(cipher, "cipher")
    return npcr_uaci_report(
        raw_xor(cipher, key_a),
        raw_xor(cipher, key_b),
        "P_a = C xor K_a vs P_b = C xor K_b (one ciphertext, two keys from seeds differing in one pixel; paper Table XV)",
        alpha,
        note="for XOR, P_a xor P_b = K_a xor K_b, so this only measures key sensitivity",
    )


def plaintext_differential(plain, key, index: int | None = None, seed: int | None = 0, alpha: float = 0.05) -> dict:
    """Classic differential attack: TWO plaintexts differing in ONE sample, the SAME key.

    ``P'`` is ``P`` with the sample at flat index ``index`` (random under ``seed`` if not
    given) changed to ``(v + 1) mod L``; the report compares ``C = P ⊕ K`` and
    ``C' = P' ⊕ K``. With plain XOR exactly one sample of the ciphertext changes, so
    NPCR = 100/(H·W·C) % (≈ 0.0005 % for 256×256×3), far below the 99.61 % a
    diffusing cipher reaches: XOR has no diffusion, and the Wu test fails by design.

    Parameters
    ----------
    plain : integer array (8/16-bit), H×W or H×W×C
    key : uint8 key with at least ``plain.nbytes`` bytes
    index : int, optional
        Flat (C-order) index of the sample to change.

    Returns
    -------
    dict: ``compared``, ``npcr``, ``uaci``, ``expected_npcr`` (= 100/N), ``changed``.
    """
    plain = _array(plain, "plain")
    unsigned, levels = _levels_view(plain, "plain")
    if index is None:
        index = int(np.random.default_rng(seed).integers(plain.size))
    if not 0 <= int(index) < plain.size:
        raise InputError(f"index {index} is outside the image ({plain.size} samples)")
    changed = unsigned.copy().reshape(-1)
    old = int(changed[index])
    changed[index] = (old + 1) % levels
    changed = changed.reshape(plain.shape)
    if plain.dtype.kind == "i":
        changed = changed.view(np.dtype(f"i{plain.dtype.itemsize}"))
    position = [int(i) for i in np.unravel_index(int(index), plain.shape)]
    return npcr_uaci_report(
        raw_xor(plain, key),
        raw_xor(changed, key),
        "C = P xor K vs C' = P' xor K (P' = P with one sample changed; same key)",
        alpha,
        expected_npcr=100.0 / plain.size,
        changed={"index": int(index), "position": position, "from": old, "to": (old + 1) % levels},
        note="plain XOR has no diffusion: one changed plaintext sample changes one ciphertext sample",
    )
