"""`fit --upsample transpose|resize`: the paper's transposed convolutions or nearest ×2 + 3×3
convolution, with the same weights, recorded in run.json, checked on resume, exported with parity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_dkg.errors import TrainingError
from keras_dkg.train import TrainConfig, recipes
from keras_dkg.train.cli import build_parser, config_from


def test_flag_default_is_the_paper_and_resize_is_recorded(tmp_path):
    paper = config_from(build_parser().parse_args(["--out", str(tmp_path / "a")]))
    resize = config_from(build_parser().parse_args(["--out", str(tmp_path / "b"), "--upsample", "resize"]))
    assert paper.upsample == recipes.PAPER["upsample"] == "transpose"
    assert resize.upsample == "resize" and resize.options()["upsample"] == "resize"
    assert resize.recipe_overrides == {"upsample": "resize"}
    assert paper.resume_mismatches(resize.options()) == ["upsample"]
    legacy = {k: v for k, v in paper.options().items() if k != "upsample"}  # a run.json from before the flag
    assert paper.resume_mismatches(legacy) == [] and TrainConfig.from_options(legacy).upsample == "transpose"
    with pytest.raises(TrainingError, match="--upsample"):
        TrainConfig(upsample="bilinear")


def test_resize_generator_has_the_papers_weight_count():
    pytest.importorskip("tensorflow")
    from keras_dkg.train.architecture import parameter_table
    from keras_dkg.train.networks import build_discriminator, build_generator

    transpose, resize = build_generator(1), build_generator(1, upsample="resize")
    assert transpose.count_params() == resize.count_params()
    assert [type(layer).__name__ for layer in resize.layers].count("UpSampling2D") == 2
    assert not any(type(layer).__name__ == "Conv2DTranspose" for layer in resize.layers)
    rows = parameter_table(build_generator(upsample="resize"), build_discriminator())["generator"]
    assert [r.our_kernel_params for r in rows] == [r.our_kernel_params for r in parameter_table(
        build_generator(), build_discriminator())["generator"]]
    out = resize(np.zeros((1, 32, 48, 3), np.float32))
    assert out.shape == (1, 32, 48, 3)


def test_resize_generator_exports_with_parity(tmp_path):
    pytest.importorskip("tf2onnx")
    import keras

    from keras_dkg.export.onnx import export_onnx
    from keras_dkg.export.source import load_source
    from keras_dkg.train.networks import build_generator

    keras.utils.set_random_seed(7)
    run = tmp_path / "run"
    run.mkdir()
    build_generator(1, upsample="resize").save(run / "generator.keras")
    (run / "run.json").write_text(json.dumps({"image_size": 32}))
    result = export_onnx(load_source(run), tmp_path / "generator.onnx")
    assert result.parity.passed, result.parity
    import onnx

    ops = {node.op_type for node in onnx.load(result.path).graph.node}
    assert "ConvTranspose" not in ops and "Conv" in ops, ops
