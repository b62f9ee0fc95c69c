"""DICOM files named like PACS exports (`STUDY/SER/IM0001`, DICOMDIR file-sets: no suffix, or a
UID for a name) round-trip: what encrypts and verifies also decrypts, to DICOM, byte-identical
(issue 23, class 5). The format of a written file comes from its name only when the name says
one (`formats.output_format`); otherwise a DICOM ciphertext is written back as DICOM."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from keras_dkg.runtime.batch.driver import decrypt_folder, encrypt_folder
from keras_dkg.runtime.cli import encrypt as cipher_cli
from keras_dkg.runtime.formats.detect import output_format

pydicom = pytest.importorskip("pydicom")
FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SEED = FILES / "CT_small.dcm"
# uncompressed little-endian images of pydicom's archive: every one encrypts
TEST_FILES = ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm", "rtdose.dcm",
              "SC_rgb_small_odd.dcm", "liver_1frame.dcm", "examples_overlay.dcm")


def pacs_export(root: Path) -> list[str]:
    """pydicom's test images copied to suffix-less names in nested folders, plus its DICOMDIR test
    set's own suffix-less series (`98892003/MR700/4648`, …); their relative paths."""
    names = []
    for number, name in enumerate(TEST_FILES, start=1):
        target = root / "STUDY" / f"SER{number % 3}" / f"IM{number:04d}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FILES / name, target)
        names.append(target.relative_to(root).as_posix())
    uid_name = root / "STUDY" / "SER9" / "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
    uid_name.parent.mkdir(parents=True)
    shutil.copyfile(FILES / "MR_small.dcm", uid_name)  # a UID name: its "suffix" is .320
    names.append(uid_name.relative_to(root).as_posix())
    series = FILES / "dicomdirtests" / "98892003"
    shutil.copytree(series, root / "98892003")
    names += [p.relative_to(root).as_posix() for p in sorted((root / "98892003").rglob("*")) if p.is_file()]
    return names


def file_set(root: Path) -> list[str]:
    """A real DICOMDIR layout written by pydicom's FileSet: DICOMDIR + PT*/ST*/SE*/IM*."""
    from pydicom.fileset import FileSet

    fs = FileSet()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        fs.add(pydicom.dcmread(FILES / name))
    fs.write(root)
    return [p.relative_to(root).as_posix() for p in sorted(root.rglob("IM*")) if p.is_file()]


@pytest.mark.parametrize("layout", [pacs_export, file_set], ids=["pacs-export", "dicomdir"])
def test_batch_round_trip_of_suffixless_dicom(tmp_path, tiny_onnx_model, layout):
    source = tmp_path / "in"
    source.mkdir()
    names = layout(source)
    assert names and all("." not in Path(n).name or n.endswith(".320") for n in names)
    archive, back, keys = tmp_path / "arch", tmp_path / "back", tmp_path / "ks"
    report = encrypt_folder(source, archive, keys=keys, model=tiny_onnx_model, seed=SEED)
    assert report.exit_code == 0, [(f.path, f.reason) for f in report.failed]
    assert sorted(f.path for f in report.files if f.status == "encrypted") == sorted(names)
    dicomdir = [f for f in report.files if f.path == "DICOMDIR"]
    assert all(f.status == "skipped" and "DICOMDIR" in f.reason for f in dicomdir)
    verified = decrypt_folder(archive, None, keys=keys, verify_only=True)
    assert verified.exit_code == 0 and verified.count("verified") == len(names)
    decrypted = decrypt_folder(archive, back, keys=keys)
    assert decrypted.exit_code == 0, [(f.path, f.reason) for f in decrypted.failed]
    assert decrypted.count("decrypted") == len(names)
    for name in names:
        assert (back / name).read_bytes() == (source / name).read_bytes(), name
        assert (archive / name).read_bytes()[128:132] == b"DICM"  # the ciphertext is DICOM too


def test_single_file_suffixless_names(tmp_path, tiny_onnx_model, capsys):
    study = tmp_path / "STUDY" / "SER"
    study.mkdir(parents=True)
    (tmp_path / "back").mkdir()
    shutil.copyfile(FILES / "MR_small.dcm", study / "IM0001")
    keys = str(tmp_path / "ks")
    assert cipher_cli.encrypt_main([str(study / "IM0001"), "--model", str(tiny_onnx_model), "--seed", str(SEED),
                                    "--keys", keys, "-o", str(tmp_path / "IM0001.enc")]) == 0
    for output in ("IM0001", "IM0001.dec"):
        assert cipher_cli.decrypt_main([str(tmp_path / "IM0001.enc"), "--keys", keys,
                                        "-o", str(tmp_path / "back" / output)]) == 0, capsys.readouterr().err
        assert (tmp_path / "back" / output).read_bytes() == (study / "IM0001").read_bytes()


@pytest.mark.parametrize(("source", "target", "expected"), [
    ("dicom", "IM0001", "dicom"), ("dicom", "1.2.840.113619.2.55.3.320", "dicom"), ("dicom", "x.enc", "dicom"),
    ("dicom", "x.png", "raster"), ("dicom", "x.TIF", "raster"), ("dicom", "x.jpg", "raster"),
    ("dicom", "x.dcm", "dicom"), ("dicom", "x.nii.gz", "nifti"), ("raster", "x", "raster"),
    ("raster", "x.dcm", "dicom"), ("nifti", "x.nii", "nifti"), ("nifti", "x", "raster"),
])
def test_output_format_by_name_else_the_source(source, target, expected, tmp_path):
    existing = tmp_path / target  # never the bytes of a file already there
    existing.write_bytes(b"\0" * 128 + b"DICM")
    assert output_format(source, existing) == expected
