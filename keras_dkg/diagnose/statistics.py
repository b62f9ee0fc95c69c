"""Key statistics an ideal key would not show: saturation, autocorrelation, spectral peaks.

Entropy, chi-square and NPCR/UACI come from keras_dkg.analysis; this module adds what the
paper's tables do not measure but what explains them. Each function takes a stack of
images N×H×W×C uint8 and pools over the stack, so a few small keys still give stable
numbers. `uniform_reference` gives the same statistics for ideal keys of the same shape.
"""

from __future__ import annotations

import numpy as np

from keras_dkg.analysis import metrics
from keras_dkg.reproduce.tablekit import chance_equal, excess_se

MAX_LAG = 8
PEAKS = 5


def _stack(images) -> np.ndarray:
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.dtype != np.uint8:
        raise ValueError(f"expected N×H×W×C uint8 images, got {array.dtype} {array.shape}")
    return array


def byte_profile(images) -> dict:
    """Per channel: entropy, chi-square p, share of bytes at 0 and at 255 (tanh saturation)."""
    stack = _stack(images)
    pooled = stack.reshape(-1, stack.shape[2], stack.shape[3])  # the images one above the other
    channels = []
    for c in range(stack.shape[-1]):
        plane = pooled[..., c]
        chi = metrics.chi_square_uniformity(plane)
        channels.append({"entropy": metrics.entropy(plane), "chi2_p": chi.p_value,
                         "zero_share": float(np.mean(plane == 0)), "full_share": float(np.mean(plane == 255))})
    chi = metrics.chi_square_uniformity(pooled)
    return {"images": int(stack.shape[0]), "entropy_per_image": float(np.mean([metrics.entropy(x) for x in stack])),
            "entropy_pooled": metrics.entropy(pooled), "chi2_p_pooled": chi.p_value,
            "zero_share": float(np.mean(stack == 0)), "full_share": float(np.mean(stack == 255)),
            "channels": channels}


def autocorrelation(images, max_lag: int = MAX_LAG) -> dict:
    """Correlation of each byte with the one `lag` pixels right / down, lags 1..max_lag.

    Every image channel is centred on its own mean first, so differences between channel
    means do not pass for spatial structure. Ideal keys give |r| ≲ 3/sqrt(pairs).
    """
    stack = _stack(images).astype(np.float64)
    stack -= stack.mean(axis=(1, 2), keepdims=True)
    result = {"lags": list(range(1, max_lag + 1)), "horizontal": [], "vertical": []}
    for lag in result["lags"]:
        result["horizontal"].append(metrics.pearson(stack[:, :, :-lag], stack[:, :, lag:]))
        result["vertical"].append(metrics.pearson(stack[:, :-lag], stack[:, lag:]))
    return result


def power_spectrum(images) -> np.ndarray:
    """Mean |FFT2|² over images and channels of the centred images, DC at the centre (fftshift)."""
    stack = _stack(images).astype(np.float64)
    stack -= stack.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(stack, axes=(1, 2))) ** 2
    return np.fft.fftshift(power.mean(axis=(0, 3)))


def spectral_peaks(images, count: int = PEAKS) -> dict:
    """The strongest off-DC frequencies of the mean spectrum, in cycles per pixel and × the median.

    A white key has a flat spectrum: its strongest of ~H·W/2 bins is a few times the median
    (see `uniform_reference`). Bands or a grid show as peaks tens of times the median, at
    the frequency of the stripes (period = 1 / frequency pixels); transposed convolutions
    with stride 2 put theirs at 1/2 and 1/4 cycles per pixel.
    """
    power = power_spectrum(images)
    height, width = power.shape
    fy = np.fft.fftshift(np.fft.fftfreq(height))[:, None] * np.ones((1, width))
    fx = np.ones((height, 1)) * np.fft.fftshift(np.fft.fftfreq(width))[None, :]
    # one of each ± pair (a real image's spectrum is symmetric), without DC
    half = (fx > 0) | ((fx == 0) & (fy > 0)) | ((fx == -0.5) & (fy >= 0))
    values = power[half]
    values = np.maximum(values, 1e-12 * max(float(values.mean()), 1e-300))  # exact zeros (pure stripes)
    median = float(np.median(values))
    order = np.argsort(values)[::-1][:count]
    peaks = [{"fy": float(fy[half][i]), "fx": float(fx[half][i]), "times_median": float(values[i] / median)}
             for i in order]
    flatness = float(np.exp(np.mean(np.log(values))) / np.mean(values))
    return {"peaks": peaks, "flatness": flatness, "median_power": median}


def one_pixel_sensitivity(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Mean NPCR/UACI (%) between keys of seeds one pixel apart (ideal 99.61 / 33.46)."""
    from keras_dkg.analysis.differential import npcr_uaci

    values = [npcr_uaci(a, b) for a, b in pairs]
    return {"pairs": len(values), "npcr": float(np.mean([v.npcr for v in values])),
            "uaci": float(np.mean([v.uaci for v in values])),
            "npcr_min": float(min(v.npcr for v in values))}


RING_EDGES = (0, 2, 4, 8, 16, 32, 64, 128)


def one_pixel_locality(pairs: list[tuple[np.ndarray, np.ndarray]], positions: list[tuple[int, int]],
                       reaches: list[np.ndarray]) -> dict:
    """Where the bytes that a one-pixel seed change moves lie: inside G's local reach or beyond it.

    `reaches[i]` is the H×W mask of key pixels that the change at `positions[i]` reaches
    through G's convolutions (`keys.local_reach`); beyond it only instance norm's image-wide
    statistics carry the change. `bound_npcr` is the NPCR if every reached byte changed and
    no other did, the most a purely local G can give. Rings are Chebyshev distances from
    the changed pixel, so a falling profile shows the change fading inside the reach too.
    """
    inside = outside = inside_total = outside_total = 0
    shares = []
    ring_changed = np.zeros(len(RING_EDGES), np.int64)
    ring_total = np.zeros(len(RING_EDGES), np.int64)
    for (a, b), (row, col), reach in zip(pairs, positions, reaches, strict=True):
        changed = np.asarray(a) != np.asarray(b)  # H×W×C
        mask = np.broadcast_to(reach[..., None], changed.shape)
        inside += int(changed[mask].sum())
        outside += int(changed[~mask].sum())
        inside_total += int(mask.sum())
        outside_total += int((~mask).sum())
        shares.append(float(reach.mean()))
        rows, cols = np.indices(reach.shape)
        distance = np.maximum(abs(rows - row), abs(cols - col))
        ring = np.searchsorted(RING_EDGES, distance, side="right") - 1
        per_pixel = changed.sum(axis=-1)
        ring_changed += np.bincount(ring.ravel(), weights=per_pixel.ravel(), minlength=len(RING_EDGES)).astype(np.int64)
        ring_total += np.bincount(ring.ravel(), minlength=len(RING_EDGES)) * changed.shape[-1]
    rings = [{"from": int(RING_EDGES[i]), "to": None if i + 1 == len(RING_EDGES) else int(RING_EDGES[i + 1]),
              "bytes": int(ring_total[i]), "changed_percent": 100.0 * float(ring_changed[i]) / float(ring_total[i])}
             for i in range(len(RING_EDGES)) if ring_total[i]]
    return {"pairs": len(shares), "reach_share": float(np.mean(shares)), "bound_npcr": 100.0 * float(np.mean(shares)),
            "npcr_inside": 100.0 * inside / inside_total if inside_total else None,
            "npcr_outside": 100.0 * outside / outside_total if outside_total else None,
            "changed_outside_share": outside / (inside + outside) if inside + outside else 0.0, "rings": rings}


def nonce_relatedness(keys) -> dict:
    """Equal-byte share of consecutive keys (one seed, different nonces) vs their histograms' chance."""
    stack = _stack(keys)
    observed = [float(np.mean(a == b)) for a, b in zip(stack[:-1], stack[1:], strict=True)]
    chance = [chance_equal(a, b) for a, b in zip(stack[:-1], stack[1:], strict=True)]
    excess = [excess_se(o, c, stack[0].size) for o, c in zip(observed, chance, strict=True)]
    return {"pairs": len(observed), "equal_share": float(np.mean(observed)), "chance": float(np.mean(chance)),
            "uniform_chance": 1.0 / 256, "excess_se": float(np.mean(excess))}


def uniform_reference(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Uniform random bytes of `shape`: what every statistic above gives for ideal keys."""
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
