"""Bad-input matrix, protected key stores (issue 16): a wrong or missing master secret, damaged or swapped
sealed keys, an edited audit log, stores in the middle of a conversion — one clear line, nothing changed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from badinput_kit import Matrix, check_case, image, save_ciphertext

pytest.importorskip("cryptography")

from keras_dkg.runtime import keystore_admin as admin  # noqa: E402
from keras_dkg.runtime import sealing  # noqa: E402
from keras_dkg.runtime.cipher import encrypt_array, key_size_for, plaintext_digest  # noqa: E402
from keras_dkg.runtime.custody import Credentials  # noqa: E402
from keras_dkg.runtime.imageio import read_image  # noqa: E402
from keras_dkg.runtime.keys import Key, make_record  # noqa: E402
from keras_dkg.runtime.keystore import KeyStore  # noqa: E402

MATRIX = Matrix()
case = MATRIX.case
PASS = "the right passphrase"
STORED = "the protected store, its audit log aside, unchanged"


def protected(env, name: str = "ks", key_file: str | None = None, seed: int = 1) -> str:
    """A protected store `name` holding the key of enc/NAME.png (made from in/NAME.png); returns the ciphertext."""
    env.monkeypatch.setattr(sealing, "ARGON2_DEFAULTS",
                            {"name": "argon2id", "iterations": 1, "lanes": 1, "memory_kib": 64})
    env.monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", PASS)
    credentials = Credentials(passphrase=PASS, key_file=str(env.path(key_file)) if key_file else None)
    admin.init_store(env.path(name), credentials)
    source = image(env, f"in/{name}.png")
    plain = read_image(env.path(source))
    pixels = np.random.default_rng(seed).integers(0, 256, (*key_size_for(plain.shape, plain.dtype), 3), dtype=np.uint8)
    key = Key(pixels, make_record(pixels, nonce="1"))
    KeyStore(env.path(name), credentials=credentials).add(key, plaintext_digest(plain), str(env.path(source)))
    ciphertext, meta = encrypt_array(plain, pixels, nonce="1")
    save_ciphertext(env.path(f"enc/{name}.png"), ciphertext, meta)
    env.folder("back")
    return f"enc/{name}.png"


def decrypt_argv(env, ciphertext: str, store: str = "ks") -> list[str]:
    return [ciphertext, "--keys", store, "-o", "back/ct.png"]


@case("custody-wrong-passphrase", "dkg-decrypt", "a protected store opened with the wrong passphrase", 2,
      r"ks: wrong passphrase for this key store \(its keyring does not open\); nothing was read or written",
      STORED)
def _(env):
    argv = decrypt_argv(env, protected(env))
    env.monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", "not the passphrase")
    return argv


@case("custody-wrong-passphrase-encrypt", "dkg-encrypt", "fresh-key encryption into a protected store, wrong "
      "passphrase", 2, r"ks: wrong passphrase", "no key made, nothing written (the store is opened before the model)")
def _(env):
    protected(env)
    env.monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", "not the passphrase")
    return ["in/ks.png", "--model", env.model, "--seed", env.seed, "--keys", "ks", "-o", "back/c.png"]


@case("custody-no-passphrase", "dkg-decrypt", "a protected store, no DKG_KEYSTORE_PASSPHRASE and no terminal", 2,
      r"the key store is protected: set DKG_KEYSTORE_PASSPHRASE \(or give --key-file\), or run in a terminal", STORED)
def _(env):
    argv = decrypt_argv(env, protected(env))
    env.monkeypatch.delenv("DKG_KEYSTORE_PASSPHRASE")
    return argv


@case("custody-short-key-file", "dkg-decrypt", "--key-file that is not 32 bytes", 2,
      r"m\.key: a master key file holds exactly 32 bytes, this one 5", STORED)
def _(env):
    argv = decrypt_argv(env, protected(env, key_file="m.key"))
    env.write("m.key", b"short")
    return [*argv, "--key-file", "m.key"]


@case("custody-passphrase-for-key-file-store", "dkg-decrypt", "a key-file store opened with a passphrase", 2,
      r"ks: this store is protected by a key file: give --key-file F \(or DKG_KEYSTORE_KEY_FILE\)", STORED)
def _(env):
    return decrypt_argv(env, protected(env, key_file="m.key"))


@case("custody-key-file-without-store", "dkg-decrypt", "--key-file with --key (no store to open)", 2,
      r"--key-file opens a protected --keys store; give --keys DIR with it")
def _(env):
    env.write("m.key", b"\0" * 32)
    return ["enc/x.png", "--key", "k/key.png", "--key-file", "m.key", "-o", "back/x.png"]


def sealed_key(env, store: str = "ks"):
    return next(env.path(f"{store}/keys").glob("*.sealed"))


@case("custody-truncated-sealed-key", "dkg-decrypt", "the ciphertext's sealed key cut to 30 bytes", 2,
      r"keys/[0-9a-f]{32}\.sealed: sealed data is truncated \(22 bytes\)", "nothing written")
def _(env):
    argv = decrypt_argv(env, protected(env))
    path = sealed_key(env)
    path.write_bytes(path.read_bytes()[:30])
    return argv


@case("custody-swapped-sealed-key", "dkg-decrypt", "the sealed key replaced by one from another protected store", 2,
      r"keys/[0-9a-f]{32}\.sealed: does not open under this key store's master key \(damaged, truncated, altered, "
      r"or from another store\)", "nothing written")
def _(env):
    argv = decrypt_argv(env, protected(env))
    protected(env, "other", seed=2)
    sealed_key(env).write_bytes(sealed_key(env, "other").read_bytes())
    return argv


@case("custody-edited-audit-line", "dkg-keys", "one audit record's body edited in place", 1,
      r"dkg-keys: broken: .*audit\.jsonl:2: record altered \(its hash does not match\)", STORED)
def _(env):
    protected(env)
    path = env.path("ks/audit.jsonl")
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    blob = bytearray(sealing.unb64(record["sealed"], "audit"))
    blob[20] ^= 1
    record["sealed"] = sealing.b64(bytes(blob))
    path.write_text("\n".join([lines[0], json.dumps(record), *lines[2:]]) + "\n")
    return ["audit", "ks"]


@case("custody-dangling-index-line", "dkg-keys", "verify: the index names a sealed key file that is gone", 1,
      r"dkg-keys: problem: .*keys/[0-9a-f]{32}\.sealed: no such key file \(the index names it: lost or moved\)",
      STORED)
def _(env):
    protected(env)
    sealed_key(env).unlink()
    return ["verify", "ks"]


@case("custody-init-not-empty", "dkg-keys", "init in a folder that has files", 2,
      r"ks: exists and is not an empty folder; a new key store needs its own folder")
def _(env):
    env.write("ks/notes.txt", b"x")
    return ["init", "ks"]


@case("custody-rotate-plain", "dkg-keys", "rotate a plain store", 2,
      r"a plain key store has no master key to rotate; `dkg-keys protect` it first")
def _(env):
    KeyStore(env.path("ks"), create=True)
    return ["rotate", "ks"]


@case("custody-protect-unfinished", "dkg-encrypt", "encrypt into a store whose `protect` was killed after its commit",
      2, r"an interrupted `dkg-keys protect` left the plain store's files here; run `dkg-keys protect .*ks` again",
      "nothing written; `dkg-keys protect ks` finishes the conversion")
def _(env):
    protected(env)
    env.write("ks/index.jsonl", b"")
    return ["in/ks.png", "--model", env.model, "--seed", env.seed, "--keys", "ks", "-o", "back/c.png"]


@MATRIX.parametrize()
def test_bad_input(case, tmp_path, request, monkeypatch, capfd):
    check_case(case, tmp_path, request, monkeypatch, capfd)
