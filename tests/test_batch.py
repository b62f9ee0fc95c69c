"""Batch encryption of folders: fresh keys, bad files skipped, resume, atomic writes."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from keras_dkg.errors import KeyMaterialError, OutputError
from keras_dkg.runtime import encryption
from keras_dkg.runtime.batch.driver import decrypt_folder, encrypt_folder
from keras_dkg.runtime.cli.encrypt import decrypt_main, encrypt_main
from keras_dkg.runtime.formats.images import read_image

pydicom = pytest.importorskip("pydicom")
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SEED = TEST_FILES / "CT_small.dcm"  # a DICOM seed


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    assert cv2.imwrite(str(path), image)


def make_folder(root: Path, corrupt: bool = False) -> Path:
    """8/16-bit PNG and TIFF, gray and RGB, DICOMs, in nested folders (+ a corrupt PNG)."""
    rng = np.random.default_rng(7)
    write_png(root / "a_gray16.png", rng.integers(0, 65536, (24, 36), dtype=np.uint16))
    write_png(root / "b_rgb8.png", rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
    write_png(root / "sub" / "c_gray16.tif", rng.integers(0, 65536, (16, 20), dtype=np.uint16))
    write_png(root / "sub" / "d_rgb16.tiff", rng.integers(0, 65536, (12, 16, 3), dtype=np.uint16))
    if corrupt:
        (root / "sub" / "e_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    shutil.copy(TEST_FILES / "MR_small.dcm", root / "sub" / "deeper" / "f_mr.dcm")
    shutil.copy(TEST_FILES / "MR_small_RLE.dcm", root / "g_rle.dcm")
    write_png(root / "z_gray8.png", rng.integers(0, 256, (16, 24), dtype=np.uint8))
    (root / "notes.txt").write_text("not an image")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def images_of(root: Path) -> dict[str, np.ndarray]:
    """Decoded pixels of every PNG/TIFF/DICOM file under root."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.suffix in (".png", ".tif", ".tiff"):
            out[path.relative_to(root).as_posix()] = read_image(path)
        elif path.suffix == ".dcm":
            out[path.relative_to(root).as_posix()] = pydicom.dcmread(path).pixel_array
    return out


def assert_same_images(left: dict, right: dict) -> None:
    assert sorted(left) == sorted(right)
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


@pytest.fixture()
def folders(tmp_path):
    return make_folder(tmp_path / "in"), tmp_path / "out", tmp_path / "keys", tmp_path / "back"


def run_encrypt(src, out, keys, model, **options):
    return encrypt_folder(src, out, keys=keys, model=model, seed=SEED, **options)


def test_batch_round_trip_bit_exact(folders, tiny_onnx_model):
    src, out, keys, back = folders
    before = tree_digest(src)
    report = run_encrypt(src, out, keys, tiny_onnx_model)
    assert report.exit_code == 0, report.failed
    assert report.count("encrypted") == 7 and report.count("ignored") == 1
    assert tree_digest(src) == before  # originals never modified
    # same relative paths and extensions; ciphertexts differ from the plaintexts
    for name in ("a_gray16.png", "sub/c_gray16.tif", "sub/d_rgb16.tiff", "sub/deeper/f_mr.dcm", "g_rle.dcm"):
        assert (out / name).is_file()
    assert read_image(out / "a_gray16.png").dtype == np.uint16
    assert not np.array_equal(read_image(out / "a_gray16.png"), read_image(src / "a_gray16.png"))
    encrypted_dicom = pydicom.dcmread(out / "sub" / "deeper" / "f_mr.dcm")  # still DICOM
    assert encrypted_dicom.PixelData != pydicom.dcmread(src / "sub" / "deeper" / "f_mr.dcm").PixelData
    # one fresh key per file, indexed file -> fingerprint -> key file
    fingerprints = [f.key_fingerprint for f in report.files if f.status == "encrypted"]
    assert len(set(fingerprints)) == 7
    entries = [json.loads(line) for line in (keys / "index.jsonl").read_text().splitlines()]
    assert {e["fingerprint"] for e in entries} == set(fingerprints)
    assert len({e["nonce"] for e in entries}) == 7
    for entry in entries:
        assert (keys / entry["key_file"]).is_file() and len(entry["used_for"]) == 1
    # a 16-bit 24x36 image: key at key_size_for, never tiled
    a16 = next(f for f in report.files if f.path == "a_gray16.png")
    entry = next(e for e in entries if e["fingerprint"] == a16.key_fingerprint)
    from keras_dkg.runtime.ciphers.metadata import key_size_for

    assert tuple(entry["shape"][:2]) == key_size_for((24, 36), np.uint16)
    saved = json.loads((out / "dkg-report.json").read_text())
    assert {f["path"]: f["status"] for f in saved["files"]}["notes.txt"] == "ignored"
    assert set(saved["timing_s"]) >= {"decode", "keygen", "xor", "write"}

    result = decrypt_folder(out, back, keys=keys)
    assert result.exit_code == 0 and result.count("decrypted") == 7
    assert_same_images(images_of(back), images_of(src))
    # DICOM comes back byte for byte (an uncompressed original); RLE stays decoded
    assert (back / "sub" / "deeper" / "f_mr.dcm").read_bytes() == (src / "sub" / "deeper" / "f_mr.dcm").read_bytes()
    np.testing.assert_array_equal(pydicom.dcmread(back / "g_rle.dcm").pixel_array,
                                  pydicom.dcmread(src / "g_rle.dcm").pixel_array)
    verified = decrypt_folder(out, None, keys=keys, verify_only=True)
    assert verified.exit_code == 0 and verified.count("verified") == 7


def test_corrupt_file_in_the_middle_is_reported_and_skipped(tmp_path, tiny_onnx_model):
    src = make_folder(tmp_path / "in", corrupt=True)
    out, keys = tmp_path / "out", tmp_path / "keys"
    report = run_encrypt(src, out, keys, tiny_onnx_model, report=tmp_path / "report.csv", chunk=3)
    assert report.exit_code == 1
    failed = {f.path: f.reason for f in report.failed}
    assert list(failed) == ["sub/e_corrupt.png"] and "not a readable image" in failed["sub/e_corrupt.png"]
    assert report.count("encrypted") == 7  # files before and after it are done
    assert not (out / "sub" / "e_corrupt.png").exists()
    rows = (tmp_path / "report.csv").read_text().splitlines()
    assert rows[0].startswith("path,status,reason") and len(rows) == 1 + 9
    assert any(row.startswith("sub/e_corrupt.png,failed,") for row in rows)


def test_kill_and_resume_equals_uninterrupted_run(tmp_path, tiny_onnx_model, monkeypatch):
    src = make_folder(tmp_path / "in")
    # the uninterrupted reference
    run_encrypt(src, tmp_path / "ref", tmp_path / "ref_keys", tiny_onnx_model)
    decrypt_folder(tmp_path / "ref", tmp_path / "ref_back", keys=tmp_path / "ref_keys")

    real = encryption.encrypt_array
    calls = {"n": 0}

    def dies_after_three(*args, **kwargs):
        if calls["n"] == 3:
            raise KeyboardInterrupt  # like a kill: nothing after this runs
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(encryption, "encrypt_array", dies_after_three)
    out, keys = tmp_path / "out", tmp_path / "keys"
    with pytest.raises(KeyboardInterrupt):
        run_encrypt(src, out, keys, tiny_onnx_model, chunk=2)
    monkeypatch.setattr(encryption, "encrypt_array", real)
    done = [p for p in out.rglob("*") if p.is_file() and p.name != "dkg-report.json"]
    assert len(done) == 3  # three outputs, no partial or temporary files (and the partial report)

    resumed = run_encrypt(src, out, keys, tiny_onnx_model, resume=True)
    assert resumed.exit_code == 0
    assert resumed.count("resumed") == 3 and resumed.count("encrypted") == 4
    decrypt_folder(out, tmp_path / "back", keys=keys)
    assert_same_images(images_of(tmp_path / "back"), images_of(tmp_path / "ref_back"))
    assert_same_images(images_of(tmp_path / "back"), images_of(src))


def test_resume_redoes_an_output_that_does_not_verify(folders, tiny_onnx_model):
    src, out, keys, back = folders
    run_encrypt(src, out, keys, tiny_onnx_model)
    damaged = out / "b_rgb8.png"
    pixels = read_image(damaged)
    # a different valid PNG in place of the ciphertext (no metadata): not verifiable
    write_png(damaged.with_name("tmp.png"), pixels ^ 1)
    damaged.unlink()
    damaged.with_name("tmp.png").rename(damaged)
    report = run_encrypt(src, out, keys, tiny_onnx_model, resume=True)
    assert [f.path for f in report.failed] == ["b_rgb8.png"] and "does not verify" in report.failed[0].reason
    report = run_encrypt(src, out, keys, tiny_onnx_model, resume=True, overwrite=True)
    assert report.exit_code == 0 and report.count("encrypted") == 1 and report.count("resumed") == 6
    assert decrypt_folder(out, back, keys=keys).exit_code == 0
    assert_same_images(images_of(back), images_of(src))


def test_overwrite_refusal_and_overwrite(folders, tiny_onnx_model):
    src, out, keys, _ = folders
    run_encrypt(src, out, keys, tiny_onnx_model)
    before = tree_digest(out)
    again = run_encrypt(src, out, keys, tiny_onnx_model, report=out.parent / "second.json")
    assert again.exit_code == 1 and again.count("failed") == 7
    assert all("exists; refusing to overwrite" in f.reason for f in again.failed)
    assert tree_digest(out) == before
    replaced = run_encrypt(src, out, keys, tiny_onnx_model, overwrite=True)
    assert replaced.exit_code == 0 and replaced.count("encrypted") == 7
    assert tree_digest(out)["a_gray16.png"] != before["a_gray16.png"]  # fresh key, new ciphertext
    with pytest.raises(OutputError, match="input folder"):
        run_encrypt(src, src, keys, tiny_onnx_model)


def test_wrong_key_store_is_a_clear_error(folders, tiny_onnx_model, tmp_path, capsys):
    src, out, keys, back = folders
    run_encrypt(src, out, keys, tiny_onnx_model)
    with pytest.raises(KeyMaterialError, match="not a keras_dkg key store"):
        decrypt_folder(out, back, keys=src)
    with pytest.raises(KeyMaterialError, match="no such key store"):
        decrypt_folder(out, back, keys=tmp_path / "missing")
    # another batch's key store: every file fails with the reason, nothing written
    other_src = make_folder(tmp_path / "other_in")
    run_encrypt(other_src, tmp_path / "other_out", tmp_path / "other_keys", tiny_onnx_model)
    report = decrypt_folder(out, back, keys=tmp_path / "other_keys")
    assert report.exit_code == 1 and report.count("failed") == 7
    assert all("no key with fingerprint" in f.reason for f in report.failed)
    assert "wrong key store" in report.options["hint"]
    assert not any(p.suffix in (".png", ".dcm", ".tif", ".tiff") for p in back.rglob("*"))
    code = decrypt_main(["--batch", str(out), "-o", str(tmp_path / "b2"), "--keys", str(src)])
    assert code == 2
    assert "not a keras_dkg key store" in capsys.readouterr().err


def test_disk_full_leaves_no_partial_output(folders, tiny_onnx_model, monkeypatch):
    src, out, keys, back = folders
    real_write = Path.write_bytes

    def disk_full(self, data):
        if out in self.parents and not self.name.endswith(".json"):
            with open(self, "wb") as handle:
                handle.write(data[: len(data) // 2])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    report = run_encrypt(src, out, keys, tiny_onnx_model)
    monkeypatch.setattr(Path, "write_bytes", real_write)
    assert report.exit_code == 1 and report.count("failed") == 7
    assert all("No space left on device" in f.reason for f in report.failed)
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name != "dkg-report.json"]
    assert leftovers == []  # no partial output, no temporary file
    # once there is space again, --resume finishes the job
    report = run_encrypt(src, out, keys, tiny_onnx_model, resume=True)
    assert report.exit_code == 0 and report.count("encrypted") == 7
    assert decrypt_folder(out, back, keys=keys).exit_code == 0
    assert_same_images(images_of(back), images_of(src))


def test_tampered_archive_fails_verification(folders, tiny_onnx_model):
    src, out, keys, _ = folders
    run_encrypt(src, out, keys, tiny_onnx_model)
    ds = pydicom.dcmread(out / "g_rle.dcm")
    ds.PatientName = "Someone^Else"
    ds.save_as(out / "g_rle.dcm", enforce_file_format=False)
    report = decrypt_folder(out, None, keys=keys, verify_only=True)
    assert report.exit_code == 3
    assert [f.path for f in report.failed] == ["g_rle.dcm"]
    assert "authentication failed" in report.failed[0].reason


def test_cli_dispatch_and_two_jobs(folders, tiny_onnx_model, capsys):
    src, out, keys, back = folders
    code = encrypt_main(["--batch", str(src), "-o", str(out), "--keys", str(keys), "--model", str(tiny_onnx_model),
                         "--seed", str(SEED), "--jobs", "2", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "7 encrypted" in captured.out and "report:" in captured.out
    saved = json.loads((out / "dkg-report.json").read_text())
    assert saved["jobs"] == 2 and saved["summary"]["encrypted"] == 7
    code = decrypt_main(["--batch", str(out), "--keys", str(keys), "--verify", "--no-progress"])
    assert code == 0 and "7 verified" in capsys.readouterr().out
    assert not back.exists()  # --verify writes nothing
    code = decrypt_main(["--batch", str(out), "-o", str(back), "--keys", str(keys), "--jobs", "2", "--no-progress"])
    assert code == 0
    assert_same_images(images_of(back), images_of(src))
    # a failure makes the exit code non-zero
    code = encrypt_main(["--batch", str(src), "-o", str(out), "--keys", str(keys), "--model", str(tiny_onnx_model),
                         "--seed", str(SEED), "--no-progress"])
    assert code == 1 and "refusing to overwrite" in capsys.readouterr().err
