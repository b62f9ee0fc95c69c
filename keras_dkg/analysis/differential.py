"""NPCR/UACI and the differential tests of the paper (Tables IV, XIV, XV), for XOR ciphers.

Conventions as in :mod:`keras_dkg.analysis.metrics` (all samples pooled, so the Wu et al.
sample count is ``M = H·W·C``). The XOR used here (:func:`raw_xor`) is the reference rule of
the cipher contract: plaintext raw bytes (little-endian) XOR the first N bytes of the key's
C-order bytes, never tiled. It does not depend on ``keras_dkg.runtime.ciphers``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from keras_dkg.analysis.metrics import checked_array, checked_pair, levels_view
from keras_dkg.errors import InputError, KeyMaterialError

#: Expected NPCR (%) of two independent uniform 8-bit images: F/(F+1) with F = 255.
IDEAL_NPCR = 100.0 * 255 / 256  # 99.609375
#: Expected UACI (%) of two independent uniform 8-bit images: (F+2)/(3F+3) with F = 255.
IDEAL_UACI = 100.0 * 257 / 768  # 33.463541...


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
    a, b = checked_pair(a, b)
    a, levels = levels_view(a, "a")
    b, _ = levels_view(b, "b")
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
    levels = levels_view(np.asarray(a), "a")[1]
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
    plain = checked_array(plain, "plain")
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
    cipher = checked_array(cipher, "cipher")
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
    plain = checked_array(plain, "plain")
    unsigned, levels = levels_view(plain, "plain")
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
