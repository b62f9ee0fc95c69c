"""Bad-input matrix, issue 23 classes 4, 7, 9 and part of 10: credentials given for no protected store,
credentials and KDF parameters as hostile input, keys as outputs, bundles in the wrong place — one clear
line, nothing changed.

Mechanisms under test: `custody.require_protected` (every command that takes --keys),
`custody.read_key_file` through `inputs.read_bounded` (type checked on the open descriptor,
size bounded), `sealing.check_kdf` (run by `custody.read_manifest` and `sealing.derive_kek`),
`custody.unlock`'s check value (a right passphrase on an altered manifest), `Credentials`'
normalisation and UTF-8 check, `outputs.OutputGuard` (a key is never an output), and
`keystore_admin.export_keys` / `import_keys`.
"""

from __future__ import annotations

import json
import os

import pytest
from badinput_kit import Matrix, check_case, encrypt_argv, image, key_file
from test_bad_inputs_custody import PASS, STORED, protected

pytest.importorskip("cryptography")

from keras_dkg.runtime.keystore.store import KeyStore

MATRIX = Matrix()
case = MATRIX.case


def plain_store(env, name: str = "ks") -> str:
    KeyStore(env.path(name), create=True)
    return name


def batch_argv(env, keys: str) -> list[str]:
    image(env, "in/a.png")
    return ["--batch", "in", "-o", "out", "--keys", keys, "--model", env.model, "--seed", env.seed]


def manifest_edit(env, store: str = "ks", **changes) -> None:
    path = env.path(f"{store}/store.json")
    manifest = json.loads(path.read_text())
    for name, value in changes.items():
        target, field = (manifest["kdf"], name[4:]) if name.startswith("kdf_") else (manifest, name)
        target[field] = value
    path.write_text(json.dumps(manifest))


# ---------------------------------------------------------------- class 4: credentials never silently ignored


@case("cred-batch-typo-store-key-file", "dkg-encrypt", "--batch into a --keys folder that does not exist (a typo), "
      "with --key-file", 2, r"no protected store at keystroe, but --key-file master\.key was given: run "
      r"`dkg-keys init keystroe` first", "nothing written: no plain store, no output folder, no report")
def _(env):
    env.write("master.key", os.urandom(32))
    return [*batch_argv(env, "keystroe"), "--key-file", "master.key"]


@case("cred-encrypt-missing-store-env", "dkg-encrypt", "fresh-key encryption into a missing --keys folder with "
      "DKG_KEYSTORE_PASSPHRASE set", 2, r"no protected store at ks2, but DKG_KEYSTORE_PASSPHRASE was given",
      "no key made, no store created")
def _(env):
    env.monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", PASS)
    return [image(env, "in/a.png"), "--model", env.model, "--seed", env.seed, "--keys", "ks2", "-o", "out.png"]


@case("cred-decrypt-plain-store-env", "dkg-decrypt", "a plain key store opened with DKG_KEYSTORE_PASSPHRASE set", 2,
      r"ks: a plain key store \(keys in the clear\), but DKG_KEYSTORE_PASSPHRASE was given: seal it with "
      r"`dkg-keys protect ks`")
def _(env):
    plain_store(env)
    env.monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", PASS)
    env.write("enc/x.png", b"not read")
    return ["enc/x.png", "--keys", "ks", "-o", "back.png"]


@case("cred-batch-decrypt-plain-store-key-file", "dkg-decrypt", "--batch decrypt with a plain store and "
      "DKG_KEYSTORE_KEY_FILE set", 2, r"ks: a plain key store \(keys in the clear\), but DKG_KEYSTORE_KEY_FILE was given")
def _(env):
    plain_store(env)
    env.monkeypatch.setenv("DKG_KEYSTORE_KEY_FILE", env.write("master.key", os.urandom(32)))
    env.folder("enc")
    return ["--batch", "enc", "-o", "back", "--keys", "ks"]


@case("cred-keys-list-plain-store-key-file", "dkg-keys", "list a plain store with --key-file", 2,
      r"ks: a plain key store \(keys in the clear\), but --key-file m\.key was given")
def _(env):
    plain_store(env)
    env.write("m.key", os.urandom(32))
    return ["list", "ks", "--key-file", "m.key"]


@case("cred-init-key-file-inside-store", "dkg-keys", "init with --key-file inside the new store's folder", 2,
      r"ks/master\.key: the master key file is inside the key store ks; every copy or backup of the store would "
      r"carry its key")
def _(env):
    return ["init", "ks", "--key-file", "ks/master.key"]


# ---------------------------------------------------------------- class 7: credentials and KDF parameters as input


@case("cred-key-file-dev-zero", "dkg-decrypt", "--key-file /dev/zero (would never end)", 2,
      r"/dev/zero: is a character device, not a regular file; expected a master key file", STORED)
def _(env):
    return [protected(env, key_file="m.key"), "--keys", "ks", "-o", "back/x.png", "--key-file", "/dev/zero"]


@case("cred-key-file-fifo", "dkg-decrypt", "--key-file a FIFO (reading would block forever)", 2,
      r"m\.fifo: is a FIFO \(named pipe\), not a regular file; expected a master key file", STORED)
def _(env):
    argv = [protected(env, key_file="m.key"), "--keys", "ks", "-o", "back/x.png", "--key-file", "m.fifo"]
    os.mkfifo(env.path("m.fifo"))
    return argv


@case("cred-key-file-huge", "dkg-keys", "--key-file of 1 GiB (sparse)", 2,
      r"big\.key: master key file is 1073741824 bytes, over the 4096 byte limit", STORED)
def _(env):
    protected(env, key_file="m.key")
    with open(env.path("big.key"), "wb") as handle:
        handle.truncate(1 << 30)
    return ["list", "ks", "--key-file", "big.key"]


@case("cred-passphrase-not-utf8", "dkg-decrypt", "DKG_KEYSTORE_PASSPHRASE holding the byte 0xff (not UTF-8)", 2,
      r"the key store passphrase from DKG_KEYSTORE_PASSPHRASE is not valid UTF-8 \(byte 0xff at character 5\)",
      STORED)
def _(env):
    argv = [protected(env), "--keys", "ks", "-o", "back/x.png"]
    env.monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", "pass\udcffword long")
    return argv


@case("cred-kdf-memory-huge", "dkg-decrypt", "store.json asking Argon2id for 2³²−1 KiB of memory", 2,
      r"ks/store\.json: key derivation parameters ask memory_kib 4294967295 \(allowed 8\.\.1048576\); refused before "
      r"use", "nothing written, nothing allocated")
def _(env):
    argv = [protected(env), "--keys", "ks", "-o", "back/x.png"]
    manifest_edit(env, kdf_memory_kib=2**32 - 1)
    return argv


@case("cred-kdf-iterations-huge", "dkg-keys", "store.json asking Argon2id for 10⁶ passes", 2,
      r"ks/store\.json: key derivation parameters ask iterations 1000000 \(allowed 1\.\.10\)",
      "nothing written, no hang")
def _(env):
    protected(env)
    manifest_edit(env, kdf_iterations=10**6)
    return ["list", "ks"]


@case("cred-kdf-cost-product", "dkg-keys", "store.json with 10 passes over 1 GiB (each in range, together 10 GiB)", 2,
      r"ask 10 passes over 1048576 KiB in 1 lanes \(at least 8 KiB per lane, at most 4194304 KiB in all passes\)",
      "nothing written, no hang")
def _(env):
    protected(env)
    manifest_edit(env, kdf_iterations=10, kdf_memory_kib=1 << 20)
    return ["verify", "ks"]


@case("cred-manifest-generation-altered", "dkg-decrypt", "store.json's generation raised by one, right passphrase", 2,
      r"ks/store\.json: the passphrase is right \(it matches the manifest's check value\) but the keyring does not "
      r"open: the manifest's store id, generation or keyring was altered or damaged", "nothing written")
def _(env):
    argv = [protected(env), "--keys", "ks", "-o", "back/x.png"]
    manifest_edit(env, generation=2)
    return argv


@case("cred-manifest-keyring-altered", "dkg-keys", "one byte of store.json's sealed keyring changed, right passphrase",
      2, r"the passphrase is right \(it matches the manifest's check value\) but the keyring does not open",
      "nothing written")
def _(env):
    protected(env)
    manifest = json.loads(env.path("ks/store.json").read_text())
    ring = manifest["keyring"]
    manifest_edit(env, keyring=ring[:20] + ("A" if ring[20] != "A" else "B") + ring[21:])
    return ["list", "ks"]


# ---------------------------------------------------------------- class 9: a key is never an output


@case("out-encrypt-over-key", "dkg-encrypt", "-o an existing key made by dkg-keygen (k5.png with k5.json), "
      "--overwrite", 2, r"k5\.png: is a key \(its record k5\.json is beside it\); a key is never an output, even "
      r"with --overwrite")
def _(env):
    key_file(env, "k5.png", seed=5)
    return [*encrypt_argv(image(env, "x.png"), output="k5.png"), "--overwrite"]


@case("out-decrypt-over-key-link", "dkg-decrypt", "-o a symbolic link to a key elsewhere, --overwrite", 2,
      r"back\.png: is a key \(its record k5\.json is beside it\); a key is never an output")
def _(env):
    key_file(env, "keys/k5.png", seed=5)
    env.path("back.png").symlink_to(env.path("keys/k5.png"))
    env.write("enc/x.png", b"not read")
    return ["enc/x.png", "--key", "k/key.png", "-o", "back.png", "--overwrite"]


@case("out-keygen-over-key", "dkg-keygen", "-o an existing key, --overwrite (a replaced key is a lost image)", 2,
      r"out/key\.png: is a key \(its record key\.json is beside it\); a key is never an output, even with "
      r"--overwrite")
def _(env):
    key_file(env, "out/key.png", seed=3)
    return ["--model", env.model, "--seed", env.seed, "-o", "out/key.png", "--overwrite"]


@case("out-encrypt-beside-key-record", "dkg-encrypt", "-o k6.png where only k6.json, a key record, exists", 2,
      r"k6\.png: is a key \(its record k6\.json is beside it\)")
def _(env):
    key_file(env, "k6.png", seed=6)
    env.path("k6.png").unlink()
    return encrypt_argv(image(env, "x.png"), output="k6.png")


@case("out-batch-over-key", "dkg-encrypt", "--batch --overwrite where OUT_DIR/a.png is a key (a.png + a.json)", 2,
      r"out/a\.png: is a key \(its record a\.json is beside it\); a key is never an output, even with --overwrite",
      "nothing written: no store, no report, the key unchanged")
def _(env):
    argv = batch_argv(env, "ks")
    key_file(env, "out/a.png", seed=4)
    return [*argv, "--overwrite"]


@case("out-batch-decrypt-over-key", "dkg-decrypt", "--batch --overwrite where BACK_DIR/ks.png is a key", 2,
      r"back/ks\.png: is a key \(its record ks\.json is beside it\); a key is never an output", STORED)
def _(env):
    protected(env)
    key_file(env, "back/ks.png", seed=4)
    return ["--batch", "enc", "-o", "back", "--keys", "ks", "--overwrite"]


# ---------------------------------------------------------------- class 10: bundles


@case("bundle-export-inside-store", "dkg-keys", "export -o a folder inside the source store (ks/keys/bundle2)", 2,
      r"ks/keys/bundle2: is inside the key store .*ks; only the key store itself writes there", STORED)
def _(env):
    protected(env)
    env.monkeypatch.setenv("DKG_KEYSTORE_BUNDLE_PASSPHRASE", "bundle passphrase")
    return ["export", "ks", "-o", "ks/keys/bundle2", "--for", "enc/ks.png"]


@case("bundle-import-into-plain-store", "dkg-keys", "import a bundle into a plain store", 2,
      r"site2: a plain key store; importing would write the bundle's sealed keys in the clear: seal it first",
      "the plain store and the bundle unchanged")
def _(env):
    protected(env, "bundle")
    env.monkeypatch.delenv("DKG_KEYSTORE_PASSPHRASE")
    plain_store(env, "site2")
    env.monkeypatch.setenv("DKG_KEYSTORE_BUNDLE_PASSPHRASE", PASS)
    return ["import", "site2", "bundle"]


@case("bundle-no-passphrase-hint", "dkg-keys", "export with no bundle passphrase and no terminal", 2,
      r"set DKG_KEYSTORE_BUNDLE_PASSPHRASE \(or give --bundle-key-file\), or run in a terminal", STORED)
def _(env):
    protected(env)
    env.monkeypatch.delenv("DKG_KEYSTORE_BUNDLE_PASSPHRASE", raising=False)
    return ["export", "ks", "-o", "bundle", "--for", "enc/ks.png"]


@MATRIX.parametrize()
def test_bad_input(case, tmp_path, request, monkeypatch, capfd):
    check_case(case, tmp_path, request, monkeypatch, capfd)
