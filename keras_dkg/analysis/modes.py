"""The two cipher modes side by side: the paper's XOR and the hardened AEAD (docs/hardened.md).

:func:`compare_modes` encrypts two plaintexts with one key image in each mode, through
the production cipher (``keras_dkg.runtime.ciphers``), and measures:

* the **effective key stream** ``raw(C1) ⊕ raw(P1)`` — for XOR exactly the key image's
  first N bytes, for hardened the ChaCha20 stream under the HKDF subkey — with all 15
  NIST SP 800-22 tests (``keras_dkg.analysis.nist.run_all``), entropy and chi-square;
* the ciphertext: entropy, chi-square, adjacent correlations, NPCR/UACI against P1;
* the **known-plaintext attack** (``attacks.known_plaintext_attack``): key bytes from
  (P1, C1) applied to C2 — the share of P2 bytes recovered (XOR: all of them);
* **key reuse** (``attacks.key_reuse_report``): the share of bytes where C1 ⊕ C2 equals
  P1 ⊕ P2 (XOR: all of them), and the share of bytes two encryptions of P1 have in common
  (XOR is deterministic).

NIST verdicts come twice: ``passed`` is the package's strict convention (every p-value of
the test ≥ alpha: a random sequence fails the 148-template test ~77 % of the time) and
``judged`` applies SP 800-22's proportion rule (Section 4.2.1) to the test's own p-values:
pass when the share of p-values ≥ alpha is at least ``1-α - 3·sqrt(α(1-α)/m)`` (m =
their number; for a single p-value that is p ≥ alpha).

``--seed`` makes the hardened salt and nonce reproducible (``encrypt_reproducibly`` below:
analysis only); ``seed=None`` uses fresh OS randomness, as real encryptions do.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keras_dkg.analysis import attacks, differential, metrics
from keras_dkg.errors import DkgError, InputError
from keras_dkg.runtime.ciphers.hardened import NAME, NONCE_BYTES, SALT_BYTES, HardenedCipher
from keras_dkg.runtime.ciphers.metadata import CipherMetadata, fingerprint
from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array, encrypt_with
from keras_dkg.runtime.keys.preprocess import preprocess_uint8

MODES = ("xor", "hardened")
NIST_ALPHA = 0.01
DEFAULT_SIZE = 256
DEFAULT_KEY_METHOD = "chaotic"


# --------------------------------------------------------------------------- inputs


def window_to_uint8(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Any integer/float image to uint8 by a percentile window (8-bit images are kept as they are)."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    values = array.astype(np.float64)
    lo, hi = np.percentile(values, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return np.rint(np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255)).astype(np.uint8)


def prepare_plaintext(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 H×W×3 plaintext of `size`: percentile-windowed, then the runtime's preprocessing."""
    return preprocess_uint8(window_to_uint8(image), size)


def default_plaintexts(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """P1: the embedded real CT slice (pydicom CT_small.dcm) windowed to uint8 RGB at `size`;
    P2: the same slice rotated by 180 degrees (another plaintext, same key)."""
    from keras_dkg.embedded import seed_path
    from keras_dkg.runtime.formats.images import read_image

    path = seed_path()
    p1 = prepare_plaintext(read_image(path), size)
    p2 = np.ascontiguousarray(p1[::-1, ::-1])
    return p1, p2, [f"{path.name} (windowed to uint8, {size[0]}x{size[1]}x3)", f"{path.name} rotated 180°"]


def default_key(size: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, str]:
    """A baseline chaotic (logistic-map) key image of `size` × 3, and its label."""
    from keras_dkg.analysis import baselines

    key = baselines.generate(DEFAULT_KEY_METHOD, (int(size[0]), int(size[1]), 3), seed)
    return key, f"baseline '{DEFAULT_KEY_METHOD}' key (seed {seed})"


# --------------------------------------------------------------------------- measurements


def _bytes(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)


def _as_image(stream: np.ndarray) -> np.ndarray:
    """A flat byte stream as a 1×N image (metrics want 2-D/3-D arrays)."""
    return stream.reshape(1, -1)


def nist_report(stream: np.ndarray, alpha: float = NIST_ALPHA) -> dict:
    """All 15 SP 800-22 tests on a byte stream's bits: per test strict and judged verdicts, min p."""
    from keras_dkg.analysis.nist import run_all
    from keras_dkg.analysis.nist.summary import proportion_interval

    bits = np.unpackbits(np.ascontiguousarray(stream, dtype=np.uint8).reshape(-1))
    tests = []
    for result in run_all(bits, alpha=alpha):
        p_values = [float(p) for p in result.p_values]
        if result.passed is None:
            judged, share = None, None
        else:
            share = float(np.mean([p >= alpha for p in p_values]))
            judged = bool(share >= proportion_interval(len(p_values), alpha)[0]) if len(p_values) > 1 \
                else bool(p_values[0] >= alpha)
        tests.append({
            "name": result.name, "passed": result.passed, "judged": judged,
            "min_p": min(p_values) if p_values else None, "p_count": len(p_values),
            "pass_share": share, "note": result.note,
        })
    applicable = [t for t in tests if t["passed"] is not None]
    return {
        "bits": int(bits.size), "alpha": alpha, "tests": tests, "applicable": len(applicable),
        "passed": sum(bool(t["passed"]) for t in applicable),
        "judged_passed": sum(bool(t["judged"]) for t in applicable),
    }


def _stream_report(stream: np.ndarray, alpha: float, nist: bool) -> dict:
    chi = metrics.chi_square_uniformity(_as_image(stream))
    report = {
        "bytes": int(stream.size), "entropy": metrics.entropy(_as_image(stream)),
        "chi_square": chi.statistic, "chi_square_p": chi.p_value,
    }
    if nist:
        report["nist"] = nist_report(stream, alpha)
    return report


def _cipher_report(plain: np.ndarray, cipher: np.ndarray, npcr_alpha: float, seed: int) -> dict:
    chi = metrics.chi_square_uniformity(cipher)
    corr = metrics.correlations(cipher, seed=seed)
    return {
        "entropy": metrics.entropy(cipher),
        "chi_square_p": chi.p_value,
        "correlation": {d: c.r for d, c in corr.items()},
        "npcr_uaci": differential.npcr_uaci_report(plain, cipher, "plain vs cipher", alpha=npcr_alpha),
    }


def _encrypt(mode: str, plain: np.ndarray, key: np.ndarray, seed: int | None, context: bytes):
    if mode == "hardened" and seed is not None:
        return encrypt_reproducibly(plain, key, seed, context=context)
    return encrypt_array(plain, key, cipher=mode, context=context)


def compare_modes(key: np.ndarray, plain1: np.ndarray, plain2: np.ndarray, *, seed: int | None = 0,
                  alpha: float = NIST_ALPHA, npcr_alpha: float = 0.05, nist: bool = True,
                  context: bytes = b"", modes: tuple[str, ...] = MODES) -> dict:
    """Encrypt P1, P2 (and P1 again) with one key image in each mode and measure what leaks.

    Parameters
    ----------
    key : uint8 H×W×3 key image (for XOR at least as many bytes as a plaintext)
    plain1, plain2 : integer images of one shape and dtype (P2 ≠ P1)
    seed : hardened salts/nonces from ``seed``, ``seed+1``, ``seed+2`` (reproducible, analysis
        only); None: fresh OS randomness. Also seeds the correlation pair sampling.
    alpha : NIST significance level; npcr_alpha : Wu et al. NPCR/UACI level
    nist : run the 15 NIST tests on each key stream (≥ 10^6 bits recommended: 256×256×3 bytes
        give 1.57 M)

    Returns
    -------
    dict: ``plaintext`` (shape, dtype, bytes), ``key`` (shape, fingerprint) and ``modes``
    {mode: {decrypts_bit_exact, keystream {bytes, entropy, chi_square(_p), nist, equals_key_bytes},
    ciphertext {entropy, chi_square_p, correlation, npcr_uaci}, known_plaintext {recovered_key_share,
    p2_exact_share, psnr, psnr_infinite, covered_share}, key_reuse {equal_share, leak_equals_p1_xor_p2,
    p1_bytes_recovered_with_known_p2, ...}, same_plaintext_identical_share}}.
    """
    key = np.ascontiguousarray(key)
    p1, p2 = np.asarray(plain1), np.asarray(plain2)
    if p1.shape != p2.shape or p1.dtype != p2.dtype:
        raise InputError(f"plain1 ({p1.shape} {p1.dtype}) and plain2 ({p2.shape} {p2.dtype}) must match")
    if np.array_equal(p1, p2):
        raise InputError("plain1 and plain2 are the same image; the attacks need two different plaintexts")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise InputError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    key_bytes = key.reshape(-1)
    corr_seed = 0 if seed is None else int(seed)
    out: dict = {
        "plaintext": {"shape": list(p1.shape), "dtype": p1.dtype.name, "bytes": int(p1.nbytes)},
        "key": {"shape": list(key.shape), "fingerprint": fingerprint(key)},
        "seed": seed, "alpha": alpha, "modes": {},
    }
    for index, mode in enumerate(modes):
        base = None if seed is None else int(seed) + 3 * index
        c1, m1 = _encrypt(mode, p1, key, base, context)
        c2, _ = _encrypt(mode, p2, key, None if base is None else base + 1, context)
        c1_again, _ = _encrypt(mode, p1, key, None if base is None else base + 2, context)
        stream = np.bitwise_xor(_bytes(c1), _bytes(p1))
        keystream = _stream_report(stream, alpha, nist)
        keystream["equals_key_bytes"] = bool(stream.size <= key_bytes.size and np.array_equal(stream, key_bytes[:stream.size]))
        recovered = attacks.known_plaintext_attack(p1, c1)
        recovery = attacks.apply_recovered_key(c2, recovered, true_plain=p2).to_dict()
        recovery["recovered_key_share"] = float(np.mean(recovered.reshape(-1) == key_bytes[:recovered.size])) \
            if recovered.size <= key_bytes.size else None
        reuse = attacks.key_reuse_report(c1, c2, p1, p2)
        leak, truth = _bytes(attacks.key_reuse_leak(c1, c2)), np.bitwise_xor(_bytes(p1), _bytes(p2))
        reuse["equal_share"] = float(np.mean(leak == truth))
        out["modes"][mode] = {
            "cipher": m1.cipher,
            "decrypts_bit_exact": bool(np.array_equal(decrypt_array(c1, key, m1, context=context), p1)),
            "keystream": keystream,
            "ciphertext": _cipher_report(p1, c1, npcr_alpha, corr_seed),
            "known_plaintext": recovery,
            "key_reuse": reuse,
            "same_plaintext_identical_share": float(np.mean(_bytes(c1) == _bytes(c1_again))),
        }
    return out


# --------------------------------------------------------------------------- presentation


def _p(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def _verdict(test: dict) -> str:
    if test["passed"] is None:
        reason = test["note"].removeprefix("not applicable: ")
        return f"n/a ({reason.split(' (')[0]})" if reason else "n/a"
    strict = "pass" if test["passed"] else "FAIL"
    if test["p_count"] > 1 and test["judged"] != test["passed"]:
        strict += f" ({'pass' if test['judged'] else 'FAIL'} by proportion {test['pass_share']:.3f})"
    return f"{strict}, min p {_p(test['min_p'])}"


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the side-by-side table (NIST per test, then the summary measures)."""
    modes = list(result["modes"])
    headers = ["measure"] + modes
    rows: list[list[str]] = []
    first = result["modes"][modes[0]]["keystream"]
    if "nist" in first:
        for i, test in enumerate(first["nist"]["tests"]):
            rows.append([f"NIST {test['name']}"] + [_verdict(result["modes"][m]["keystream"]["nist"]["tests"][i])
                                                     for m in modes])
        rows.append(["NIST passed: strict / proportion / applicable"] + [
            f"{n['passed']} / {n['judged_passed']} / {n['applicable']}"
            for n in (result["modes"][m]["keystream"]["nist"] for m in modes)])

    def each(get, fmt=lambda v: f"{v:.4f}"):
        return [fmt(get(result["modes"][m])) for m in modes]

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f} %"

    rows += [
        ["key stream = key image bytes"] + each(lambda r: r["keystream"]["equals_key_bytes"], lambda v: "yes" if v else "no"),
        ["key stream entropy (bits/byte)"] + each(lambda r: r["keystream"]["entropy"]),
        ["key stream chi-square p"] + each(lambda r: r["keystream"]["chi_square_p"], _p),
        ["ciphertext entropy"] + each(lambda r: r["ciphertext"]["entropy"]),
        ["ciphertext NPCR vs plain"] + each(lambda r: r["ciphertext"]["npcr_uaci"]["npcr"], lambda v: f"{v:.4f} %"),
        ["ciphertext UACI vs plain"] + each(lambda r: r["ciphertext"]["npcr_uaci"]["uaci"], lambda v: f"{v:.4f} %"),
        ["KPA: key bytes recovered from (P1, C1)"] + each(lambda r: r["known_plaintext"]["recovered_key_share"], pct),
        ["KPA: P2 bytes recovered from C2"] + each(lambda r: r["known_plaintext"]["exact_share"], pct),
        ["key reuse: C1^C2 == P1^P2 (bytes)"] + each(lambda r: r["key_reuse"]["equal_share"], pct),
        ["same P1 twice: identical cipher bytes"] + each(lambda r: r["same_plaintext_identical_share"], pct),
        ["decrypts bit-exact"] + each(lambda r: r["decrypts_bit_exact"], lambda v: "yes" if v else "NO"),
    ]
    return headers, rows


def load_inputs(key_path: str | Path | None, plain_path: str | Path | None, plain2_path: str | Path | None,
                size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The CLI's inputs: key (file, or baseline), P1 (file, or the embedded CT), P2 (file, or P1 rotated)."""
    from keras_dkg.runtime.formats.images import read_image

    if key_path is not None:
        key = read_image(key_path)
        if key.dtype != np.uint8 or key.ndim != 3 or key.shape[2] != 3:
            raise InputError(f"{key_path}: a key is an H×W×3 uint8 image, got {key.shape} {key.dtype}")
        key_label = str(key_path)
    else:
        if size < 4:
            raise InputError(f"--size must be at least 4, got {size}")
        key, key_label = default_key((size, size), seed)
    shape = key.shape[:2]
    if plain_path is None:
        p1, p2, labels = default_plaintexts(shape)
    else:
        p1 = prepare_plaintext(read_image(plain_path), shape)
        p2 = np.ascontiguousarray(p1[::-1, ::-1])
        labels = [str(plain_path), f"{plain_path} rotated 180°"]
    if plain2_path is not None:
        p2 = prepare_plaintext(read_image(plain2_path), shape)
        labels[1] = str(plain2_path)
    return key, p1, p2, {"key": key_label, "plain1": labels[0], "plain2": labels[1]}


def _seeded_bytes(seed: int) -> Callable[[int], bytes]:
    stream = hashlib.shake_256(f"keras_dkg/hardened/analysis-seed/{int(seed)}".encode()).digest(SALT_BYTES + NONCE_BYTES)
    position = [0]

    def take(count: int) -> bytes:
        start = position[0]
        position[0] += count
        if position[0] > len(stream):
            raise DkgError("seeded randomness exhausted")
        return stream[start:position[0]]

    return take


def encrypt_reproducibly(plain: np.ndarray, key: np.ndarray, seed: int, *, nonce: str | None = None,
                         context: bytes = b"", extra: dict | None = None) -> tuple[np.ndarray, CipherMetadata]:
    """`encrypt_array(..., cipher="hardened")` with salt and nonce derived from `seed`.

    For reproducible analyses and tests only (`dkg-analyze modes --seed`): the same seed and
    key give the same subkey and nonce, which is exactly what a real encryption must never
    do. Decrypts with the ordinary `decrypt_array`.
    """
    return encrypt_with(HardenedCipher(_seeded_bytes(seed)), plain, key, cipher=NAME, nonce=nonce,
                         context=context, extra=extra)
