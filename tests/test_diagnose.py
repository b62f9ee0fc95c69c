"""`python -m keras_dkg.diagnose`: the statistics on images with known answers, and a tiny real run."""

import json

import numpy as np
import pytest

from keras_dkg.diagnose import statistics
from keras_dkg.diagnose.cli import main

RUN = ["--steps", "4", "--image-size", "32", "--checkpoint-every", "2", "--residual-blocks", "1", "--no-progress"]


def test_byte_profile_counts_saturated_bytes_per_channel():
    images = np.full((2, 8, 8, 3), 128, np.uint8)
    images[:, :2, :, 0] = 0  # a quarter of channel 0 stuck at 0
    images[:, :, :4, 2] = 255  # half of channel 2 stuck at 255
    profile = statistics.byte_profile(images)
    assert profile["channels"][0]["zero_share"] == pytest.approx(0.25)
    assert profile["channels"][2]["full_share"] == pytest.approx(0.5)
    assert profile["channels"][1]["entropy"] == 0.0 and profile["chi2_p_pooled"] < 1e-6
    ideal = statistics.byte_profile(statistics.uniform_reference((4, 64, 64, 3)))
    assert ideal["entropy_pooled"] > 7.99 and ideal["chi2_p_pooled"] > 1e-3 and ideal["zero_share"] < 0.01


def test_autocorrelation_and_spectrum_find_stripes():
    stripes = np.zeros((2, 32, 32, 3), np.uint8)
    stripes[:, :, ::2] = 200  # vertical stripes, period 2 pixels
    correlation = statistics.autocorrelation(stripes, max_lag=4)
    assert correlation["horizontal"][0] == pytest.approx(-1.0) and correlation["horizontal"][1] == pytest.approx(1.0)
    peaks = statistics.spectral_peaks(stripes)
    assert abs(peaks["peaks"][0]["fx"]) == 0.5 and peaks["peaks"][0]["fy"] == 0.0
    noise = statistics.uniform_reference((4, 32, 32, 3))
    assert max(abs(r) for r in statistics.autocorrelation(noise)["horizontal"]) < 0.05
    assert statistics.spectral_peaks(noise)["peaks"][0]["times_median"] < 20 < peaks["peaks"][0]["times_median"]


def test_sensitivity_and_nonce_relatedness():
    key = statistics.uniform_reference((16, 16, 3))
    same = statistics.one_pixel_sensitivity([(key, key)])
    assert same["npcr"] == 0.0 and same["uaci"] == 0.0
    other = statistics.one_pixel_sensitivity([(key, statistics.uniform_reference((16, 16, 3), seed=1))])
    assert other["npcr"] > 98
    related = statistics.nonce_relatedness(np.stack([key, key, key]))
    assert related["pairs"] == 2 and related["equal_share"] == 1.0 and related["excess_se"] > 10


def test_locality_splits_changed_bytes_at_the_reach():
    key = np.zeros((16, 16, 3), np.uint8)
    twin = key.copy()
    twin[6:11, 6:11] = 1  # every byte within 2 pixels of (8, 8) changed...
    twin[0, 0, 0] = 1  # ...and one byte far away
    reach = np.zeros((16, 16), bool)
    reach[4:13, 4:13] = True  # what the convolutions reach: 81 of 256 pixels
    local = statistics.one_pixel_locality([(key, twin)], [(8, 8)], [reach])
    assert local["bound_npcr"] == pytest.approx(100 * 81 / 256)
    assert local["npcr_inside"] == pytest.approx(100 * 25 / 81)
    assert local["npcr_outside"] == pytest.approx(100 * 1 / ((256 - 81) * 3))
    assert local["changed_outside_share"] == pytest.approx(1 / 76)
    rings = {r["from"]: r["changed_percent"] for r in local["rings"]}
    assert rings[0] == 100.0 and rings[2] == pytest.approx(100 * 16 / 40) and rings[4] == 0.0  # d = 2 of d = 2, 3


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_local_reach_is_exactly_what_convolutions_without_norm_change(upsample):
    """A G-shaped chain without instance norm, all-ones kernels: the output changes exactly on the reach
    (with either of `fit --upsample`'s ways up)."""
    import keras

    from keras_dkg.diagnose.keys import local_reach
    from keras_dkg.train.networks import ReflectionPadding2D

    inputs = keras.Input((None, None, 1))
    x = ReflectionPadding2D(3)(inputs)
    x = keras.layers.Conv2D(1, 7, padding="valid", use_bias=False, kernel_initializer="ones")(x)
    x = keras.layers.Conv2D(1, 3, strides=2, padding="same", use_bias=False, kernel_initializer="ones")(x)
    x = ReflectionPadding2D(1)(x)
    x = keras.layers.Conv2D(1, 3, padding="valid", use_bias=False, kernel_initializer="ones")(x)
    if upsample == "resize":
        x = keras.layers.UpSampling2D(2, interpolation="nearest")(x)
        x = keras.layers.Conv2D(1, 3, padding="same", use_bias=False, kernel_initializer="ones")(x)
    else:
        x = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", use_bias=False,
                                         kernel_initializer="ones")(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", use_bias=False, kernel_initializer="ones")(x)
    chain = keras.Model(inputs, outputs)
    for row, col in ((16, 16), (0, 5), (31, 30)):
        delta = np.zeros((1, 32, 32, 1), np.float32)
        delta[0, row, col] = 1.0
        changed = np.asarray(chain(delta))[0, ..., 0] > 0
        assert np.array_equal(changed, np.outer(local_reach(chain, 32, row), local_reach(chain, 32, col)))
    assert 0 < local_reach(chain, 32, 16).sum() < 32


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from keras_dkg import fit

    out = tmp_path_factory.mktemp("diagnose") / "run"
    assert fit.main([*RUN, "--log-every", "1", "--out", str(out)]) == 0
    return out


def test_diagnose_a_tiny_run(tiny_run, tmp_path, capsys):
    report_path, plots = tmp_path / "report.json", tmp_path / "plots"
    assert main([str(tiny_run), "--json", str(report_path), "--plots", str(plots), "--nonces", "3"]) == 0
    text = capsys.readouterr().out
    assert "one seed pixel changed: NPCR" in text and "share of bytes at 255" in text
    report = json.loads(report_path.read_text())
    assert report["steps_done"] == 4 and report["keys"]["bytes"]["images"] == 3
    assert report["domain"]["bytes"]["entropy_pooled"] > 7.9  # the chaotic domain the run built
    assert report["training"]["steps"] == [1, 2, 3, 4] and len(report["training"]["d_loss"]) == 4
    assert [s["step"] for s in report["sample_entropy"]] == [2, 4]
    assert 0 <= report["one_pixel"]["npcr"] <= 100 and report["nonce_keys"]["pairs"] == 2
    local = report["locality"]
    assert "changed bytes by distance" in text and local["pairs"] == 3  # one per nonce key, at most --pixel-pairs
    assert 0 < local["bound_npcr"] <= 100 and 0 < local["centred_reach_share_256"] < local["centred_reach_share"]
    assert len(report["keys"]["autocorrelation"]["horizontal"]) == statistics.MAX_LAG
    assert sorted(p.name for p in plots.iterdir()) == sorted(
        ["histograms.png", "autocorrelation.png", "spectrum.png", "locality.png", "training.png", "sample_entropy.png",
         "keys.png"])
    # an existing report is kept unless --overwrite
    before = report_path.read_bytes()
    assert main([str(tiny_run), "--json", str(report_path)]) != 0
    assert "refusing to overwrite" in capsys.readouterr().err and report_path.read_bytes() == before


def test_metrics_log_holds_per_step_values(tiny_run):
    """The monitor turns Keras' running means back into each step's value (log every 1 step)."""
    lines = [json.loads(x) for x in (tiny_run / "logs" / "metrics.jsonl").read_text().splitlines()]
    record = json.loads((tiny_run / "run.json").read_text())
    # the final metrics are Keras' running means over the last fit call (steps 3 and 4)
    assert record["summary"]["final_metrics"]["d_loss"] == pytest.approx((lines[2]["d_loss"] + lines[3]["d_loss"]) / 2,
                                                                         abs=1e-5)


def test_not_a_run_folder(tmp_path, capsys):
    assert main([str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run folder" in err[0] and str(tmp_path) in err[0]


def test_older_runs_fall_back_to_tensorboard_scalars(tiny_run, tmp_path):
    """Runs made before logs/metrics.jsonl existed: the TensorBoard running means are read instead."""
    import shutil

    from keras_dkg.diagnose import run_folder

    copy = tmp_path / "old"
    shutil.copytree(tiny_run, copy)
    jsonl = run_folder.training_curves(copy)
    (copy / "logs" / "metrics.jsonl").unlink()
    curves = run_folder.training_curves(copy)
    assert curves["source"].startswith("TensorBoard") and curves["steps"] == [1, 2, 3, 4]
    assert "sample_key_entropy" not in curves
    # running means restart at each checkpoint (every 2 steps): step 2's is the mean of steps 1 and 2
    assert curves["d_loss"][1] == pytest.approx((jsonl["d_loss"][0] + jsonl["d_loss"][1]) / 2, abs=1e-5)
