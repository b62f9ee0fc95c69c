"""One command-line layer: `dkg COMMAND`, batch options in --help, shared option spellings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from keras_dkg import cli
from keras_dkg.runtime.cli.encrypt import decrypt_main, decrypt_parser, encrypt_main, encrypt_parser


def test_dkg_lists_and_dispatches_every_command(capsys):
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"  {name} " in listed
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    for name in cli.COMMANDS:  # every entry names a real function (imported here, lazily in use)
        module, function = cli.COMMANDS[name][0].split(":")
        assert callable(getattr(__import__(module, fromlist=[function]), function)), name


def test_dkg_runs_a_command_with_its_own_help():
    done = subprocess.run([sys.executable, "-m", "keras_dkg.cli", "decrypt", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "usage: dkg-decrypt" in done.stdout


@pytest.mark.parametrize("parser, flags", [
    (encrypt_parser, ["--batch", "--jobs", "--resume", "--report", "--no-progress", "--key", "--model", "--cipher"]),
    (decrypt_parser, ["--batch", "--jobs", "--verify", "--report", "--no-progress", "--key", "--keys"]),
])
def test_batch_options_are_in_the_help(parser, flags):
    text = parser().format_help()
    for flag in flags:
        assert flag in text, flag
    assert "-o OUTPUT, --output OUTPUT, --out OUTPUT" in text


@pytest.mark.parametrize("main, argv, message", [
    (encrypt_main, ["a.png", "-o", "b.png", "--key", "k.png", "--jobs", "2"], "--jobs only with --batch DIR"),
    (encrypt_main, ["a.png", "--batch", "in", "-o", "out", "--keys", "ks", "--model", "m.onnx", "--seed", "s.png"],
     "give one file or --batch DIR, not both"),
    (encrypt_main, ["--batch", "in", "-o", "out", "--key", "k.png"], "--key is for one file"),
    (encrypt_main, ["--batch", "in", "-o", "out"], "--batch needs --keys KEY_DIR, --model M.onnx, --seed SEED"),
    (decrypt_main, ["c.png", "-o", "b.png", "--key", "k.png", "--verify"], "--verify only with --batch DIR"),
    (decrypt_main, ["c.png", "-o", "b.png"], "give one of --key KEY.png or --keys KEY_DIR"),
    (decrypt_main, ["--batch", "enc", "--keys", "ks"], "--batch needs -o BACK_DIR (or --verify)"),
    (decrypt_main, ["--batch", "enc", "--keys", "ks", "--verify", "-o", "back"],
     "dkg-decrypt: error: --verify writes nothing; leave out -o"),
    (encrypt_main, ["-o", "b.png", "--key", "k.png"], "give the plaintext file (or --batch DIR for a whole folder)"),
])
def test_mixed_single_file_and_batch_options_are_one_line_errors(tmp_path, monkeypatch, capsys, main, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_one_meaning_per_option_name():
    from keras_dkg.train.cli import build_parser

    fit = build_parser()
    new = fit.parse_args(["--random-seed", "3", "-o", "runs/x"])
    old = fit.parse_args(["--seed", "3", "--out", "runs/x"])
    assert (new.seed, new.out) == (old.seed, old.out) == (3, "runs/x")
    assert "--random-seed N, --seed N" in fit.format_help()


def test_dkg_fit_without_out_starts_nothing(tmp_path, monkeypatch, capsys):
    """`dkg fit` with no arguments would train for hours into ./runs/dkg: it needs --out (issue 23)."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out RUN_DIR is required" in err and "20000 steps" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra", ["train", "train-cpu", "jax"])
def test_every_training_extra_brings_the_embedded_data(extra):
    """`pip install "keras-dkg[jax]"` then `python -m keras_dkg.fit --backend jax` stopped with "this
    needs nibabel": each training extra must hold every package keras_dkg/embedded.py reads its
    default data from (issue 23)."""
    import configparser
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    needed = set(re.findall(r'_package_file\("(\w+)"', (root / "keras_dkg" / "embedded.py").read_text()))
    assert needed == {"nibabel", "pydicom"}
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    requirements = config["options.extras_require"][extra].split()
    names = {re.split(r"[<>=!~\[]", requirement)[0].lower() for requirement in requirements}
    assert needed <= names, f"[{extra}] lacks {sorted(needed - names)}"
