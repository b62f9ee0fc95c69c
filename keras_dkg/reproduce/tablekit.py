"""Shared pieces of the table functions: the artifact loader and the row format.

A table entry (one per key of paper_values.json) is::

    {"title": str, "ours": {...}, "notes": [str, ...],
     "tables": [{"caption": str, "columns": [str, ...],
                 "rows": [{"label": str, "values": {column: value}}]}]}

Values are already rounded to what the Markdown shows (floats printed with ``str``),
``None`` where there is nothing to show, or short strings ("inf", "n/a"). The Markdown
report prints exactly these values, so results.json and README.md agree by construction
(and tests/test_reproduce.py checks it).
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

import numpy as np

from keras_dkg.reproduce.datasets import MODALITIES
from keras_dkg.reproduce.runner import Context, read_json
from keras_dkg.runtime.formats.images import read_image

MISSING = None


def num(value, digits: int = 4):
    """Round to `digits` decimals; None for None/NaN; "inf"/"-inf" for infinities."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    rounded = round(value, digits)
    return 0.0 if rounded == 0 else rounded


def sig(value, digits: int = 4):
    """Round to `digits` significant digits (p-values, seconds)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = float(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return 0.0 if value == 0 else float(f"{value:.{digits}g}")


def diff(ours, paper, digits: int = 4):
    """ours − paper, rounded; None unless both are numbers."""
    if isinstance(ours, bool) or isinstance(paper, bool):
        return None
    if not isinstance(ours, int | float) or not isinstance(paper, int | float):
        return None
    if isinstance(ours, int) and isinstance(paper, int):
        return ours - paper
    return num(float(ours) - float(paper), digits)


def mean(values) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return float(np.mean(numbers)) if numbers else None


def row(label: str, **values) -> dict:
    return {"label": label, "values": values}


def table(caption: str, columns: list[str], rows: list[dict]) -> dict:
    for r in rows:
        unknown = set(r["values"]) - set(columns)
        if unknown:
            raise ValueError(f"{caption}: row {r['label']!r} has values for unknown columns {sorted(unknown)}")
        r["values"] = {c: r["values"].get(c) for c in columns}
    return {"caption": caption, "columns": columns, "rows": rows}


def compare_rows(labels, paper, ours, digits: int = 4, **extra_columns) -> list[dict]:
    """Rows "paper / ours / difference" (+ extra columns, lists aligned with labels)."""
    rows = []
    for i, label in enumerate(labels):
        p = paper[i] if paper is not None and i < len(paper) else None
        o = ours[i] if i < len(ours) else None
        values = {"paper": p, "ours": num(o, digits) if isinstance(o, int | float) else o,
                  "difference": diff(o, p, digits)}
        for name, column in extra_columns.items():
            values[name] = column[i] if i < len(column) else None
        rows.append(row(label, **values))
    return rows


def chance_equal(a: np.ndarray, b: np.ndarray) -> float:
    """Share of equal bytes expected for two independent keys with these byte histograms: Σ_v p_a(v)·p_b(v).

    1/256 for uniform keys; more for keys whose bytes are not uniform. Observed agreement
    above it means the keys are related beyond their histograms.
    """
    from keras_dkg.analysis.metrics import histogram

    ha, hb = histogram(a).astype(np.float64), histogram(b).astype(np.float64)
    return float((ha / ha.sum()) @ (hb / hb.sum()))


def excess_se(observed: float, chance: float, n: int) -> float:
    """(observed − chance) in binomial standard errors of a share over n bytes."""
    return (observed - chance) / math.sqrt(max(chance * (1.0 - chance), 1e-300) / n)


def ideal_entropy(n_samples: int) -> float:
    """Expected entropy of n uniform bytes: 8 − 255/(2 n ln 2) (docs/analysis.md)."""
    return 8.0 - 255.0 / (2.0 * n_samples * math.log(2.0))


class Artifacts:
    """Lazy, cached access to what the stages wrote (plaintexts, keys, ciphertexts)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._cache: dict[str, np.ndarray] = {}

    @cached_property
    def manifest(self) -> dict:
        return self.ctx.plaintext_manifest()

    def entries(self, modality: str) -> list[dict]:
        return self.manifest["modalities"][modality]["images"]

    def plaintexts(self, modality: str) -> list[np.ndarray]:
        return [self._image(self.ctx.path("data", "plaintexts", e["file"])) for e in self.entries(modality)]

    def all_plaintexts(self) -> list[np.ndarray]:
        return [p for m in MODALITIES for p in self.plaintexts(m)]

    def key(self, run: str, label: str) -> np.ndarray:
        return self._image(self.ctx.path("keys", run, f"{label}.png"))

    def table_keys(self, run: str = "otp_0") -> list[np.ndarray]:
        return [self.key(run, f"table-{i}") for i in range(1, self.ctx.profile.plaintexts + 1)]

    def ciphers(self, kind: str, modality: str) -> list[np.ndarray]:
        folder = self.ctx.path("ciphers", kind, modality)
        return [self._image(folder / f"{i:02d}.png") for i in range(1, len(self.entries(modality)) + 1)]

    def has_ciphers(self, kind: str) -> bool:
        return self.ctx.path("ciphers", kind).is_dir()

    def stage(self, name: str):
        return self.ctx.result(name)

    def domain_images(self, name: str, count: int = 1) -> list[np.ndarray]:
        folder = self.ctx.path("domains", name)
        return [self._image(p) for p in sorted(Path(folder).glob("domain_*.png"))[:count]]

    def domain_manifest(self, name: str) -> dict:
        return read_json(self.ctx.path("domains", name, "manifest.json"))

    def _image(self, path: Path) -> np.ndarray:
        key = str(path)
        if key not in self._cache:
            self._cache[key] = read_image(path)
        return self._cache[key]
