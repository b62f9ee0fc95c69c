"""Issue 23's stress test: many writers, a merge, rotations and readers on ONE protected store, at once.

Real processes, started at random moments in several rounds: a local-engine batch, a Ray
batch (when Ray is installed), single-file `dkg-encrypt`s, a process that merges shards,
`dkg-keys rotate` (same key file, new salt and generation: every writer keeps working),
and readers (`dkg-decrypt` of an earlier round, `dkg-keys list`). Afterwards every
ciphertext decrypts bit-exact and `dkg-keys verify` and `audit` exit 0. Not a benchmark:
tiny images, a key file (no KDF cost), a few rounds.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cryptography")

from keras_dkg.runtime.batch.driver import decrypt_folder
from keras_dkg.runtime.cli.encrypt import decrypt_main
from keras_dkg.runtime.formats.images import read_image
from keras_dkg.runtime.keystore.admin import audit_store, init_store, verify_store
from keras_dkg.runtime.keystore.custody import Credentials
from keras_dkg.runtime.keystore.store import SHARDS_FOLDER, KeyStore
from tests.test_batch import SEED, assert_same_images, images_of, write_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROUNDS = 3
HAVE_RAY = importlib.util.find_spec("ray") is not None
MERGE = ("import sys\nfrom keras_dkg.runtime.keystore.custody import Credentials\n"
         "from keras_dkg.runtime.keystore.store import KeyStore\n"
         "KeyStore(sys.argv[1], credentials=Credentials(key_file=sys.argv[2])).merge_shards()\n")


def tiny_folder(root: Path, seed: int, count: int) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(count):
        side = int(rng.integers(8, 17))
        write_png(root / f"im{i}.png", rng.integers(0, 65536, (side, side), dtype=np.uint16))
    return root


def test_writers_merge_rotate_and_readers_on_one_store(tmp_path, tiny_onnx_model):
    started = time.perf_counter()
    store, master = tmp_path / "ks", tmp_path / "master.key"
    init_store(store, Credentials(key_file=str(master)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "DKG_KEYSTORE_KEY_FILE": str(master), "OMP_NUM_THREADS": "1"}
    env.pop("DKG_KEYSTORE_PASSPHRASE", None)
    common = ["--keys", str(store), "--model", str(tiny_onnx_model), "--seed", str(SEED)]
    rng = random.Random(23)
    sources: dict[Path, Path] = {}  # ciphertext folder or file -> its plaintext
    failures = []
    for round_ in range(ROUNDS):
        jobs: list[tuple[str, list[str]]] = []
        src = tiny_folder(tmp_path / f"in{round_}l", 10 * round_, 4)
        jobs.append(("local batch", [str(BIN / "dkg-encrypt"), "--batch", str(src), "-o", str(tmp_path / f"out{round_}l"),
                                     "--jobs", "2", "--no-progress", *common]))
        sources[tmp_path / f"out{round_}l"] = src
        if HAVE_RAY and round_ == 1:  # (one Ray start: each costs seconds)
            src = tiny_folder(tmp_path / f"in{round_}r", 10 * round_ + 1, 4)
            jobs.append(("ray batch", [str(BIN / "dkg-encrypt"), "--batch", str(src), "-o",
                                       str(tmp_path / f"out{round_}r"), "--engine", "ray", "--workers", "1",
                                       "--no-progress", *common]))
            sources[tmp_path / f"out{round_}r"] = src
        for i in range(2):
            single = tiny_folder(tmp_path / f"in{round_}s{i}", 10 * round_ + 5 + i, 1) / "im0.png"
            target = tmp_path / f"single{round_}_{i}.png"
            jobs.append(("single encrypt", [str(BIN / "dkg-encrypt"), str(single), "-o", str(target), *common]))
            sources[target] = single
        jobs.append(("merge", [sys.executable, "-c", MERGE, str(store), str(master)]))
        jobs.append(("rotate", [str(BIN / "dkg-keys"), "rotate", str(store), "--new-key-file", str(master),
                                "--wait", "60"]))
        jobs.append(("list", [str(BIN / "dkg-keys"), "list", str(store)]))
        if round_:
            jobs.append(("decrypt earlier round", [str(BIN / "dkg-decrypt"), "--batch", str(tmp_path / "out0l"),
                                                   "--verify", "--keys", str(store), "--no-progress"]))
        rng.shuffle(jobs)
        running = []
        for name, argv in jobs:
            time.sleep(rng.uniform(0, 0.4))
            running.append((name, subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                   text=True)))
        for name, process in running:
            out, err = process.communicate(timeout=300)
            if process.returncode != 0:
                failures.append(f"round {round_} {name}: exit {process.returncode}: {err.strip()[-400:]}")
        print(f"round {round_}: {time.perf_counter() - started:.1f} s")
    assert failures == []
    # one last merge (a Ray actor may still have held its shard when its driver merged)
    keys = KeyStore(store, credentials=Credentials(key_file=str(master)))
    keys.merge_shards(wait_s=10)
    assert not list((store / SHARDS_FOLDER).glob("*.jsonl")) if (store / SHARDS_FOLDER).is_dir() else True
    credentials = Credentials(key_file=str(master))
    for target, plain in sources.items():  # every ciphertext decrypts, bit-exact
        back = tmp_path / "back" / target.name
        if target.is_dir():
            assert decrypt_folder(target, back, keys=store, credentials=credentials).exit_code == 0
            assert_same_images(images_of(back), images_of(plain))
        else:
            assert decrypt_main([str(target), "-o", str(back), "--keys", str(store), "--key-file", str(master)]) == 0
            np.testing.assert_array_equal(read_image(back), read_image(plain))
    for command in ("verify", "audit"):
        done = subprocess.run([str(BIN / "dkg-keys"), command, str(store)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    store_now = KeyStore(store, credentials=Credentials(key_file=str(master)))
    assert verify_store(store_now).errors == [] and audit_store(store_now)[0] == []
    rotations = [r for r in audit_store(store_now)[1] if r["action"] == "rotate"]
    assert len(rotations) == ROUNDS
    print(f"stress: {len(store_now.entries())} keys, {time.perf_counter() - started:.1f} s")
    assert len(store_now.entries()) == sum(len(images_of(p)) if p.is_dir() else 1 for p in sources.values())
