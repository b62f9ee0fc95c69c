"""A batch into a really full filesystem (issue 23, class 8): a small tmpfs mounted for the run, in a
user+mount namespace of its own (`unshare -rm`, so no root is needed and no mount outlives the
test). The batch must end with exit 1 and a line per failed file, write its report or say that it
could not, and give back the key use of every file whose ciphertext was not written; every
ciphertext that was written decrypts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_dkg.runtime.batch.driver import decrypt_folder
from keras_dkg.runtime.formats.images import read_image, write_image
from keras_dkg.runtime.keystore.store import KeyStore

pydicom = pytest.importorskip("pydicom")
SEED = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
FILES = 40  # 48×48 uint16 PNGs: ~4.7 KB ciphertexts, two 4 KiB pages each, more than 64 KiB fits
INSIDE = """
import json, shutil, subprocess, sys
from pathlib import Path
full, argv, copy = Path(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], check=True)
from keras_dkg.runtime.cli.encrypt import encrypt_main
code = encrypt_main(argv)
shutil.copytree(full, copy, symlinks=True)  # the mount ends with this namespace: keep what it holds
sys.exit(code)
"""


def _unshare() -> list[str]:
    """The command prefix that gives a process its own user and mount namespace, or skip."""
    if sys.platform != "linux" or shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs Linux with unshare(1) and mount(8) to mount a small tmpfs")
    prefix = ["unshare", "--user", "--map-root-user", "--mount"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: no user namespaces ({probe.stderr.strip()})")
    return prefix


def _batch_into_full_disk(tmp_path: Path, model: Path, store_on_full_disk: bool):
    source = tmp_path / "in"
    source.mkdir()
    rng = np.random.default_rng(0)
    for index in range(FILES):
        write_image(source / f"{index:02d}.png", rng.integers(0, 1 << 16, (48, 48), dtype=np.uint16))
    full, copy = tmp_path / "full", tmp_path / "copy"
    full.mkdir()
    keys = full / "ks" if store_on_full_disk else tmp_path / "ks"
    argv = ["--batch", str(source), "-o", str(full / "arch"), "--keys", str(keys), "--model", str(model),
            "--seed", str(SEED), "--no-progress"]
    run = subprocess.run([*_unshare(), sys.executable, "-c", INSIDE, str(full), json.dumps(argv), str(copy)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    return source, copy, keys if not store_on_full_disk else copy / "ks", run


@pytest.mark.parametrize("store_on_full_disk", [False, True], ids=["store-elsewhere", "store-on-full-disk"])
def test_a_full_disk_fails_files_not_the_batch(tmp_path, tiny_onnx_model, store_on_full_disk):
    source, copy, keys, run = _batch_into_full_disk(tmp_path, tiny_onnx_model, store_on_full_disk)
    assert run.returncode == 1, run.stderr[-2000:]
    written = sorted(p.name for p in (copy / "arch").glob("*.png"))
    assert 0 < len(written) < FILES, run.stdout
    assert not [p for p in (copy / "arch").iterdir() if p.name.startswith(".") and p.suffix != ".lock"], \
        "no temporary file left on the full disk"
    lines = run.stderr.splitlines()
    failed = [line for line in lines if line.startswith("dkg-encrypt: failed: ")]
    assert f"{len(written)} encrypted, {FILES - len(written)} failed" in run.stdout
    report = copy / "arch" / "dkg-report.json"
    if report.exists():  # written after all: it holds every file
        assert len(json.loads(report.read_text())["files"]) == FILES
    else:  # not written: every failure is on stderr, and the last line says where the report is not
        assert len(failed) == FILES - len(written), run.stderr[-2000:]
        assert lines[-1].startswith("dkg-encrypt: error: the report ") and "could not be written" in lines[-1]
        assert "No space left on device" in lines[-1]
    assert all("No space left on device" in line for line in failed)
    # the store records a use exactly for the files that have a ciphertext (or says it could not give it back)
    still_recorded = {line.split(": ")[2] for line in failed if "still records" in line}
    used = {Path(use["plaintext"]).name for entry in KeyStore(keys).entries() for use in entry.get("used_for", [])}
    assert used - still_recorded == set(written)
    audit = [json.loads(line)["body"]["action"] for line in (keys / "audit.jsonl").read_text().splitlines()]
    assert audit.count("encrypt") - audit.count("release") == len(written) + len(still_recorded)
    back = decrypt_folder(copy / "arch", tmp_path / "back", keys=keys)
    assert back.count("decrypted") == len(written) and back.exit_code == 0
    for name in written:
        np.testing.assert_array_equal(read_image(tmp_path / "back" / name), read_image(source / name))
