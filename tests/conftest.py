"""Shared fixtures: a tiny untrained generator (.keras, run folder) and its ONNX export.

Session-scoped and built once: `keras.utils.set_random_seed(TINY_SEED)` then
`build_generator(TINY_BLOCKS)`, so every run gets the same weights. Training size 64 keeps
exports and parity checks to a second or two. Untrained weights are fine for mechanics
(shapes, parity, byte handling); they say nothing about key quality.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# `--backend auto` measures once per machine and model and caches the choice: one cache per
# test process (and the CLIs it starts), never the user's ~/.cache.
os.environ.setdefault("DKG_ENGINE_CACHE", os.path.join(
    __import__("tempfile").mkdtemp(prefix="dkg-engines-"), "engines.json"))

TINY_SEED = 1234
TINY_BLOCKS = 1
TINY_SIZE = 64


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> Path:
    """A run folder: generator.keras (tiny, untrained) + run.json {"image_size": 64}."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_dkg.export.source import import_keras

    keras = import_keras()
    from keras_dkg.train.networks import build_generator

    folder = tmp_path_factory.mktemp("tiny_run")
    keras.utils.set_random_seed(TINY_SEED)
    build_generator(num_residual_blocks=TINY_BLOCKS).save(folder / "generator.keras")
    (folder / "run.json").write_text(json.dumps({"image_size": TINY_SIZE}))
    return folder


@pytest.fixture(scope="session")
def tiny_generator_keras(tiny_run_dir) -> Path:
    """Path of the tiny generator's .keras file."""
    return tiny_run_dir / "generator.keras"


@pytest.fixture(scope="session")
def tiny_export(tiny_run_dir, tmp_path_factory):
    """The ExportResult of `export_onnx` on the tiny run (parity report included)."""
    from keras_dkg.export.onnx import export_onnx
    from keras_dkg.export.source import load_source

    target = tmp_path_factory.mktemp("tiny_onnx") / "generator.onnx"
    return export_onnx(load_source(tiny_run_dir), target)


@pytest.fixture(scope="session")
def tiny_onnx_model(tiny_export) -> Path:
    """Path of the tiny generator exported to ONNX (training size 64, dynamic N/H/W)."""
    return tiny_export.path
