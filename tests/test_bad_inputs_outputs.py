"""The bad-input matrix, round two: re-encryption, outputs that must never be written, and
tracebacks or late errors where one early line is due (issue 11, classes 1, 2, 6, 7).

Mechanisms under test: `containers.read_plaintext` refuses our own ciphertexts by content
(`AlreadyEncryptedError`); `runtime.guards.outputs.OutputGuard` is the one output rule of every
command; `containers.check_storable` runs before a key is made; key records and index
lines are type-checked (`keys.check_uses`); `errors.run_cli` names the extra for a
missing optional module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
from badinput_kit import (
    REPO,
    Env,
    Matrix,
    check_case,
    dicom_copy,
    encrypt_argv,
    encrypted,
    image,
    key_file,
    record_row,
)

from keras_dkg.runtime.ciphers.registry import encrypt_array
from keras_dkg.runtime.formats.images import read_image
from keras_dkg.runtime.formats.png_tiff import load_ciphertext, save_ciphertext
from keras_dkg.runtime.keys.artifact import load_key

MATRIX = Matrix()
case = MATRIX.case
FIT = ["--image-size", "32", "--steps", "2", "--checkpoint-every", "2", "--residual-blocks", "1", "--no-progress"]


def fresh_key_argv(env: Env, source: str, output: str = "out/enc.png", keys: str = "ks") -> list[str]:
    return [source, "--model", env.model, "--seed", env.seed, "--keys", keys, "-o", output, "--provider", "cpu"]


def store_with_ciphertext(env: Env) -> tuple[str, str]:
    """A key store holding the key of enc/ct.png."""
    from keras_dkg.runtime.keystore.store import KeyStore

    _, key, ciphertext = encrypted(env)
    KeyStore(env.root / "ks", create=True).add(load_key(env.root / key))
    return "ks", ciphertext


def index_line(env: Env, **fields) -> str:
    """A key store whose only index line has these (wrong) fields."""
    env.folder("ks/keys")
    env.write("ks/index.jsonl", (json.dumps({"fingerprint": "sha256:" + "0" * 64, **fields}) + "\n").encode())
    return "ks"


# ---- class 1: a ciphertext is never encrypted again --------------------------------------

@case("out-reencrypt-png", "dkg-encrypt", "plaintext that is already our PNG ciphertext", 2,
      r"enc/ct\.png: already a keras_dkg ciphertext \(PNG with keras_dkg\.cipher metadata\); decrypt it instead")
def _(env):
    _, _, ciphertext = encrypted(env)
    key_file(env, "k2/key.png", seed=7)
    env.folder("out")
    return encrypt_argv(ciphertext, "out/twice.png", "k2/key.png")


@case("out-reencrypt-tiff", "dkg-encrypt", "plaintext that is already our TIFF ciphertext", 2,
      r"enc/ct\.tif: already a keras_dkg ciphertext \(TIFF")
def _(env):
    _, _, ciphertext = encrypted(env, ".tif")
    key_file(env, "k2/key.png", seed=7)
    env.folder("out")
    return encrypt_argv(ciphertext, "out/twice.tif", "k2/key.png")


@case("out-reencrypt-hardened", "dkg-encrypt", "plaintext that is a hardened-mode ciphertext", 2,
      r"enc/h\.png: already a keras_dkg ciphertext")
def _(env):
    plain, key = image(env, "in/ct.png"), key_file(env)
    ciphertext, meta = encrypt_array(read_image(env.root / plain), load_key(env.root / key).pixels, cipher="hardened")
    save_ciphertext(env.path("enc/h.png"), ciphertext, meta)
    key_file(env, "k2/key.png", seed=7)
    env.folder("out")
    return encrypt_argv("enc/h.png", "out/twice.png", "k2/key.png")


@case("out-reencrypt-renamed", "dkg-encrypt", "our PNG ciphertext renamed to .tif (found by content)", 2,
      r"enc/renamed\.tif: already a keras_dkg ciphertext \(PNG")
def _(env):
    _, _, ciphertext = encrypted(env)
    env.write("enc/renamed.tif", (env.root / ciphertext).read_bytes())
    key_file(env, "k2/key.png", seed=7)
    env.folder("out")
    return encrypt_argv("enc/renamed.tif", "out/twice.png", "k2/key.png")


@case("out-reencrypt-damaged-metadata", "dkg-encrypt", "our PNG ciphertext whose metadata chunk CRC is broken", 2,
      r"enc/ct\.png: already a keras_dkg ciphertext")
def _(env):
    _, _, ciphertext = encrypted(env)
    data = bytearray((env.root / ciphertext).read_bytes())
    data[data.index(b"keras_dkg.cipher") + 30] ^= 0x01  # inside the iTXt body: its CRC no longer matches
    env.write(ciphertext, bytes(data))
    key_file(env, "k2/key.png", seed=7)
    env.folder("out")
    return encrypt_argv(ciphertext, "out/twice.png", "k2/key.png")


@case("out-reencrypt-fresh-key", "dkg-encrypt", "a ciphertext given with --model/--seed/--keys", 2,
      r"enc/ct\.png: already a keras_dkg ciphertext", "nothing written: no key made, no key store created")
def _(env):
    _, _, ciphertext = encrypted(env)
    env.folder("out")
    return fresh_key_argv(env, ciphertext, "out/twice.png")


# ---- class 2: outputs that are inputs or inside a key store -------------------------------

@case("out-overwrite-seed", "dkg-encrypt", "-o the seed image, with --overwrite", 2,
      r"seed\.dcm: is an input \(the seed seed\.dcm\); the ciphertext never replaces an input")
def _(env):
    return [*fresh_key_argv(env, image(env, "in/ct.png"), env.seed), "--overwrite"]


@case("out-overwrite-model", "dkg-encrypt", "-o the model, with --overwrite", 2,
      r"g\.onnx: is an input \(the model g\.onnx\)")
def _(env):
    return [*fresh_key_argv(env, image(env, "in/ct.png"), env.model), "--overwrite"]


@case("out-into-key-store", "dkg-encrypt", "-o a file inside an existing key store, with --overwrite", 2,
      r"ks/keys/x\.png: is inside the key store .*ks; only the key store itself writes there")
def _(env):
    store, _ = store_with_ciphertext(env)
    return [*encrypt_argv(image(env, "in/other.png"), f"{store}/keys/x.png", key_file(env, "k2/key.png", seed=7)),
            "--overwrite"]


@case("out-decrypt-over-stored-key", "dkg-decrypt", "-o the stored key image itself, with --overwrite", 2,
      r"ks/keys/[0-9a-f]{16}\.png: is inside the key store")
def _(env):
    store, ciphertext = store_with_ciphertext(env)
    stored = next((env.root / store / "keys").glob("*.png")).relative_to(env.root).as_posix()
    return [ciphertext, "--keys", store, "-o", stored, "--overwrite"]


@case("out-into-new-key-store", "dkg-encrypt", "-o inside the --keys folder that this command would make a store", 2,
      r"ks/enc\.png: is inside the key store folder ks; write outputs outside it",
      "nothing written: the folder does not become a key store")
def _(env):
    env.folder("ks")
    return fresh_key_argv(env, image(env, "in/ct.png"), "ks/enc.png")


@case("out-output-is-folder", "dkg-encrypt", "-o an existing folder, with --overwrite", 2,
      r"out\.png: is a folder; the ciphertext must be a file path")
def _(env):
    env.folder("out.png")
    return [*encrypt_argv(image(env, "in/ct.png"), "out.png", key_file(env)), "--overwrite"]


@case("out-parent-is-file", "dkg-encrypt", "-o under a path that is a file", 2,
      r"notes\.txt/enc\.png: output folder notes\.txt is not a folder")
def _(env):
    env.write("notes.txt", b"my notes")
    return encrypt_argv(image(env, "in/ct.png"), "notes.txt/enc.png", key_file(env))


@case("out-domain-into-key-store", "dkg-domain", "-o an existing key store", 2,
      r"ks: is inside the key store .*ks; only the key store itself writes there")
def _(env):
    store_with_ciphertext(env)
    image(env, "src/a.png", (16, 16), np.uint8)
    return ["src", "-o", "ks", "--size", "16"]


@case("out-domain-inside-source", "dkg-domain", "-o a folder inside the source folder", 2,
      r"src/dom: is inside the source folder src; its images would become sources")
def _(env):
    image(env, "src/a.png", (16, 16), np.uint8)
    return ["src", "-o", "src/dom", "--size", "16"]


@case("out-domain-existing-manifest", "dkg-domain", "-o a domain folder that has a manifest, no --overwrite", 2,
      r"dom/manifest\.json: exists; refusing to overwrite \(use --overwrite\)")
def _(env):
    image(env, "src/a.png", (16, 16), np.uint8)
    env.write("dom/manifest.json", b"{}")
    return ["src", "-o", "dom", "--size", "16"]


@case("out-export-over-keras-model", "dkg-export", "-o the Keras model being exported, with --overwrite", 2,
      r"g\.keras: is an input \(the Keras model g\.keras\)")
def _(env):
    return ["onnx", env.keras_file, "-o", env.keras_file, "--overwrite"]


@case("out-fit-into-key-store", "keras_dkg.fit", "--out an existing key store", 2,
      r"ks: is inside the key store .*ks; only the key store itself writes there")
def _(env):
    store_with_ciphertext(env)
    return ["--out", "ks", *FIT]


@case("out-fit-out-is-file", "keras_dkg.fit", "--out an existing file", 2,
      r"notes\.txt: exists and is not a folder; the run folder must be a folder")
def _(env):
    env.write("notes.txt", b"my notes")
    return ["--out", "notes.txt", *FIT]


@case("out-fit-inside-source", "keras_dkg.fit", "--out inside the --source folder", 2,
      r"src/run: is inside the source folder .*src; the run's own images would be read as training data")
def _(env):
    image(env, "src/a.png", (32, 32), np.uint8)
    return ["--source", "src", "--out", "src/run", *FIT]


@case("out-plots-into-key-store", "dkg-analyze", "keys --plots an existing key store", 2,
      r"ks: is inside the key store .*ks")
def _(env):
    store_with_ciphertext(env)
    return ["keys", "k/key.png", "--plots", "ks"]


# ---- class 6: one line, never a traceback --------------------------------------------------

@case("out-record-used-for-number", "dkg-encrypt", "key record with \"used_for\": 5", 2,
      r"k/key\.json: 'used_for' must be a list of uses .*found 5")
def _(env):
    key = key_file(env)
    record = json.loads((env.root / "k/key.json").read_text())
    env.write("k/key.json", json.dumps({**record, "used_for": 5}).encode())
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"), key=key)


@case("out-record-fingerprint-number", "dkg-encrypt", "key record whose fingerprint is a number", 2,
      r"k/key\.json: not a keras_dkg key record \(no fingerprint string\)")
def _(env):
    key = key_file(env)
    record = json.loads((env.root / "k/key.json").read_text())
    env.write("k/key.json", json.dumps({**record, "fingerprint": 12}).encode())
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"), key=key)


@case("out-index-key-file-null", "dkg-decrypt", "key store index line with \"key_file\": null", 2,
      r"ks/index\.jsonl:1: not a key store entry \(no fingerprint or key_file string\)")
def _(env):
    _, _, ciphertext = encrypted(env)
    return [ciphertext, "--keys", index_line(env, key_file=None), "-o", "back.png"]


@case("out-index-used-for-string", "dkg-decrypt", "key store index line with \"used_for\": \"x\"", 2,
      r"ks/index\.jsonl:1: 'used_for' must be a list of uses")
def _(env):
    _, _, ciphertext = encrypted(env)
    return [ciphertext, "--keys", index_line(env, key_file="keys/a.png", used_for="x"), "-o", "back.png"]


@case("out-index-key-file-escapes", "dkg-decrypt", "key store index line whose key_file is ../../k/key.png", 2,
      r"ks/index\.jsonl:1: key_file '\.\./\.\./k/key\.png' points outside the key store")
def _(env):
    _, _, ciphertext = encrypted(env)
    return [ciphertext, "--keys", index_line(env, key_file="../../k/key.png"), "-o", "back.png"]


@case("out-ctrl-c-encrypt", "dkg-encrypt", "Ctrl-C (KeyboardInterrupt) while the ciphertext is written", 130,
      r"dkg-encrypt: error: interrupted; no ciphertext was written and the key is not marked used",
      "nothing written; the key's record is byte-identical (its use was given back)")
def _(env):
    from keras_dkg.runtime.formats import png_tiff as containers

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    env.monkeypatch.setattr(containers, "save_ciphertext", interrupted)
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"), key=key_file(env))


# ---- class 7: early, clear errors -----------------------------------------------------------

@case("out-plaintext-fifo", "dkg-encrypt", "plaintext that is a FIFO (reading it would block forever)", 2,
      r"in/pipe\.png: is a FIFO \(named pipe\), not a regular file; expected a plaintext")
def _(env):
    import os

    os.mkfifo(env.path("in/pipe.png"))
    env.folder("out")
    return encrypt_argv("in/pipe.png", key=key_file(env))


@case("out-plaintext-folder", "dkg-encrypt", "plaintext that is a folder", 2,
      r"in/scan\.png: is a folder, not a regular file; expected a plaintext")
def _(env):
    env.folder("in/scan.png")
    env.folder("out")
    return encrypt_argv("in/scan.png", key=key_file(env))


@case("out-ciphertext-device", "dkg-decrypt", "ciphertext that is /dev/zero (through a link)", 2,
      r"enc/zero\.png: is a character device, not a regular file; expected a ciphertext")
def _(env):
    from pathlib import Path

    env.link("enc/zero.png", Path("/dev/zero"))
    return ["enc/zero.png", "--key", key_file(env), "-o", "back.png"]


@case("out-key-with-model", "dkg-encrypt", "--key together with --model/--seed/--keys", 2,
      r"--key uses an existing key; --model, --seed, --keys would make a fresh one")
def _(env):
    env.folder("out")
    return [*encrypt_argv(image(env, "in/ct.png"), key=key_file(env)), "--model", env.model, "--seed", env.seed,
            "--keys", "ks"]


@case("out-signed-dicom-to-png", "dkg-encrypt", "signed 16-bit DICOM with -o .png and a fresh key", 2,
      r"out/enc\.png: PNG/TIFF ciphertexts hold uint8 or uint16 samples, not int16",
      "nothing written: refused before a key is made (no key store)")
def _(env):
    env.folder("out")
    return fresh_key_argv(env, dicom_copy(env, "MR_small.dcm", "in/mr.dcm"))


@case("out-aead-salt-short", "dkg-decrypt", "hardened ciphertext whose AEAD salt was shortened", 3,
      r"AEAD salt is not 64 lowercase hex digits")
def _(env):
    plain, key = image(env, "in/ct.png"), key_file(env)
    ciphertext, meta = encrypt_array(read_image(env.root / plain), load_key(env.root / key).pixels, cipher="hardened")
    save_ciphertext(env.path("enc/h.png"), ciphertext, meta)
    array, meta = load_ciphertext(env.root / "enc/h.png")
    meta.aead = {**meta.aead, "salt": meta.aead["salt"][:32]}
    (env.root / "enc/h.png").unlink()
    save_ciphertext(env.path("enc/h.png"), array, meta)
    return ["enc/h.png", "--key", key, "-o", "back.png"]


@MATRIX.parametrize()
def test_bad_input(case, tmp_path, request, monkeypatch, capfd):
    check_case(case, tmp_path, request, monkeypatch, capfd)


# ---- a runtime-only install: the missing extra is named ------------------------------------

BLOCKED_CHILD = textwrap.dedent(
    """
    import runpy, sys

    BLOCKED = tuple(sys.argv[1].split(","))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__")
    """
)
RUNTIME_ONLY = "tensorflow,keras,jax,tf2onnx,onnx,tensorboard,scipy,matplotlib,skimage,cryptography,pydicom,nibabel"


def _runtime_only(module: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED_CHILD, RUNTIME_ONLY, module, *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_runtime_only_install_names_the_extra_to_install(tmp_path):
    run = str(tmp_path / "run")
    cases = [
        ("keras_dkg.fit", ["--steps", "1", "--out", run], "keras_dkg.fit: error: this needs keras, which is not "
                                                          "installed: pip install 'keras-dkg[train]' (or '[train-cpu]'; '[jax]' for --backend jax)"),
        ("keras_dkg.fit", ["--backend", "jax", "--out", run], "keras_dkg.fit: error: this needs keras, which is not "
                                                              "installed: pip install 'keras-dkg[train]'"),
        ("keras_dkg.analysis.cli", ["baselines"], "dkg-analyze: error: this needs scipy, which is not installed: "
                                                  "pip install 'keras-dkg[analysis]'"),
        ("keras_dkg.analysis.cli", ["keys", "docs/img"], "dkg-analyze: error: this needs scipy"),
    ]
    for module, argv, expected in cases:
        done = _runtime_only(module, *argv)
        assert done.returncode == 2, (module, argv, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith(expected), (module, argv, done.stderr)
        assert not (tmp_path / "run").exists()
        shown = " ".join(a if a != run else "run" for a in argv)
        record_row({"id": f"out-runtime-only-{module.split('.')[-1]}-{argv[0].lstrip('-')}",
                    "command": f"{'python -m keras_dkg.fit' if module == 'keras_dkg.fit' else 'dkg-analyze'} {shown}",
                    "bad_input": "runtime-only install (no [train] / [analysis] extras)", "exit": 2,
                    "message": done.stderr.strip(), "outputs": "nothing written"})


def test_libpng_warnings_never_reach_stderr(tmp_path, monkeypatch, capfd):
    """libpng prints 'libpng warning: iCCP: too short' on descriptor 2 itself; a CLI's stderr stays ours."""
    import struct
    import zlib

    import cv2

    from keras_dkg.runtime.cli import encrypt as cipher_cli

    monkeypatch.chdir(tmp_path)
    ok, buffer = cv2.imencode(".png", np.arange(64, dtype=np.uint8).reshape(8, 8))
    assert ok
    body = b"icc\x00\x00" + zlib.compress(b"not a profile" * 4)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    data = buffer.tobytes()
    (tmp_path / "scan.png").write_bytes(data[:33] + chunk + data[33:])  # after IHDR
    key = key_file(Env(tmp_path, None, monkeypatch, None), "k/key.png", shape=(8, 8), dtype=np.uint8)
    capfd.readouterr()
    assert cipher_cli.encrypt_main(["scan.png", "--key", key, "-o", "enc.png"]) == 0
    assert cipher_cli.decrypt_main(["enc.png", "--key", key, "-o", "back.png"]) == 0
    out, err = capfd.readouterr()
    assert err == "", err
    np.testing.assert_array_equal(read_image("back.png"), np.arange(64, dtype=np.uint8).reshape(8, 8))
