"""Bad-input matrix, protected key stores (issue 16): a wrong or missing master secret, damaged or swapped
sealed keys, an edited audit log, stores in the middle of a conversion — one clear line, nothing changed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from badinput_kit import Matrix, check_case, image, save_ciphertext

pytest.importorskip("cryptography")

from keras_dkg.runtime.ciphers.metadata import key_size_for, plaintext_digest
from keras_dkg.runtime.ciphers.registry import encrypt_array
from keras_dkg.runtime.formats.images import read_image
from keras_dkg.runtime.keys.artifact import Key, make_record
from keras_dkg.runtime.keystore import admin, sealing
from keras_dkg.runtime.keystore.custody import Credentials
from keras_dkg.runtime.keystore.store import KeyStore

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


# ---- issue 23: indexes that are missing or not accounted for, cut lines, writers during rotation, a cut log


def rotated_with_old_manifest(env) -> None:
    """A protected store rotated once, then its pre-rotation store.json put back (a partial restore)."""
    protected(env)
    old = env.path("ks/store.json").read_bytes()
    admin.rotate_store(env.path("ks"), Credentials(passphrase=PASS), Credentials(passphrase=PASS))
    env.path("ks/store.json").write_bytes(old)


@case("custody-restored-old-store-json", "dkg-keys", "verify after a rotation whose store.json was restored from "
      "before it", 2, r"ks/index\.1\.jsonl: the index store\.json names is missing .*index\.2\.jsonl is here: "
      r"store\.json may be an older copy — put back the newest store\.json", STORED)
def _(env):
    rotated_with_old_manifest(env)
    return ["verify", "ks"]


@case("custody-restored-old-store-json-rotate", "dkg-keys", "rotate with a restored pre-rotation store.json (the "
      "real index would have been deleted)", 2, r"index\.1\.jsonl: the index store\.json names is missing",
      "nothing written; index.2.jsonl (the real index) byte-identical")
def _(env):
    rotated_with_old_manifest(env)
    env.monkeypatch.setenv("DKG_KEYSTORE_NEW_PASSPHRASE", "yet another passphrase")
    return ["rotate", "ks"]


@case("custody-index-moved-away", "dkg-decrypt", "the index store.json names moved out of the store", 2,
      r"ks/index\.1\.jsonl: the index store\.json names is missing \(the keys cannot be opened without it\); "
      r"put it back from a backup", STORED)
def _(env):
    argv = decrypt_argv(env, protected(env))
    env.path("ks/index.1.jsonl").rename(env.path("elsewhere.jsonl"))
    return argv


@case("custody-index-moved-away-encrypt", "dkg-encrypt", "fresh-key encryption into a store whose index is gone", 2,
      r"index\.1\.jsonl: the index store\.json names is missing", "no key made, nothing written")
def _(env):
    protected(env)
    env.path("ks/index.1.jsonl").rename(env.path("elsewhere.jsonl"))
    return ["in/ks.png", "--model", env.model, "--seed", env.seed, "--keys", "ks", "-o", "back/c.png"]


@case("custody-index-points-elsewhere", "dkg-keys", "store.json's \"index\" edited to name another (empty) file", 2,
      r"store\.json: names index 'other\.jsonl', but generation 1's index is index\.1\.jsonl \(store\.json altered\)",
      STORED)
def _(env):
    protected(env)
    manifest = json.loads(env.path("ks/store.json").read_text())
    env.write("ks/other.jsonl", b"")
    env.path("ks/store.json").write_text(json.dumps({**manifest, "index": "other.jsonl"}))
    return ["list", "ks"]


def with_cut_line(env) -> None:
    """Key A's line, key B's line, then A's entry again (a second use), that last line cut short."""
    protected(env)
    store = KeyStore(env.path("ks"), credentials=Credentials(passphrase=PASS))
    fingerprint = store.entries()[0]["fingerprint"]
    store.add(Key(np.full((8, 8, 3), 3, np.uint8), make_record(np.full((8, 8, 3), 3, np.uint8), nonce="3")))
    store.mark_used(fingerprint, "e" * 64, "/archive/again.png", allow_reuse=True)
    store.close()
    index = env.path("ks/index.1.jsonl")
    index.write_bytes(index.read_bytes()[:-30])


@case("custody-cut-index-line", "dkg-keys", "verify: the index's last line cut (not an interrupted append)", 1,
      r"dkg-keys: problem: .*index\.1\.jsonl: the last index line is cut \(\d+ bytes after the last whole line\) "
      r"and no interrupted append explains it", STORED)
def _(env):
    with_cut_line(env)
    return ["verify", "ks"]


@case("custody-cut-index-line-encrypt", "dkg-encrypt", "encrypt into a store whose index's last line is cut", 2,
      r"index\.1\.jsonl: the last index line is cut .*put back a complete copy from a backup \(nothing was written\)",
      "nothing written: the cut line is not trimmed, no key file")
def _(env):
    with_cut_line(env)
    return ["in/ks.png", "--model", env.model, "--seed", env.seed, "--keys", "ks", "-o", "back/c.png"]


@case("custody-sealed-key-in-no-line", "dkg-keys", "verify: a sealed key whose index line is lost", 1,
      r"dkg-keys: problem: .*keys/[0-9a-f]{32}\.sealed: a sealed key in no index line — its data key is only in "
      r"that line", STORED)
def _(env):
    protected(env)
    index = env.path("ks/index.1.jsonl")
    kept = index.read_bytes()
    store = KeyStore(env.path("ks"), credentials=Credentials(passphrase=PASS))
    store.add(Key(np.full((8, 8, 3), 7, np.uint8), make_record(np.full((8, 8, 3), 7, np.uint8), nonce="2")))
    store.close()
    index.write_bytes(kept)  # the second key's line lost (an older copy of the index put back)
    env.path("ks/audit.jsonl").write_bytes(b"".join(env.path("ks/audit.jsonl").read_bytes()
                                                    .splitlines(keepends=True)[:2]))
    return ["verify", "ks"]


@case("custody-unaccounted-index", "dkg-keys", "verify: an index file store.json neither names nor accounts for", 1,
      r"dkg-keys: problem: .*index\.2\.jsonl: an index file store\.json does not account for; store\.json may be an "
      r"older copy", STORED)
def _(env):
    protected(env)
    env.write("ks/index.2.jsonl", env.path("ks/index.1.jsonl").read_bytes())
    return ["verify", "ks"]


@case("custody-rotate-unaccounted-index", "dkg-keys", "rotate beside an index file store.json does not account for",
      2, r"index\.2\.jsonl: an index file store\.json does not account for; .*Nothing deletes it",
      "nothing written; the unaccounted index byte-identical")
def _(env):
    protected(env)
    env.write("ks/index.2.jsonl", env.path("ks/index.1.jsonl").read_bytes())
    env.monkeypatch.setenv("DKG_KEYSTORE_NEW_PASSPHRASE", "yet another passphrase")
    return ["rotate", "ks"]


def live_writer(env, store: str = "ks", passphrase: str | None = PASS) -> None:
    """Another process holding the store as a writer (a batch, an encryption) until the case ends."""
    import os
    import subprocess
    import sys

    from badinput_kit import REPO

    code = ("import sys\nfrom keras_dkg.runtime.keystore.locks import WriterHold\n"
            f"hold = WriterHold({str(env.path(store))!r})\nprint('ready', flush=True)\nsys.stdin.read()\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    env.stack.callback(process.wait)
    env.stack.callback(process.kill)
    assert process.stdout.readline().strip() == "ready"


@case("custody-rotate-while-writing", "dkg-keys", "rotate while another process writes to the store (bounded wait)",
      2, r"ks: cannot rotate while writers are using the key store \(a batch, an encryption, a gateway; waited 0\.2 s\)",
      STORED)
def _(env):
    protected(env)
    live_writer(env)
    env.monkeypatch.setenv("DKG_KEYSTORE_NEW_PASSPHRASE", "yet another passphrase")
    return ["rotate", "ks", "--wait", "0.2"]


@case("custody-protect-while-writing", "dkg-keys", "protect a plain store while another process writes to it", 2,
      r"ks: cannot protect while writers are using the key store", "nothing written; the plain store byte-identical")
def _(env):
    plain = KeyStore(env.path("ks"), create=True)
    plain.close()
    live_writer(env)
    env.monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", PASS)
    return ["protect", "ks", "--wait", "0.2"]


@case("custody-plain-index-moved-encrypt", "dkg-encrypt", "a plain store whose index.jsonl was moved away (keys/ "
      "still full)", 2, r"ks: keys/ holds keys but index\.jsonl is missing \(moved or not restored\): put the index "
      "back", "no index made (an empty one would hide every key), nothing written")
def _(env):
    plain = KeyStore(env.path("ks"), create=True)
    plain.add(Key(np.full((8, 8, 3), 5, np.uint8), make_record(np.full((8, 8, 3), 5, np.uint8), nonce="1")))
    plain.close()
    env.path("ks/index.jsonl").rename(env.path("index.moved"))
    image(env, "in/x.png")
    env.folder("back")
    return ["in/x.png", "--model", env.model, "--seed", env.seed, "--keys", "ks", "-o", "back/c.png"]


@case("custody-audit-tail-cut", "dkg-keys", "audit: the newest audit record deleted (the chain itself intact)", 1,
      r"dkg-keys: broken: .*audit\.jsonl: record 1, written with key sha256:[0-9a-f]{16}…'s newest index line, is "
      r"missing: the audit log was cut or deleted", STORED)
def _(env):
    protected(env)
    log = env.path("ks/audit.jsonl")
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:-1]))
    return ["audit", "ks"]


@case("custody-audit-log-deleted", "dkg-keys", "audit: the whole audit log deleted", 1,
      r"dkg-keys: broken: .*audit\.jsonl: record 1, .* is missing: the audit log was cut or deleted", STORED)
def _(env):
    protected(env)
    env.path("ks/audit.jsonl").unlink()
    return ["audit", "ks"]


@MATRIX.parametrize()
def test_bad_input(case, tmp_path, request, monkeypatch, capfd):
    check_case(case, tmp_path, request, monkeypatch, capfd)
