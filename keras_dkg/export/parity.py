"""Parity of an exported model with Keras, on the real seed image at two sizes.

Case 1: the embedded seed (`keras_dkg.embedded.seed_path()`, a CT slice) at the training
size, batch 1. Case 2: the seed and its mirror image at a non-square other size
(3/4 × 3/2 of the training size, rounded to multiples of 4), batch 2 — so dynamic batch,
height and width are all exercised. Inputs go through the runtime's `preprocess`.

Two figures per case: max |Δ| of the tanh output, and the share of key bytes that
differ after `quantize_key`. An export passes when every case has
max|Δ| <= MAX_ABS_DELTA (1e-3) and differing bytes <= MAX_BYTE_SHARE (1 %); otherwise
the model is not written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from keras_dkg.embedded import seed_path
from keras_dkg.errors import ModelError
from keras_dkg.runtime.formats.images import read_image
from keras_dkg.runtime.keys.preprocess import preprocess, quantize_key

MAX_ABS_DELTA = 1e-3
MAX_BYTE_SHARE = 0.01

Runner = Callable[[np.ndarray], np.ndarray]


def _round4(value: float) -> int:
    return max(4, int(round(value / 4.0)) * 4)


def parity_inputs(training_size: int) -> list[tuple[str, np.ndarray]]:
    """[(label, NHWC float32 batch)] for the two parity cases."""
    seed = read_image(seed_path())
    first = preprocess(seed, training_size)[None]
    other = (_round4(training_size * 0.75), _round4(training_size * 1.5))
    second_image = preprocess(seed, other)
    second = np.stack([second_image, second_image[:, ::-1, :]])
    return [
        (f"seed {training_size}x{training_size} batch 1", first),
        (f"seed {other[0]}x{other[1]} batch 2", np.ascontiguousarray(second)),
    ]


@dataclass
class ParityCase:
    label: str
    shape: list[int]
    max_abs_delta: float
    differing_bytes: float  # share of quantised key bytes that differ
    reference_ms: float
    candidate_ms: float


@dataclass
class ParityReport:
    target: str
    cases: list[ParityCase]
    tolerance: dict = field(default_factory=lambda: {"max_abs_delta": MAX_ABS_DELTA, "differing_bytes": MAX_BYTE_SHARE})

    @property
    def passed(self) -> bool:
        return all(
            case.max_abs_delta <= self.tolerance["max_abs_delta"]
            and case.differing_bytes <= self.tolerance["differing_bytes"]
            for case in self.cases
        )

    def to_dict(self) -> dict:
        return {
            "target": self.target, "passed": self.passed, "tolerance": self.tolerance,
            "cases": [asdict(case) for case in self.cases],
        }

    def lines(self) -> list[str]:
        return [
            f"parity {self.target} {case.label}: max|Δ| {case.max_abs_delta:.2e}, "
            f"differing key bytes {case.differing_bytes:.4%}"
            for case in self.cases
        ]

    def require(self, output: str) -> None:
        """Raise ModelError (nothing written) when a case is outside the tolerance."""
        if not self.passed:
            worst = max(self.cases, key=lambda c: c.max_abs_delta)
            raise ModelError(
                f"{output}: not written — {self.target} export differs from Keras beyond tolerance "
                f"(max|Δ| {worst.max_abs_delta:.2e} > {self.tolerance['max_abs_delta']:g} or differing "
                f"bytes {worst.differing_bytes:.3%} > {self.tolerance['differing_bytes']:.0%}, {worst.label})"
            )


def _timed(run: Runner, batch: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    output = np.asarray(run(batch), dtype=np.float32)
    return output, (time.perf_counter() - start) * 1000.0


def check_parity(reference: Runner, candidate: Runner, training_size: int, target: str) -> ParityReport:
    """Run both on the parity inputs and compare (a non-finite candidate output fails)."""
    cases = []
    for label, batch in parity_inputs(training_size):
        expected, reference_ms = _timed(reference, batch)
        actual, candidate_ms = _timed(candidate, batch)
        if actual.shape != expected.shape:
            raise ModelError(f"{target} export maps {batch.shape} to {actual.shape}; Keras gives {expected.shape}")
        if not np.isfinite(actual).all():
            raise ModelError(f"{target} export outputs NaN or infinite values on {label} (weights lost?)")
        delta = float(np.max(np.abs(actual - expected)))
        differing = float(np.mean(quantize_key(actual) != quantize_key(expected)))
        cases.append(ParityCase(label, list(batch.shape), delta, differing, reference_ms, candidate_ms))
    return ParityReport(target, cases)


def keras_runner(model) -> Runner:
    """Keras inference (training=False) as a numpy function."""
    return lambda batch: np.asarray(model(batch, training=False))
