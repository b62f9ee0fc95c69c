"""SP 800-22 Section 4: interpreting many sequences (proportion passing, uniformity)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from keras_dkg.errors import InputError

from .result import ALPHA, NistResult, igamc

UNIFORMITY_ALPHA = 0.0001  # 4.2.2: P-value_T >= 0.0001 means uniform
MIN_SEQUENCES_UNIFORMITY = 55  # 4.2.2: at least 55 sequences for the uniformity check


def _labels(res: NistResult) -> list[str]:
    stats = res.stats or {}
    for key in ("labels", "templates"):
        if key in stats and len(stats[key]) == len(res.p_values):
            return [str(x) for x in stats[key]]
    return [str(i) for i in range(len(res.p_values))]


def uniformity(p_values: Sequence[float]) -> tuple[list[int], float | None]:
    """10-bin histogram of p-values on [0, 1) and P-value_T = igamc(9/2, chi2/2) (4.2.2)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return [0] * 10, None
    bins = np.minimum((p * 10).astype(np.int64), 9)
    hist = np.bincount(bins, minlength=10)
    expected = p.size / 10.0
    chi2 = float(np.sum((hist - expected) ** 2) / expected)
    return hist.tolist(), float(igamc(4.5, chi2 / 2.0))


def proportion_interval(m: int, alpha: float = ALPHA) -> tuple[float, float]:
    """p_hat +- 3 sqrt(p_hat (1 - p_hat) / m) with p_hat = 1 - alpha (4.2.1)."""
    p_hat = 1.0 - alpha
    half = 3.0 * math.sqrt(p_hat * (1.0 - p_hat) / m)
    return p_hat - half, p_hat + half


def _as_result(res) -> NistResult:
    if isinstance(res, NistResult):
        return res
    if isinstance(res, dict) and "name" in res:  # a to_dict() / JSON form
        return NistResult(res["name"], list(res.get("p_values", [])), res.get("passed"),
                          res.get("note", ""), dict(res.get("stats", {})))
    raise InputError(f"summarize: expected NistResult or its dict form, got {type(res).__name__}")


def summarize(results_per_sequence: list[list[NistResult]], alpha: float = ALPHA) -> list[dict]:
    """Section 4 assessment of many sequences, one row per p-value *stream*.

    A stream is one p-value position of one test (``frequency``; ``cumulative_sums``
    forward and backward; each of the 148 templates; each excursion state; ...), as in
    the reference ``finalAnalysisReport``: the proportion test assumes each sequence
    passes with probability 1 - alpha, which only holds per p-value. Sequences for which
    a test was not applicable (``passed is None``) are left out of that test's rows.

    Each row: ``name`` (test), ``label`` (stream), ``index``, ``sequences`` (m),
    ``passed`` (count with p >= alpha), ``proportion``, ``interval`` [low, high]
    (p_hat +- 3 sqrt(p_hat(1 - p_hat)/m)), ``proportion_ok``, ``histogram`` (10 bins),
    ``uniformity_p`` (igamc(9/2, chi2/2)), ``uniformity_ok`` (>= 0.0001; None with
    fewer than 55 sequences), ``note``. Rows come in order of first appearance.
    Results may also be given in their ``to_dict()`` form.
    """
    streams: dict[tuple[str, int], dict] = {}
    for results in results_per_sequence:
        for res in map(_as_result, results):
            if res.passed is None:
                continue
            labels = _labels(res)
            for i, p in enumerate(res.p_values):
                key = (res.name, i)
                row = streams.setdefault(key, {"name": res.name, "label": labels[i], "index": i,
                                               "p": []})
                row["p"].append(float(p))
    rows = []
    for row in streams.values():
        p = np.asarray(row.pop("p"))
        m = int(p.size)
        passed = int(np.count_nonzero(p >= alpha))
        low, high = proportion_interval(m, alpha)
        hist, p_t = uniformity(p)
        note = []
        if m < MIN_SEQUENCES_UNIFORMITY:
            note.append(f"{m} sequences < {MIN_SEQUENCES_UNIFORMITY}: uniformity not assessed (4.2.2)")
        row.update(
            sequences=m, passed=passed, proportion=passed / m, interval=[low, high],
            proportion_ok=bool(low - 1e-12 <= passed / m <= high + 1e-12),
            histogram=hist, uniformity_p=p_t,
            uniformity_ok=None if m < MIN_SEQUENCES_UNIFORMITY else bool(p_t >= UNIFORMITY_ALPHA),
            note="; ".join(note),
        )
        rows.append(row)
    return rows
