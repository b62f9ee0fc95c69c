"""`python -m keras_dkg.fit` end to end on the embedded data: outputs, resume, NaN stop, bad input."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_dkg.train.networks  # noqa: F401  (registers the custom layers for load_model)
from keras_dkg import fit
from keras_dkg.runtime.formats.images import read_image, write_image
from keras_dkg.train.losses import GANLoss

TINY = ["--image-size", "32", "--checkpoint-every", "3", "--no-progress"]


def _weights(run_dir):
    return keras.models.load_model(run_dir / "generator.keras").get_weights()


def test_cli_end_to_end_on_embedded_data(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "keras_dkg.fit", "--steps", "4", "--out", str(out), *TINY],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((out / "run.json").read_text())
    assert record["summary"]["status"] == "finished"
    assert record["summary"]["steps_done"] == 4
    assert record["options"]["domain_kind"] == "chaotic"
    assert record["summary"]["domain_mean_entropy"] > 7.9
    assert (out / "samples" / "key_final.png").is_file()
    assert list((out / "logs").iterdir()), "TensorBoard events expected"
    generator = keras.models.load_model(out / "generator.keras")
    assert generator.output_shape == (None, None, None, 3)
    key = read_image(out / "samples" / "key_final.png")
    assert key.shape == (32, 32, 3) and key.dtype == np.uint8


def test_resume_equals_uninterrupted_run(tmp_path):
    assert fit.main(["--steps", "6", "--out", str(tmp_path / "straight"), *TINY]) == 0
    assert fit.main(["--steps", "3", "--out", str(tmp_path / "split"), *TINY]) == 0
    assert fit.main(["--steps", "6", "--out", str(tmp_path / "split"), "--resume", *TINY]) == 0
    record = json.loads((tmp_path / "split" / "run.json").read_text())
    assert record["summary"]["steps_done"] == 6 and record["summary"]["steps_this_session"] == 3
    for a, b in zip(_weights(tmp_path / "straight"), _weights(tmp_path / "split"), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_existing_run_is_not_overwritten_and_resume_checks_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert fit.main(["--steps", "3", "--out", str(out), *TINY]) == 0
    assert fit.main(["--steps", "3", "--out", str(out), *TINY]) != 0
    assert "pass --resume" in capsys.readouterr().err
    assert fit.main(["--steps", "6", "--out", str(out), "--resume", "--seed", "9", *TINY]) != 0
    assert "different settings (seed)" in capsys.readouterr().err
    assert fit.main(["--steps", "3", "--out", str(tmp_path / "none"), "--resume", *TINY]) != 0


def test_nan_loss_stops_with_a_clear_message(tmp_path, monkeypatch, capsys):
    original = GANLoss.generator
    monkeypatch.setattr(GANLoss, "generator", lambda self, logits: original(self, logits) * tf.constant(np.nan))
    assert fit.main(["--steps", "6", "--out", str(tmp_path / "run"), *TINY]) != 0
    err = capsys.readouterr().err
    assert "diverged at step 1" in err and "g_loss=nan" in err
    assert not (tmp_path / "run" / "generator.keras").exists()


@pytest.mark.parametrize("args, message", [
    (["--image-size", "30"], "multiple of 4"),
    (["--steps", "0"], "--steps must be at least 1"),
])
def test_bad_arguments(tmp_path, capsys, args, message):
    assert fit.main(["--out", str(tmp_path / "run"), "--no-progress", *args]) != 0
    assert message in capsys.readouterr().err


def test_bad_source_folders(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fit.main(["--source", str(empty), "--out", str(tmp_path / "r1"), *TINY]) != 0
    assert "no images found" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    write_image(broken / "ok.png", np.zeros((8, 8), np.uint8))
    (broken / "bad.png").write_bytes(b"not a png at all")
    assert fit.main(["--source", str(broken), "--out", str(tmp_path / "r2"), *TINY]) != 0
    err = capsys.readouterr().err
    assert "bad.png" in err and "not a readable image" in err
