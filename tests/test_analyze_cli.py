"""dkg-analyze: keys / cipher / nist / baselines, text and --json, plots, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from keras_dkg.analysis import cli
from keras_dkg.analysis.differential import raw_xor
from keras_dkg.runtime.formats.images import write_image


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(5)
    keys = tmp_path / "keys"
    keys.mkdir()
    key_a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    key_b = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    write_image(keys / "a.png", key_a)
    write_image(keys / "b.png", key_b)
    y, x = np.mgrid[0:32, 0:32]
    plain = np.stack([4 * x, 4 * y, 2 * (x + y)], axis=-1).astype(np.uint8)
    write_image(tmp_path / "plain.png", plain)
    write_image(tmp_path / "cipher.png", raw_xor(plain, key_a))
    return {"dir": tmp_path, "keys": keys, "plain": tmp_path / "plain.png", "cipher": tmp_path / "cipher.png"}


def test_keys_text(images, capsys):
    assert cli.main(["keys", str(images["keys"]), "--pairs", "300"]) == 0
    out = capsys.readouterr().out
    assert "a.png" in out and "b.png" in out and "mean" in out
    assert "entropy" in out and "r horiz" in out and "300 random pairs" in out


def test_keys_json(images, capsys):
    assert cli.main(["keys", str(images["keys"] / "a.png"), str(images["keys"] / "b.png"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [k["file"].endswith(n) for k, n in zip(data["keys"], ["a.png", "b.png"], strict=True)] == [True, True]
    first = data["keys"][0]
    assert 7.8 < first["entropy"] <= 8.0 and len(first["entropy_per_channel"]) == 3
    assert set(first["correlation"]) == {"horizontal", "vertical", "diagonal"}
    assert 0.0 <= first["chi_square_p"] <= 1.0 and first["chi_square_df"] == 255
    assert data["mean"]["entropy"] == pytest.approx(np.mean([k["entropy"] for k in data["keys"]]))
    assert data["sampling"] == {"pairs": 10000, "all_pairs": False, "seed": 0}


def test_cipher_text_and_json(images, capsys):
    assert cli.main(["cipher", str(images["plain"]), str(images["cipher"]), "--all-pairs"]) == 0
    out = capsys.readouterr().out
    for word in ("entropy", "MSE", "SSIM", "NPCR", "UACI", "correlation vertical", "Wu et al."):
        assert word in out
    assert cli.main(["cipher", str(images["plain"]), str(images["cipher"]), "--json", "--pairs", "500"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["entropy"]["cipher"] > data["entropy"]["plain"]
    assert data["correlation"]["plain"]["horizontal"] > 0.9
    assert abs(data["correlation"]["cipher"]["horizontal"]) < 0.2
    assert data["mse"] > 1000 and abs(data["ssim"]) < 0.1
    assert data["npcr_uaci"]["compared"] == "plain vs cipher" and data["npcr_uaci"]["npcr"] > 95
    assert data["n_pairs"]["horizontal"] == 500


def test_plots_are_written(images, capsys):
    plots = images["dir"] / "plots"
    assert cli.main(["keys", str(images["keys"]), "--pairs", "200", "--plots", str(plots)]) == 0
    assert cli.main(["cipher", str(images["plain"]), str(images["cipher"]), "--pairs", "200",
                     "--plots", str(plots)]) == 0
    names = sorted(p.name for p in plots.glob("*.png"))
    assert "keys.png" in names and "000_a_histogram.png" in names and "001_b_correlation.png" in names
    assert "cipher_histogram.png" in names and "plain_correlation.png" in names
    assert all((plots / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    # a second run refuses to overwrite, then --overwrite replaces
    capsys.readouterr()
    assert cli.main(["keys", str(images["keys"]), "--plots", str(plots)]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main(["keys", str(images["keys"]), "--plots", str(plots), "--overwrite"]) == 0


def test_bad_input_one_line_error(images, capsys):
    bad = images["dir"] / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert cli.main(["keys", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dkg-analyze: error: ") and err.count("\n") == 1 and "broken.png" in err
    assert cli.main(["cipher", str(images["plain"]), str(images["dir"] / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    small = images["dir"] / "small.png"
    write_image(small, np.zeros((16, 32, 3), np.uint8))
    assert cli.main(["cipher", str(images["plain"]), str(small)]) == 2
    assert "same shape" in capsys.readouterr().err


def test_non_uint8_key_is_refused(images, capsys):
    wide = images["dir"] / "wide.png"
    write_image(wide, np.zeros((8, 8), np.uint16))
    assert cli.main(["keys", str(wide)]) == 2
    assert "uint8" in capsys.readouterr().err


def test_module_entry_point_exit_code(images):
    proc = subprocess.run([sys.executable, "-m", "keras_dkg.analysis.cli", "keys", str(images["dir"] / "nope.png")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("dkg-analyze: error:")


def test_baselines_json_and_text(capsys):
    args = ["baselines", "--shape", "32x32x3", "--seed", "3", "--pairs", "200"]
    assert cli.main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    methods = {m["method"]: m for m in data["methods"]}
    assert set(methods) == {"chaotic", "lcg", "mersenne_twister", "rc4", "rsa", "csprng"}
    assert data["shape"] == [32, 32, 3] and all(m["gen_ms"] >= 0 for m in methods.values())
    assert methods["rsa"]["chi_square_p"] > 0.99  # a counter mod 253: too flat for 3072 bytes
    assert cli.main([*args, "--methods", "lcg,rsa"]) == 0
    out = capsys.readouterr().out
    assert "lcg" in out and "rsa" in out and "chaotic" not in out and "gen ms" in out
    assert cli.main([*args, "--methods", "nope"]) == 2
    assert cli.main(["baselines", "--shape", "32by32"]) == 2


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["baselines", "--help"])
    assert exit_info.value.code == 0
    assert "default: 256x256x3" in capsys.readouterr().out


def test_nist_json(tmp_path, capsys):
    nist = pytest.importorskip("keras_dkg.analysis.nist")
    if not hasattr(nist, "run_all"):  # package still being written
        pytest.skip("keras_dkg.analysis.nist has no run_all yet")
    key = np.random.default_rng(8).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "key.png"
    write_image(path, key)
    assert cli.main(["nist", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"] == str(path) and data["bits"] == key.size * 8
    assert data["tests"] and {"name", "p_values", "passed", "note"} <= set(data["tests"][0])
    name = data["tests"][0]["name"]
    assert cli.main(["nist", str(path), "--tests", name]) == 0
    assert name in capsys.readouterr().out


def test_baselines_with_nist(capsys):
    nist = pytest.importorskip("keras_dkg.analysis.nist")
    if not hasattr(nist, "run_all"):
        pytest.skip("keras_dkg.analysis.nist has no run_all yet")
    assert cli.main(["baselines", "--shape", "32x32x3", "--methods", "csprng,rsa", "--pairs", "200",
                     "--nist", "--json"]) == 0
    methods = {m["method"]: m for m in json.loads(capsys.readouterr().out)["methods"]}
    assert methods["rsa"]["nist_passed"] < methods["csprng"]["nist_passed"]
    assert methods["csprng"]["nist_p_share"] > methods["rsa"]["nist_p_share"]
    assert all({"name", "p_values", "passed", "note"} <= set(t) for t in methods["csprng"]["nist"])
