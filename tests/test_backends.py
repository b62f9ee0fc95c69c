"""One train step, two backends: TensorFlow and JAX agree from the same weights and data.

Each backend runs in its own process (tests/backend_worker.py: the loop's real runner for
that backend). Tolerances: the backends run the same float32 arithmetic through different
kernels (oneDNN / XLA CPU), so values differ by rounding. The losses of the first steps are
compared at rtol 1e-3 (measured: ~1e-5). The weights are compared at 2·lr: Adam moves every
weight by about lr per step whatever its gradient's size, so a weight whose gradient is
near 0 may move in either direction on the two backends; any real difference of the step
(a missing term, a wrong sign, the wrong D) moves the losses by far more than 1e-3.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).parent / "backend_worker.py"
REPO = Path(__file__).parent.parent
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                               reason="JAX is not installed (pip install 'keras-dkg[jax]'; the dev extra has it)")


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    """Images and initial G/D weights that both backends start from."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from keras_dkg.train.networks import build_discriminator, build_generator

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("backends") / "case.npz"
    np.savez(path, batch=2, source=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
             domain=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
             **{f"g_{i:03d}": w for i, w in enumerate(build_generator(1).get_weights())},
             **{f"d_{i:03d}": w for i, w in enumerate(build_discriminator().get_weights())})
    return path


def _run(case: Path, backend: str, *steps: str, env: dict | None = None, label: str = "") -> dict[str, dict]:
    """The named steps (tests/backend_worker.py) in one process of `backend`: {step: its results}."""
    out = case.parent / f"{backend}{label}"
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    done = subprocess.run([sys.executable, str(WORKER), str(case), str(out), *steps], cwd=case.parent,
                          env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {}
    for step in steps:
        with np.load(out / f"{step}.npz") as saved:
            runs[step] = {k: saved[k] for k in saved.files}
    return runs


@pytest.fixture(scope="module")
def jax_runs(case) -> dict[str, dict]:
    return _run(case, "jax", "new", "old")


def _weights(run: dict) -> dict:
    return {k: v for k, v in run.items() if k[:2] in ("g_", "d_")}


def _initial(case: Path) -> dict:
    with np.load(case) as saved:
        return {k: saved[k] for k in saved.files}


@needs_jax
def test_tensorflow_and_jax_steps_agree(case, jax_runs):
    tf_run, jax_run = _run(case, "tensorflow", "new")["new"], jax_runs["new"]
    assert list(tf_run["names"]) == list(jax_run["names"]) == ["d_acc_fake", "d_acc_real", "d_loss", "g_loss"]
    losses = [list(tf_run["names"]).index(n) for n in ("d_loss", "g_loss")]
    np.testing.assert_allclose(jax_run["values"][:, losses], tf_run["values"][:, losses], rtol=1e-3)
    tf_weights, jax_weights = _weights(tf_run), _weights(jax_run)
    moved = max(np.abs(tf_weights[k] - w).max() for k, w in _weights(_initial(case)).items())
    assert moved > 1e-4, "the steps trained"
    for name, value in tf_weights.items():
        np.testing.assert_allclose(jax_weights[name], value, rtol=0, atol=2 * 2e-4, err_msg=name)


@needs_jax
def test_jax_step_reusing_g_of_x_equals_the_old_step(jax_runs):
    new, old = jax_runs["new"], jax_runs["old"]
    np.testing.assert_allclose(new["values"], old["values"], rtol=1e-5, atol=1e-6)
    for name, value in _weights(old).items():  # same arithmetic, same kernels: only rounding can differ
        np.testing.assert_allclose(_weights(new)[name], value, rtol=0, atol=2e-5, err_msg=name)


@needs_jax
def test_jax_data_parallel_on_two_devices_equals_one_device(case, jax_runs):
    """keras.distribution.DataParallel over two (forced) CPU devices: the global batch's gradients."""
    one = jax_runs["new"]
    two = _run(case, "jax", "new", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, label="-2dev")["new"]
    assert int(one["replicas"]) == 1 and int(two["replicas"]) == 2
    np.testing.assert_allclose(two["values"], one["values"], rtol=1e-4, atol=1e-6)
    for name, value in _weights(one).items():
        np.testing.assert_allclose(_weights(two)[name], value, rtol=0, atol=2 * 2e-4, err_msg=name)
