"""The bad-input matrix, batch round: every batch output is checked before any work, every
entry of IN_DIR is accounted for, and nothing is encrypted twice (docs/batch.md).

Matrix cases (ids "batch2-...") run through `badinput_kit.check_case`; the tests after
them check what a snapshot cannot: the report's entries, file modes, non-UTF-8 names,
FIFOs (a snapshot would block reading one) and `--help`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

import numpy as np
from badinput_kit import DICOM_FILES, Env, Matrix, check_case, image

from keras_dkg.runtime.batch.driver import decrypt_folder, encrypt_folder
from keras_dkg.runtime.cli import encrypt as cipher_cli
from keras_dkg.runtime.formats.images import read_image, write_image
from keras_dkg.runtime.keystore.store import KeyStore

MATRIX = Matrix()
CASES = MATRIX.cases
case = MATRIX.case
KEY_STORE_FILES = ("ks", "ks/keys", "ks/index.jsonl", "ks/.lock", "ks/.writers.lock", "ks/.index.jsonl.append",
                   "ks/audit.jsonl", "ks/keys/*")
SEED = DICOM_FILES / "CT_small.dcm"


def batch_argv(env: Env, source: str = "in", out: str = "out", keys: str = "ks", *extra: str,
               model: str | None = None) -> list[str]:
    return ["--batch", source, "-o", out, "--keys", keys, "--model", model or env.model, "--seed", env.seed,
            "--no-progress", *extra]


def key_store(env: Env, folder: str = "ks") -> str:
    KeyStore(env.root / folder, create=True)
    return folder


def archive(env: Env) -> list[str]:
    """in/a.png encrypted by a batch into arch/ with its key in ks/ (the case's starting point)."""
    image(env, "in/a.png")
    encrypt_folder(env.root / "in", env.root / "arch", keys=env.root / "ks", model=env.model, seed=env.seed)
    return ["--batch", "arch", "--keys", "ks", "--no-progress"]


# ---- the report path, checked before any work -------------------------------------------

@case("batch2-report-is-folder", "dkg-encrypt", "--report names an existing folder", 2,
      r"rep: is a folder; the report must be a file path")
def _(env):
    image(env, "in/a.png")
    env.folder("rep")
    return batch_argv(env, "in", "out", "ks", "--report", "rep")


@case("batch2-report-not-json-or-csv", "dkg-encrypt", "--report an original image (in/a.png)", 2,
      r"in/a\.png: a report file must end in \.json or \.csv")
def _(env):
    image(env, "in/a.png")
    return batch_argv(env, "in", "out", "ks", "--report", "in/a.png", "--overwrite")


@case("batch2-report-replaces-input-file", "dkg-encrypt", "--report a .json file inside IN_DIR, with --overwrite", 2,
      r"in/meta\.json: is a file of the input folder in; originals are never overwritten")
def _(env):
    image(env, "in/a.png")
    env.write("in/meta.json", b'{"patient": "x"}')
    return batch_argv(env, "in", "out", "ks", "--report", "in/meta.json", "--overwrite")


@case("batch2-report-in-key-store", "dkg-encrypt", "--report inside the key store", 2,
      r"ks/r\.json: is inside the key store ks")
def _(env):
    image(env, "in/a.png")
    key_store(env)
    return batch_argv(env, "in", "out", "ks", "--report", "ks/r.json")


@case("batch2-report-exists", "dkg-encrypt", "--report an existing file that is not a report, no --overwrite", 2,
      r"old\.json: exists; refusing to overwrite \(use --overwrite\)")
def _(env):
    image(env, "in/a.png")
    env.write("old.json", b'{"mine": true}')
    return batch_argv(env, "in", "out", "ks", "--report", "old.json")


@case("batch2-report-exists-resume", "dkg-encrypt", "--resume with --report an existing file that is not a report", 2,
      r"notes\.csv: exists; refusing to overwrite \(use --overwrite\)")
def _(env):
    image(env, "in/a.png")
    env.write("notes.csv", b"name,value\nx,1\n")
    return batch_argv(env, "in", "out", "ks", "--report", "notes.csv", "--resume")


@case("batch2-report-is-model", "dkg-encrypt", "--report the model file (named .json), with --overwrite", 2,
      r"m\.json: .*the model m\.json")
def _(env):
    image(env, "in/a.png")
    model = env.link("m.json", "tiny_onnx_model")
    return batch_argv(env, "in", "out", "ks", "--report", "m.json", "--overwrite", model=model)


@case("batch2-report-folder-missing", "dkg-encrypt", "--report in a folder that does not exist", 2,
      r"nowhere/r\.json: output folder nowhere does not exist")
def _(env):
    image(env, "in/a.png")
    return batch_argv(env, "in", "out", "ks", "--report", "nowhere/r.json")


# ---- the output folder --------------------------------------------------------------------

@case("batch2-output-is-a-file", "dkg-encrypt", "-o names an existing file", 2,
      r"out\.png: exists and is not a folder; the output folder must be a folder")
def _(env):
    image(env, "in/a.png")
    image(env, "out.png")
    return batch_argv(env, "in", "out.png")


@case("batch2-output-is-the-model", "dkg-encrypt", "-o names the model file", 2,
      r"g\.onnx: .*the model g\.onnx")
def _(env):
    image(env, "in/a.png")
    return batch_argv(env, "in", env.model)


@case("batch2-output-in-key-store", "dkg-encrypt", "-o inside the key store", 2,
      r"ks/out: is inside the key store")
def _(env):
    image(env, "in/a.png")
    key_store(env)
    return batch_argv(env, "in", "ks/out")


@case("batch2-stale-file-where-folder", "dkg-encrypt", "OUT/sub is a file where IN/sub/ is a folder", 1,
      r"^dkg-encrypt: failed: sub/b\.png: out/sub/b\.png: cannot create its folder: out/sub is a file, not a folder",
      "a.png encrypted; sub/b.png failed; out/sub untouched; the report and key store written",
      allowed_new=("out/a.png", "out/dkg-report.json", *KEY_STORE_FILES))
def _(env):
    image(env, "in/a.png")
    image(env, "in/sub/b.png", seed=2)
    env.write("out/sub", b"a stale file")
    return batch_argv(env)


# ---- entries that are not plaintexts --------------------------------------------------------

@case("batch2-dangling-image-link", "dkg-encrypt", "IN_DIR holds a dangling symlink named .png", 1,
      r"^dkg-encrypt: failed: gone\.png: dangling symbolic link \(its target does not exist\); not opened",
      "a.png encrypted; the link reported as failed",
      allowed_new=("out", "out/a.png", "out/dkg-report.json", *KEY_STORE_FILES))
def _(env):
    image(env, "in/a.png")
    env.path("in/gone.png").symlink_to(env.root / "nothing.png")
    return batch_argv(env)


@case("batch2-ciphertext-in-input", "dkg-encrypt",
      "IN_DIR holds an earlier output folder (ciphertexts) and one unreadable image", 1,
      r"^dkg-encrypt: failed: bad\.png: in/bad\.png: not a readable image",
      "the ciphertext skipped (never encrypted again); only the report and the key store written",
      allowed_new=("out", "out/dkg-report.json", *KEY_STORE_FILES))
def _(env):
    image(env, "plain/a.png")
    encrypt_folder(env.root / "plain", env.root / "in" / "old", keys=env.root / "ks", model=env.model,
                   seed=env.seed)
    env.write("in/bad.png", b"text")
    return batch_argv(env)


@case("batch2-decrypt-report-is-folder", "dkg-decrypt", "--report names an existing folder (decrypt)", 2,
      r"rep: is a folder; the report must be a file path")
def _(env):
    argv = archive(env)
    env.folder("rep")
    return [*argv, "-o", "back", "--report", "rep"]


@case("batch2-verify-report-exists", "dkg-decrypt", "--verify --report an existing file, no --overwrite", 2,
      r"check\.json: exists; refusing to overwrite \(use --overwrite\)")
def _(env):
    argv = archive(env)
    env.write("check.json", b"{}")
    return [*argv, "--verify", "--report", "check.json"]


@case("batch2-decrypt-stale-file-where-folder", "dkg-decrypt", "BACK/sub is a file where ARCH/sub/ is a folder", 1,
      r"^dkg-decrypt: failed: sub/b\.png: back/sub/b\.png: cannot create its folder: back/sub is a file",
      "a.png decrypted; sub/b.png failed; back/sub untouched",
      allowed_new=("back/a.png", "back/dkg-report.json"))
def _(env):
    image(env, "in/sub/b.png", seed=2)
    argv = archive(env)
    env.write("back/sub", b"a stale file")
    return [*argv, "-o", "back"]


# ---- issue 23: names that would forge lines, DICOM named like a PACS export -----------------------

@case("batch2-name-with-newline", "dkg-encrypt",
      "IN_DIR holds an unreadable file named 'x.png<newline>dkg-encrypt: encrypt: 2 files: 2 encrypted.png'", 1,
      r"^dkg-encrypt: failed: x\.png\\ndkg-encrypt: encrypt: 2 files: 2 encrypted\.png: in/x\.png\\ndkg-encrypt: "
      r"encrypt: 2 files: 2 encrypted\.png: not a readable image",
      "a.png encrypted; the name shown with \\n escaped, on one line",
      allowed_new=("out", "out/a.png", "out/dkg-report.json", *KEY_STORE_FILES))
def _(env):
    image(env, "in/a.png")
    env.write("in/x.png\ndkg-encrypt: encrypt: 2 files: 2 encrypted.png", b"text")
    return batch_argv(env)


@case("batch2-name-with-escape-sequence", "dkg-encrypt",
      "IN_DIR holds an unreadable file whose name carries a terminal escape (ESC[2K, CR)", 1,
      r"^dkg-encrypt: failed: b\\x1b\[2K\\rok\.png: in/b\\x1b\[2K\\rok\.png: not a readable image",
      "a.png encrypted; ESC and CR shown escaped",
      allowed_new=("out", "out/a.png", "out/dkg-report.json", *KEY_STORE_FILES))
def _(env):
    image(env, "in/a.png")
    env.write("in/b\x1b[2K\rok.png", b"text")
    return batch_argv(env)


@case("batch2-single-file-name-with-escape", "dkg-encrypt", "one file whose name carries ESC[31m (not a readable image)", 2,
      r"^dkg-encrypt: error: in/c\\x1b\[31m\.png: not a readable image")
def _(env):
    from badinput_kit import encrypt_argv, key_file

    key_file(env)
    env.folder("out")
    return encrypt_argv(env.write("in/c\x1b[31m.png", b"text"))


@case("batch2-dicom-undeclared-pixel-data", "dkg-encrypt",
      "a PACS export (STUDY/SER/IM0002, no suffix) with one DICOM whose Pixel Data is twice Rows×Columns", 1,
      r"^dkg-encrypt: failed: STUDY/SER/IM0002: in/STUDY/SER/IM0002: 32768 bytes follow the 32768 bytes of samples "
      r"the image elements describe .* not zero padding; they would be left unencrypted",
      "IM0001 encrypted (DICOM, no suffix); IM0002 refused, nothing of it written",
      allowed_new=("out", "out/STUDY", "out/STUDY/SER", "out/STUDY/SER/IM0001", "out/dkg-report.json",
                   *KEY_STORE_FILES))
def _(env):
    import io

    from badinput_kit import pydicom

    env.write("in/STUDY/SER/IM0001", (DICOM_FILES / "MR_small.dcm").read_bytes())
    dataset = pydicom.dcmread(DICOM_FILES / "CT_small.dcm")
    dataset.PixelData = dataset.PixelData * 2
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    env.write("in/STUDY/SER/IM0002", buffer.getvalue())
    return batch_argv(env)


@MATRIX.parametrize()
def test_bad_input(case, tmp_path, request, monkeypatch, capfd):
    check_case(case, tmp_path, request, monkeypatch, capfd)


def test_the_batch_matrix_has_its_cases():
    assert len(CASES) >= 12
    assert len({c.id for c in CASES}) == len(CASES) and all(c.id.startswith("batch2-") for c in CASES)


# ---- what a snapshot cannot check ---------------------------------------------------------------


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, array)


def _pixels(shape=(12, 16), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)


def _encrypt(source: Path, out: Path, keys: Path, model, **options):
    return encrypt_folder(source, out, keys=keys, model=model, seed=SEED, **options)


def test_every_entry_is_in_the_report(tmp_path, tiny_onnx_model):
    source, out, keys = tmp_path / "in", tmp_path / "in" / "out", tmp_path / "in" / "ks"
    _write(source / "a.png", _pixels())
    _write(source / "sub" / "b.png", _pixels(seed=1))
    _write(tmp_path / "elsewhere" / "c.png", _pixels(seed=2))
    (source / "notes.txt").write_text("text")
    (source / ".hidden.png").write_bytes(b"x")
    _write(source / ".cache" / "d.png", _pixels(seed=3))
    (source / "linked.png").symlink_to(tmp_path / "elsewhere" / "c.png")  # file links are followed
    (source / "linked_dir").symlink_to(tmp_path / "elsewhere")  # folder links are not
    (source / "loop").symlink_to(source)
    (source / "gone.txt").symlink_to(tmp_path / "missing")
    os.mkfifo(source / "pipe")
    _write(tmp_path / "plain" / "e.png", _pixels(seed=4))
    _encrypt(tmp_path / "plain", source / "old_archive", tmp_path / "old_keys", tiny_onnx_model)

    report = _encrypt(source, out, keys, tiny_onnx_model)
    entries = {f.path: (f.status, f.reason) for f in report.files}
    assert report.exit_code == 0, report.failed
    statuses = {path: status for path, (status, _) in entries.items()}
    assert statuses == {
        "a.png": "encrypted", "sub/b.png": "encrypted", "linked.png": "encrypted",
        "notes.txt": "ignored", ".hidden.png": "skipped", ".cache/": "skipped", "linked_dir/": "skipped",
        "loop/": "skipped", "gone.txt": "skipped", "pipe": "skipped", "out/": "skipped", "ks/": "skipped",
        "old_archive/e.png": "skipped", "old_archive/dkg-report.json": "ignored",
    }, entries
    assert "not followed" in entries["linked_dir/"][1] and "dangling" in entries["gone.txt"][1]
    assert "FIFO" in entries["pipe"][1] and "not opened" in entries["pipe"][1]
    assert "output folder" in entries["out/"][1] and "key store" in entries["ks/"][1]
    assert "already a keras_dkg ciphertext" in entries["old_archive/e.png"][1]
    assert not (out / "old_archive").exists()  # the ciphertext was not encrypted again
    assert report.summary()["skipped"] == 9


def test_report_files_modes_and_columns(tmp_path, tiny_onnx_model):
    source, out, keys = tmp_path / "in", tmp_path / "out", tmp_path / "ks"
    _write(source / "a.png", _pixels())
    (source / "bad.png").write_bytes(b"text")
    name = os.fsdecode(b"caf\xe9.png")  # not UTF-8 (latin-1): a surrogate escape in Python
    _write(source / name, _pixels(seed=5))
    report = _encrypt(source, out, keys, tiny_onnx_model, report=tmp_path / "r.csv")
    assert report.exit_code == 1 and [f.path for f in report.failed] == ["bad.png"]
    assert report.failed[0].output is None  # no output listed for a failed file
    raw = (tmp_path / "r.csv").read_bytes()
    assert b"caf\xe9.png" in raw  # the real bytes of the name
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8", "surrogateescape"))))
    by_path = {row["path"]: row for row in rows}
    assert by_path["a.png"]["shape"] == "12x16" and by_path["a.png"]["dtype"] == "uint16"
    assert by_path[name]["status"] == "encrypted" and by_path["bad.png"]["output"] == ""
    for path in (tmp_path / "r.csv", keys / "index.jsonl", keys / ".lock", out / name):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not (out / ".dkg-batch.lock").exists()
    back = tmp_path / "back"
    assert decrypt_folder(out, back, keys=keys).exit_code == 0
    np.testing.assert_array_equal(read_image(back / name), _pixels(seed=5))
    saved = json.loads((back / "dkg-report.json").read_text())
    assert {f["path"] for f in saved["files"]} == {"a.png", name}


def test_report_is_replaced_only_when_it_is_ours(tmp_path, tiny_onnx_model, capfd):
    source, out, keys = tmp_path / "in", tmp_path / "out", tmp_path / "ks"
    _write(source / "a.png", _pixels())
    first = _encrypt(source, out, keys, tiny_onnx_model, report=tmp_path / "r.json")
    assert first.exit_code == 0
    argv = ["--batch", str(source), "-o", str(out), "--keys", str(keys), "--model", str(tiny_onnx_model),
            "--seed", str(SEED), "--no-progress", "--report", str(tmp_path / "r.json")]
    capfd.readouterr()
    assert cipher_cli.encrypt_main(argv) == 2  # an earlier report, but no --resume: refused before any work
    assert "r.json: exists; refusing to overwrite" in capfd.readouterr().err
    assert cipher_cli.encrypt_main([*argv, "--resume"]) == 0  # our own report, resumed: replaced
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["resumed"] == 1
    # the default report in OUT_DIR is ours: a rerun replaces it (and refuses each existing output)
    assert cipher_cli.encrypt_main(argv[:-2]) == 1
    assert "refusing to overwrite (use --overwrite, or --resume)" in capfd.readouterr().err


def test_help_names_batch_mode(capsys):
    for main, words in ((cipher_cli.encrypt_main, ("--batch", "--resume")), (cipher_cli.decrypt_main,
                                                                             ("--batch", "--verify"))):
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0
        shown = " ".join(capsys.readouterr().out.split())
        assert all(word in shown for word in words), shown


def test_our_reports_are_recognised_by_content(tmp_path):
    from keras_dkg.runtime.batch.report import BatchReport, FileResult, is_batch_report

    report = BatchReport("encrypt", "in", "out", "ks", "now", files=[FileResult("a.png", "encrypted", shape=[2, 3])])
    for name in ("r.json", "r.csv"):
        report.write(tmp_path / name)
        assert is_batch_report(tmp_path / name), name
    (tmp_path / "other.csv").write_text("path,status\na.png,done\n")
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    assert not is_batch_report(tmp_path / "other.csv") and not is_batch_report(tmp_path / "other.json")
    assert not is_batch_report(tmp_path / "missing.json")
