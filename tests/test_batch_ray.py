"""`--engine ray` (issue 17): one local Ray (2 CPUs) for the module; mixed folders, dead workers, key store shards."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'keras-dkg[ray]')")

from keras_dkg.runtime.batch.driver import decrypt_folder, encrypt_folder  # noqa: E402
from keras_dkg.runtime.batch.engines import ray_actors as batch_ray  # noqa: E402
from keras_dkg.runtime.cli.encrypt import decrypt_main, encrypt_main  # noqa: E402
from keras_dkg.runtime.keys.artifact import Key, make_record  # noqa: E402
from keras_dkg.runtime.keystore.store import SHARDS_FOLDER, KeyStore  # noqa: E402
from tests.test_batch import SEED, assert_same_images, images_of, make_folder  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def encrypted_once(report, keys: Path, out: Path) -> None:
    """Every plaintext has exactly one ciphertext, made with a key the store lists for that file."""
    store = KeyStore(keys)
    for result in report.files:
        if result.status not in ("encrypted", "resumed"):
            continue
        assert (out / result.path).is_file()
        uses = store.find(result.key_fingerprint)["used_for"]
        assert [Path(u["plaintext"]).name for u in uses] == [Path(result.path).name]


def test_mixed_folder_round_trip_equals_local_engine(tmp_path, tiny_onnx_model, capsys):
    src = make_folder(tmp_path / "in")
    code = encrypt_main(["--batch", str(src), "-o", str(tmp_path / "out"), "--keys", str(tmp_path / "ks"),
                         "--model", str(tiny_onnx_model), "--seed", str(SEED), "--engine", "ray", "--workers", "2",
                         "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "dkg-report.json").read_text())
    workers = {f["worker"] for f in report["files"] if f["status"] == "encrypted"}
    assert len(workers) == 2 and all(w.startswith("ray-") for w in workers)
    assert report["options"]["engine"] == "ray" and report["summary"]["encrypted"] == 7
    assert not list((tmp_path / "ks" / SHARDS_FOLDER).glob("*.jsonl"))  # merged by the driver
    assert decrypt_main(["--batch", str(tmp_path / "out"), "--keys", str(tmp_path / "ks"), "--verify",
                         "--engine", "ray", "--no-progress"]) == 0
    assert decrypt_main(["--batch", str(tmp_path / "out"), "-o", str(tmp_path / "back"), "--keys",
                         str(tmp_path / "ks"), "--engine", "ray", "--no-progress"]) == 0
    assert_same_images(images_of(tmp_path / "back"), images_of(src))
    # the local engine's report has the same shape, and decrypts the Ray engine's archive the same
    local = encrypt_folder(src, tmp_path / "out2", keys=tmp_path / "ks2", model=tiny_onnx_model, seed=SEED)
    local_dict = json.loads((tmp_path / "out2" / "dkg-report.json").read_text())
    assert set(local_dict) == set(report) and set(local_dict["files"][0]) == set(report["files"][0])
    assert local.files[0].worker.startswith("local@")
    back = decrypt_folder(tmp_path / "out", tmp_path / "back2", keys=tmp_path / "ks")
    assert back.exit_code == 0
    assert_same_images(images_of(tmp_path / "back2"), images_of(src))


@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_a_worker_killed_mid_batch_the_others_finish_exactly_once(tmp_path, tiny_onnx_model, monkeypatch, how):
    src = make_folder(tmp_path / "in")
    killed = threading.Event()

    def kill_first_worker(actors, finished):
        if finished == 1 and not killed.is_set() and 0 in actors:
            killed.set()
            if how == "ray.kill":
                ray.kill(actors[0])
            else:
                os.kill(ray.get(actors[0].pid.remote()), signal.SIGKILL)

    monkeypatch.setattr(batch_ray, "_after_chunk", kill_first_worker)
    report = encrypt_folder(src, tmp_path / "out", keys=tmp_path / "ks", model=tiny_onnx_model, seed=SEED,
                            engine="ray", workers=2, chunk=1)
    assert killed.is_set()
    assert report.exit_code == 0, [(f.path, f.reason) for f in report.failed]
    statuses = [f.status for f in report.files if f.status != "ignored"]
    assert len(statuses) == 7 and set(statuses) <= {"encrypted", "resumed"}
    assert len({f.path for f in report.files}) == len(report.files)  # each file once in the report
    encrypted_once(report, tmp_path / "ks", tmp_path / "out")
    back = decrypt_folder(tmp_path / "out", tmp_path / "back", keys=tmp_path / "ks")
    assert back.exit_code == 0
    assert_same_images(images_of(tmp_path / "back"), images_of(src))


def test_decrypt_before_the_merge_and_concurrent_shards(tmp_path, tiny_onnx_model, monkeypatch):
    src = make_folder(tmp_path / "in")
    monkeypatch.setattr(batch_ray, "_merge_shards", lambda settings: None)  # a driver killed before merging
    report = encrypt_folder(src, tmp_path / "out", keys=tmp_path / "ks", model=tiny_onnx_model, seed=SEED,
                            engine="ray", workers=2)
    assert report.exit_code == 0
    shards = list((tmp_path / "ks" / SHARDS_FOLDER).glob("*.jsonl"))
    assert len([p for p in shards if not p.name.endswith(".audit.jsonl")]) == 2
    assert (tmp_path / "ks" / "index.jsonl").read_bytes() == b""
    back = decrypt_folder(tmp_path / "out", tmp_path / "back", keys=tmp_path / "ks")  # reads the shards
    assert back.exit_code == 0
    assert_same_images(images_of(tmp_path / "back"), images_of(src))
    # more writers at once, each its own shard, no lock: then one merge, every key once, chains intact
    def writer(name: str, seed: int) -> None:
        store = KeyStore(tmp_path / "ks", shard=name)
        for i in range(10):
            pixels = np.random.default_rng(seed * 100 + i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
            store.add(Key(pixels, make_record(pixels, nonce=str(i))), f"{seed:032x}{i:032x}", f"/w{seed}/{i}.png")

    threads = [threading.Thread(target=writer, args=(f"extra-{n}", n)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = KeyStore(tmp_path / "ks")
    before = {e["fingerprint"]: e for e in store.entries()}
    assert len(before) == 7 + 30
    # the batch's actors end asynchronously after it returns: their shards are live until then
    ray_shards = [p.name[:-len(".jsonl")] for p in shards if not p.name.endswith(".audit.jsonl")]
    merged = store.merge_shards(wait_for=ray_shards, wait_s=60)
    assert merged == 7 + 30, store.live_shards
    assert not list((tmp_path / "ks" / SHARDS_FOLDER).glob("*"))
    after = KeyStore(tmp_path / "ks")
    assert {e["fingerprint"]: e for e in after.entries()} == before
    from keras_dkg.runtime.keystore.admin import audit_store, verify_store

    assert verify_store(after).errors == []
    problems, records, _ = audit_store(after)
    assert problems == [] and sum(1 for r in records if r.get("merged_from")) == 37  # one record per key


def test_engine_flags_are_checked_before_any_work(tmp_path, tiny_onnx_model, capfd):
    src = make_folder(tmp_path / "in")
    base = ["--batch", str(src), "-o", str(tmp_path / "out"), "--keys", str(tmp_path / "ks"), "--model",
            str(tiny_onnx_model), "--seed", str(SEED)]
    assert encrypt_main([*base, "--engine", "ray", "--jobs", "2"]) == 2
    assert "--jobs is the local engine's" in capfd.readouterr().err
    assert encrypt_main([*base, "--workers", "2"]) == 2
    assert "--workers and --ray-address need --engine ray" in capfd.readouterr().err
    assert encrypt_main([*base, "--engine", "ray", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capfd.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "ks").exists()


def test_a_killed_driver_resumes_to_the_same_decryptions(tmp_path, tiny_onnx_model, monkeypatch):
    """The driver stopped after its first chunk (Ctrl-C): --resume on Ray finishes, nothing done twice."""
    from keras_dkg.runtime.batch.driver import BatchInterrupted

    src = make_folder(tmp_path / "in")

    def stop(actors, finished):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_ray, "_after_chunk", stop)
    with pytest.raises(BatchInterrupted) as stopped:
        encrypt_folder(src, tmp_path / "out", keys=tmp_path / "ks", model=tiny_onnx_model, seed=SEED,
                       engine="ray", workers=2, chunk=1)
    assert 0 < sum(1 for f in stopped.value.report.files if f.status == "encrypted") < 7
    monkeypatch.undo()
    report = encrypt_folder(src, tmp_path / "out", keys=tmp_path / "ks", model=tiny_onnx_model, seed=SEED,
                            engine="ray", workers=2, chunk=1, resume=True)
    assert report.exit_code == 0 and {f.status for f in report.files} >= {"resumed", "encrypted"}
    encrypted_once(report, tmp_path / "ks", tmp_path / "out")
    assert decrypt_folder(tmp_path / "out", tmp_path / "back", keys=tmp_path / "ks").exit_code == 0
    assert_same_images(images_of(tmp_path / "back"), images_of(src))


def test_ray_engine_with_a_protected_store(tmp_path, tiny_onnx_model, monkeypatch):
    """The actors get the driver's derived key (not the passphrase) and write sealed shards."""
    from keras_dkg.runtime.keystore import sealing
    from keras_dkg.runtime.keystore.admin import audit_store, init_store, verify_store
    from keras_dkg.runtime.keystore.custody import Credentials

    monkeypatch.setattr(sealing, "ARGON2_DEFAULTS", {"name": "argon2id", "iterations": 1, "lanes": 1, "memory_kib": 64})
    init_store(tmp_path / "ks", Credentials(passphrase="a long passphrase"))
    src = make_folder(tmp_path / "in")
    credentials = Credentials(passphrase="a long passphrase")
    report = encrypt_folder(src, tmp_path / "out", keys=tmp_path / "ks", model=tiny_onnx_model, seed=SEED,
                            engine="ray", workers=2, credentials=credentials)
    assert report.exit_code == 0 and credentials.for_workers().passphrase is None
    back = decrypt_folder(tmp_path / "out", tmp_path / "back", keys=tmp_path / "ks", engine="ray", workers=2,
                          credentials=Credentials(passphrase="a long passphrase"))
    assert back.exit_code == 0
    assert_same_images(images_of(tmp_path / "back"), images_of(src))
    store = KeyStore(tmp_path / "ks", credentials=Credentials(passphrase="a long passphrase"))
    assert len(store.entries()) == 7 and verify_store(store).errors == [] and audit_store(store)[0] == []
    assert not list((tmp_path / "ks" / "keys").glob("*.png"))
    data = b"".join(p.read_bytes() for p in (tmp_path / "ks").rglob("*") if p.is_file())
    fingerprints = [f.key_fingerprint.split(":")[1].encode() for f in report.files if f.key_fingerprint]
    assert len(fingerprints) == 7 and b"a_gray16.png" not in data and not any(fp in data for fp in fingerprints)
