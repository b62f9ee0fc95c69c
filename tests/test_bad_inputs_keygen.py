"""The bad-input matrix, keygen round (issue classes 2, 4, 6, 7 on the dkg-keygen side): a
model that is a stream, device, folder or too big is refused by type or size before it is
read; --size and --count have upper bounds and give one line when malformed; no output
(KEY.png or KEY.json of any --count key) may replace the seed or the model or lie in a key
store, even with --overwrite — all checked before the model is loaded.
"""

from __future__ import annotations

import os

import numpy as np
from badinput_kit import Matrix, check_case, image

from keras_dkg.runtime.keys import generator as keygen
from keras_dkg.runtime.keystore.store import KeyStore

MATRIX = Matrix()
case = MATRIX.case


def keygen_argv(env, model: str | None = None, seed: str | None = None, out: str = "out/key.png") -> list[str]:
    env.folder("out")
    return ["--model", model or env.model, "--seed", seed or env.seed, "-o", out, "--provider", "cpu"]


def png_seed(env, relative: str = "seed.png") -> str:
    return image(env, relative, shape=(24, 20, 3), dtype=np.uint8)


# ---- the model: refused by type and size before it is read -----------------------------------

@case("kg-model-fifo", "dkg-keygen", "--model a FIFO (reading it would block forever)", 2,
      r"pipe\.onnx: is a FIFO \(named pipe\), not a regular file; expected a model")
def _(env):
    os.mkfifo(env.path("pipe.onnx"))
    return keygen_argv(env, model="pipe.onnx")


@case("kg-model-dev-zero", "dkg-keygen", "--model a link to /dev/zero (never ends)", 2,
      r"zero\.onnx: is a character device, not a regular file; expected a model")
def _(env):
    os.symlink("/dev/zero", env.path("zero.onnx"))
    return keygen_argv(env, model="zero.onnx")


@case("kg-model-folder", "dkg-keygen", "--model a folder", 2,
      r"models: is a folder, not a regular file; expected a model")
def _(env):
    return keygen_argv(env, model=env.folder("models"))


@case("kg-model-missing", "dkg-keygen", "--model that does not exist", 2, r"missing\.onnx: no such file")
def _(env):
    return keygen_argv(env, model="missing.onnx")


@case("kg-model-too-big", "dkg-keygen", "--model over MAX_MODEL_BYTES (limit lowered to 1000 bytes)", 2,
      r"g\.onnx: model is \d+ bytes, over the 1000 byte limit")
def _(env):
    env.monkeypatch.setattr(keygen, "MAX_MODEL_BYTES", 1000)
    return keygen_argv(env)


# ---- the seed ---------------------------------------------------------------------------------

@case("kg-seed-dev-zero", "dkg-keygen", "--seed a link to /dev/zero", 2,
      r"zero\.png: is a character device, not a regular file; expected a seed")
def _(env):
    os.symlink("/dev/zero", env.path("zero.png"))
    return keygen_argv(env, seed="zero.png")


@case("kg-seed-own-size-too-big", "dkg-keygen", "no --size, a seed larger than MAX_KEY_PIXELS (limit lowered to 100)", 2,
      r"seed\.png \(the seed's own size\): a 24x20 key is 480 pixels, over the limit of 100 pixels per key")
def _(env):
    env.monkeypatch.setattr(keygen, "MAX_KEY_PIXELS", 100)
    return keygen_argv(env, seed=png_seed(env))


# ---- --size and --count -----------------------------------------------------------------------

@case("kg-size-50000", "dkg-keygen", "--size 50000 (a 2.5-gigapixel key)", 2,
      r"--size 50000: a 50000x50000 key is 2500000000 pixels, over the limit of 134217728 pixels per key")
def _(env):
    return [*keygen_argv(env), "--size", "50000"]


@case("kg-size-too-wide", "dkg-keygen", "--size 8x2000000 (wider than PNG allows)", 2,
      r"--size 8x2000000: a 8x2000000 key has a side over 1000000 pixels, which PNG cannot store")
def _(env):
    return [*keygen_argv(env), "--size", "8x2000000"]


@case("kg-size-three-parts", "dkg-keygen", "--size 16x16x3", 2,
      r"size '16x16x3' is not N or HxW \(give height and width only; keys are RGB\)")
def _(env):
    return [*keygen_argv(env), "--size", "16x16x3"]


@case("kg-count-too-many", "dkg-keygen", "--count 20000", 2, r"--count 20000 is over the limit of 10000 keys per run")
def _(env):
    return [*keygen_argv(env), "--count", "20000"]


# ---- outputs: never an input, never in a key store, all checked first -------------------------

@case("kg-output-is-seed", "dkg-keygen", "-o the seed image itself, with --overwrite", 2,
      r"seed\.png: is an input \(the seed seed\.png\); the key never replaces an input, even with --overwrite")
def _(env):
    seed = png_seed(env)
    return [*keygen_argv(env, seed=seed, out=seed), "--overwrite"]


@case("kg-output-is-model", "dkg-keygen", "-o the model (a generator named gen.png), with --overwrite", 2,
      r"gen\.png: is an input \(the model gen\.png\); the key never replaces an input")
def _(env):
    model = env.link("gen.png", "tiny_onnx_model")
    return [*keygen_argv(env, model=model, out=model), "--overwrite"]


@case("kg-output-hardlink-of-model", "dkg-keygen", "-o a hard link to the model's file, with --overwrite", 2,
      r"out/key\.png: is an input \(the model g\.onnx\); the key never replaces an input")
def _(env):
    argv = keygen_argv(env)
    os.link(os.path.realpath(env.root / env.model), env.path("out/key.png"))
    return [*argv, "--overwrite"]


@case("kg-record-is-model", "dkg-keygen", "KEY.json of -o is the model (named out/key.json), with --overwrite", 2,
      r"out/key\.json: is an input \(the model out/key\.json\); the key record never replaces an input")
def _(env):
    model = env.link("out/key.json", "tiny_onnx_model")
    return [*keygen_argv(env, model=model), "--overwrite"]


@case("kg-output-in-key-store", "dkg-keygen", "-o inside a key store's keys/ folder, with --overwrite", 2,
      r"ks/keys/mine\.png: is inside the key store \S*ks; only the key store itself writes there")
def _(env):
    KeyStore(env.root / "ks", create=True)
    return [*keygen_argv(env, out="ks/keys/mine.png"), "--overwrite"]


@case("kg-count-record-in-store", "dkg-keygen", "--count 3 -o ks/k.png: every key lands in the key store", 2,
      r"ks/k_000\.png: is inside the key store")
def _(env):
    KeyStore(env.root / "ks", create=True)
    return [*keygen_argv(env, out="ks/k.png"), "--count", "3"]


@case("kg-count-last-record-exists", "dkg-keygen", "--count 3 where the third key's record exists", 2,
      r"out/key_002\.json: exists; refusing to overwrite \(use --overwrite\)",
      "nothing written: every key and record path is checked before the model is loaded")
def _(env):
    argv = [*keygen_argv(env), "--count", "3", "--size", "16"]
    env.write("out/key_002.json", b"{}")
    return argv


@MATRIX.parametrize()
def test_bad_input(case, tmp_path, request, monkeypatch, capfd):
    check_case(case, tmp_path, request, monkeypatch, capfd)
