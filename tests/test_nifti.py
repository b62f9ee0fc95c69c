"""NIfTI volumes end to end: every stored dtype, 3-D and 4-D, .nii and .nii.gz, NIfTI-1 and -2,
bit-identical after decryption, header and affine kept, tampering detected; the format registry."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from keras_dkg.errors import (
    AlreadyEncryptedError,
    InputError,
    IntegrityError,
    KeyMaterialError,
    OutputError,
)
from keras_dkg.runtime import formats
from keras_dkg.runtime.ciphers.metadata import key_size_for
from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array
from keras_dkg.runtime.cli.encrypt import decrypt_main, encrypt_main
from keras_dkg.runtime.formats import nifti, sources

DTYPES = ["int8", "int16", "int32", "uint8", "uint16", "float32", "float64"]
RNG = np.random.default_rng(3)


def volume(path: Path, dtype: str = "int16", shape=(12, 10, 5), version: int = 1, big_endian: bool = False,
           extension: bool = False, scale: bool = False) -> Path:
    """A synthetic volume with a non-trivial affine (and optionally a big-endian header, an
    extension, a scale factor), written by nibabel."""
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    data = (RNG.integers(info.min, info.max, shape, endpoint=True).astype(dtype) if info is not None
            else RNG.normal(0, 100, shape).astype(dtype))
    affine = np.array([[-1.5, 0, 0, 90], [0, 1.5, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])
    image_class = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    image = image_class(data, affine)
    if big_endian:
        image = image_class(data, affine, header=image.header.as_byteswapped(">"))
    if extension:
        image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment from the scanner"))
    nib.save(image, path)
    if scale:  # nibabel's writer chooses its own scaling: set the stored factors in the bytes
        data = bytearray(raw(path))
        data[112:120] = np.array([0.5, 10.0], "<f4").tobytes()
        path.write_bytes(gzip.compress(bytes(data)) if path.name.endswith(".gz") else bytes(data))
    return path


def raw(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def round_trip(source: Path, tmp_path: Path, cipher: str = "xor") -> tuple[Path, Path]:
    plain = formats.open_plaintext(source)
    key = RNG.integers(0, 256, (*key_size_for(plain.array.shape, plain.array.dtype), 3), dtype=np.uint8)
    ciphertext, meta = encrypt_array(plain.array, key, cipher=cipher, context=plain.context)
    suffix = ".nii.gz" if source.name.endswith(".gz") else ".nii"
    encrypted = plain.save_ciphertext(tmp_path / f"enc{suffix}", ciphertext, meta)
    handle = formats.open_ciphertext(encrypted)
    back = handle.write_plaintext(tmp_path / f"back{suffix}",
                                  decrypt_array(handle.array, key, handle.meta, context=handle.context))
    return encrypted, back


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(12, 10, 5), (8, 6, 4, 3)], ids=["3d", "4d"])
def test_every_dtype_round_trips_bit_exactly(tmp_path, dtype, shape):
    source = volume(tmp_path / "v.nii.gz", dtype, shape)
    encrypted, back = round_trip(source, tmp_path)
    assert raw(back) == raw(source), "decrypted file identical to the original, header and voxels"
    assert back.read_bytes()[:2] == b"\x1f\x8b", ".nii.gz in, .nii.gz out"
    original, ciphered = nib.load(source), nib.load(encrypted)
    np.testing.assert_array_equal(ciphered.affine, original.affine)
    assert ciphered.header.get_data_shape() == original.header.get_data_shape()
    assert ciphered.header.get_data_dtype() == original.header.get_data_dtype()
    assert not np.array_equal(np.asanyarray(ciphered.dataobj), np.asanyarray(original.dataobj))


@pytest.mark.parametrize("variant", ["nifti2", "big-endian", "extension", "scaled", "plain-nii"])
def test_header_variants_round_trip(tmp_path, variant):
    name = "v.nii" if variant == "plain-nii" else "v.nii.gz"
    source = volume(tmp_path / name, "int16", version=2 if variant == "nifti2" else 1,
                    big_endian=variant == "big-endian", extension=variant == "extension", scale=variant == "scaled")
    encrypted, back = round_trip(source, tmp_path, cipher="xor")
    assert raw(back) == raw(source)
    loaded = nib.load(encrypted)
    ours = [e for e in loaded.header.extensions if e.get_content().startswith(nifti.MARK)]
    assert len(ours) == 1, "one keras_dkg extension, after any the file had"
    if variant == "extension":
        assert loaded.header.extensions[0].get_content() == b"a comment from the scanner"
    if variant == "scaled":
        proxy = nib.load(back).dataobj  # nibabel moves the stored factors into the array proxy
        assert (proxy.slope, proxy.inter) == (0.5, 10.0), "scaling untouched, applied by readers"


def test_hardened_cipher_round_trips_a_volume(tmp_path):
    pytest.importorskip("cryptography")
    source = volume(tmp_path / "v.nii.gz", "float32")
    _, back = round_trip(source, tmp_path, cipher="hardened")
    assert raw(back) == raw(source)


def _encrypted(tmp_path: Path) -> tuple[Path, np.ndarray]:
    source = volume(tmp_path / "v.nii", "int16")
    plain = formats.open_plaintext(source)
    key = RNG.integers(0, 256, (*key_size_for(plain.array.shape, plain.array.dtype), 3), dtype=np.uint8)
    ciphertext, meta = encrypt_array(plain.array, key, context=plain.context)
    return plain.save_ciphertext(tmp_path / "enc.nii", ciphertext, meta), key


def _decrypt(path: Path, key: np.ndarray) -> np.ndarray:
    handle = formats.open_ciphertext(path)
    return decrypt_array(handle.array, key, handle.meta, context=handle.context)


@pytest.mark.parametrize("where", ["pixdim", "affine", "voxel", "description"])
def test_a_changed_header_or_voxel_fails_authentication(tmp_path, where):
    encrypted, key = _encrypted(tmp_path)
    data = bytearray(encrypted.read_bytes())
    offset = {"pixdim": 80, "affine": 280, "description": 148, "voxel": len(data) - 7}[where]
    data[offset] ^= 0x01
    encrypted.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        _decrypt(encrypted, key)


def test_wrong_key_and_already_encrypted(tmp_path):
    encrypted, key = _encrypted(tmp_path)
    with pytest.raises(KeyMaterialError, match="wrong key"):
        _decrypt(encrypted, key ^ 1)
    with pytest.raises(AlreadyEncryptedError, match="already a keras_dkg ciphertext"):
        formats.open_plaintext(encrypted)


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
def test_zero_padding_after_the_voxels_round_trips(tmp_path, name):
    """Zero padding (up to MAX_PADDING_BYTES) after the voxels carries no image: kept, bound
    into the tag, restored; anything else after them is refused (tests/test_bad_inputs_nifti.py)."""
    source = volume(tmp_path / name, "int16")
    padded = raw(source) + bytes(4096)
    source.write_bytes(gzip.compress(padded) if name.endswith(".gz") else padded)
    _, back = round_trip(source, tmp_path)
    assert raw(back) == padded
    plain = formats.open_plaintext(source)
    key = RNG.integers(0, 256, (*key_size_for(plain.array.shape, plain.array.dtype), 3), dtype=np.uint8)
    encrypted = plain.save_ciphertext(tmp_path / "again.nii", *encrypt_array(plain.array, key, context=plain.context))
    data = bytearray(encrypted.read_bytes())
    data[-1] = 1  # the padding is authenticated like the header
    encrypted.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        _decrypt(encrypted, key)


def test_a_gzip_bomb_is_refused_in_bounded_memory(tmp_path):
    """A .nii.gz inflating to 512 MiB of zeros after 1,200 voxel bytes: refused after reading its
    declared end + the padding, in a child whose peak RSS stays far below what it inflates to."""
    import subprocess
    import sys
    import zlib

    source = volume(tmp_path / "v.nii", "int16")
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(source.read_bytes())]
    zeros = bytes(1 << 20)
    parts += [packer.compress(zeros) for _ in range(512)]
    bomb = tmp_path / "bomb.nii.gz"
    bomb.write_bytes(b"".join(parts) + packer.flush())
    assert bomb.stat().st_size < 1 << 20
    probe = ("import resource, sys\n"
             "from keras_dkg.errors import InputError\n"
             "from keras_dkg.runtime.formats import nifti\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "try:\n    nifti.open_plaintext(sys.argv[1])\nexcept InputError as exc:\n    print(exc)\n"
             "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    out = subprocess.run([sys.executable, "-c", probe, str(bomb)], capture_output=True, text=True, check=True).stdout
    message, grown_mib = out.strip().splitlines()
    assert "inflates past the 1552 bytes its header declares plus 65536 bytes of padding" in message
    assert int(grown_mib) < 64, f"reading the bomb grew the process by {grown_mib} MiB"


def test_files_that_cannot_be_kept_exactly_are_refused(tmp_path):
    good = volume(tmp_path / "v.nii.gz", "int16")
    truncated = tmp_path / "t.nii.gz"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(InputError, match="damaged or truncated gzip"):
        formats.open_plaintext(truncated)
    short = tmp_path / "short.nii"
    short.write_bytes(raw(good)[:-100])
    with pytest.raises(InputError, match="the header claims 1200 voxel bytes"):
        formats.open_plaintext(short)
    pair = tmp_path / "p.hdr"
    nib.save(nib.Nifti1Pair(np.zeros((4, 4, 2), np.int16), np.eye(4)), pair)
    with pytest.raises(InputError, match=r"NIfTI pairs \(.hdr/.img\) are not supported"):
        formats.open_plaintext(pair)
    not_nifti = tmp_path / "x.nii"
    not_nifti.write_bytes(b"\0" * 400)
    with pytest.raises(InputError, match="not a NIfTI-1/NIfTI-2 file"):
        formats.open_plaintext(not_nifti)


def test_registry_finds_each_format(tmp_path):
    assert [formats.format_of(n) for n in ("a.png", "a.TIF", "a.dcm", "a.nii", "a.nii.gz", "a.hdr")] == [
        "raster", "raster", "dicom", "nifti", "nifti", "nifti"]
    assert set(formats.FORMATS) == {"raster", "dicom", "nifti"}
    with pytest.raises(OutputError, match="a NIfTI ciphertext needs a NIfTI plaintext"):
        formats.check_output("a.png", "b.nii.gz")
    with pytest.raises(OutputError, match="a PNG/TIFF ciphertext needs a PNG/TIFF plaintext; write this NIfTI"):
        formats.check_output("a.nii.gz", "b.png")
    assert formats.check_output("a.dcm", "b.png") == "raster", "a DICOM file's pixels may go to PNG"


def test_no_format_branch_is_left_in_the_batch():
    root = Path(__file__).parent.parent / "keras_dkg" / "runtime"
    for module in sorted(root.glob("batch*.py")):
        text = module.read_text().lower()
        for word in ("is_dicom(", "dicom.", "nifti.", "read_dicom", "suffix == "):
            assert word not in text, f"{module.name} branches on a format ({word})"


def test_cli_encrypts_the_embedded_epi_volume(tmp_path, tiny_onnx_model, capsys):
    """The real 4-D EPI volume nibabel ships (int16, 128×96×24×2), through dkg-encrypt/dkg-decrypt."""
    from keras_dkg import embedded

    source = embedded.source_volume_path()
    encrypted, back, keys = tmp_path / "epi.enc.nii.gz", tmp_path / "epi.back.nii.gz", tmp_path / "keys"
    assert encrypt_main([str(source), "-o", str(encrypted), "--model", str(tiny_onnx_model),
                         "--seed", str(embedded.seed_path()), "--keys", str(keys)]) == 0
    assert "cipher xor" in capsys.readouterr().out
    assert decrypt_main([str(encrypted), "-o", str(back), "--keys", str(keys)]) == 0
    assert raw(back) == raw(source)
    assert decrypt_main([str(encrypted), "-o", str(tmp_path / "x.png"), "--keys", str(keys)]) == 2
    assert "a PNG/TIFF plaintext needs a PNG/TIFF ciphertext" in capsys.readouterr().err


def test_a_mixed_archive_encrypts_decrypts_and_resumes_in_one_batch(tmp_path, tiny_onnx_model):
    """PNG, TIFF, DICOM and NIfTI (.nii and .nii.gz) in one --batch run, resumed, then decrypted."""
    import cv2
    from test_dicom import build_dicom

    from keras_dkg import embedded
    from keras_dkg.runtime.batch.driver import decrypt_folder, encrypt_folder

    archive = tmp_path / "archive"
    (archive / "sub").mkdir(parents=True)
    cv2.imwrite(str(archive / "a.png"), RNG.integers(0, 65536, (20, 24), dtype=np.uint16))
    cv2.imwrite(str(archive / "sub" / "b.tif"), RNG.integers(0, 256, (16, 12, 3), dtype=np.uint8))
    build_dicom(archive / "c.dcm", rows=16, columns=12, bits=16, stored=12, signed=True)
    volume(archive / "sub" / "d.nii.gz", "int16", (16, 12, 4))
    volume(archive / "e.nii", "float32", (8, 8, 3, 2), version=2)
    (archive / "notes.txt").write_text("not an image")
    out, back, keys = tmp_path / "out", tmp_path / "back", tmp_path / "keys"
    seed = embedded.seed_path()
    first = encrypt_folder(archive, out, keys=keys, model=tiny_onnx_model, seed=seed)
    assert first.exit_code == 0, first.failed
    assert first.count("encrypted") == 5 and first.count("ignored") == 1
    (out / "sub" / "d.nii.gz").unlink()  # as if the first run had been stopped before this file
    again = encrypt_folder(archive, out, keys=keys, model=tiny_onnx_model, seed=seed, resume=True)
    assert again.exit_code == 0, [(f.path, f.status, f.reason, f.error) for f in again.files if f.status != "resumed"]
    assert again.count("encrypted") == 1 and again.count("resumed") == 4
    assert formats.open_ciphertext(out / "e.nii").meta.shape == [8, 8 * 3 * 2 * 4]
    done = decrypt_folder(out, back, keys=keys)
    assert done.exit_code == 0 and done.count("decrypted") == 5, done.failed
    from keras_dkg.runtime.formats.images import read_image

    for relative in ("a.png", "sub/b.tif"):  # rasters: the same samples (the PNG/TIFF encoder may differ)
        np.testing.assert_array_equal(read_image(back / relative), read_image(archive / relative))
    for relative in ("c.dcm", "e.nii"):  # DICOM and NIfTI: the same file
        assert (back / relative).read_bytes() == (archive / relative).read_bytes(), relative
    assert raw(back / "sub" / "d.nii.gz") == raw(archive / "sub" / "d.nii.gz")


def _padded_volume(path: Path, empty: int = 2) -> Path:
    """A 4-D-free 20×16×8 volume whose first and last `empty` axial slices are all zero (BraTS-like)."""
    data = np.zeros((20, 16, 8), np.int16)
    data[:, :, empty:-empty] = RNG.integers(100, 2000, (20, 16, 8 - 2 * empty))
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def test_training_slices_drop_empty_slices_and_window_each_volume(tmp_path):
    slices = sources.training_slices(_padded_volume(tmp_path / "v.nii.gz"))
    assert [label.rsplit(":", 1)[1] for label, _ in slices] == ["2", "3", "4", "5"]
    image = slices[0][1]
    assert image.dtype == np.uint16 and image.shape == (16, 20), "rot90: x-y plane shown upright"
    assert max(int(img.max()) for _, img in slices) == 65535, "windowed at the volume's 99.5th percentile"
    assert 0 < int(image.min()) < 10000, "its 0.5th percentile (the zero padding) maps to 0"
    four_d = tmp_path / "t.nii"
    nib.save(nib.Nifti1Image(RNG.integers(1, 100, (8, 8, 3, 2)).astype(np.int16), np.eye(4)), four_d)
    assert [label.split(":", 1)[1] for label, _ in sources.training_slices(four_d)] == [
        "0:0", "1:0", "2:0", "0:1", "1:1", "2:1"]


def test_a_volume_slice_is_a_seed(tmp_path, tiny_onnx_model, capsys):
    from keras_dkg.runtime.cli.keygen import main as keygen_main
    from keras_dkg.runtime.keys.generator import KeyGenerator, load_seed

    source = _padded_volume(tmp_path / "v.nii.gz")
    middle, digest_middle, label = load_seed(source)
    assert label == "v.nii.gz:4" and middle.shape == (16, 20)
    third, digest_third, _ = load_seed(f"{source}:3")
    assert digest_third != digest_middle and not np.array_equal(third, middle), "two slices, two seeds"
    with pytest.raises(InputError, match="slice 9 is outside the volume's 8 axial slices"):
        load_seed(f"{source}:9")
    key = KeyGenerator(tiny_onnx_model).generate(f"{source}:3", size=(16, 20), nonce=1)
    assert key.pixels.shape == (16, 20, 3)
    assert keygen_main(["--model", str(tiny_onnx_model), "--seed", f"{source}:3", "-o", str(tmp_path / "k.png"),
                        "--size", "16x20"]) == 0
    assert (tmp_path / "k.png").is_file()


def test_fit_trains_on_a_folder_of_volumes(tmp_path):
    from keras_dkg.train import TrainConfig, train

    source = tmp_path / "brats"
    source.mkdir()
    _padded_volume(source / "case1_t1.nii.gz")
    _padded_volume(source / "case1_flair.nii.gz", empty=3)
    result = train(TrainConfig(out=str(tmp_path / "run"), source=str(source), image_size=32, residual_blocks=1,
                               steps=2, checkpoint_every=2))
    assert result.summary["source_images"] == 4 + 2 and result.summary["domain_images"] == 6


def test_reproduction_mri_folder_takes_a_brats_layout(tmp_path):
    """`reproduce_paper.py --mri DIR`: one image per volume (its middle kept slice), label maps skipped."""
    from keras_dkg.reproduce.datasets import _user_images

    for name in ("case1_flair", "case1_seg", "case1_t1", "case2_t1"):
        _padded_volume(tmp_path / f"{name}.nii.gz")
    images = _user_images(str(tmp_path), 8)
    assert [Path(label).name for label, _ in images] == ["case1_flair.nii.gz:4", "case1_t1.nii.gz:4",
                                                         "case2_t1.nii.gz:4"]
    assert all(pixels.dtype == np.uint16 and pixels.shape == (16, 20) for _, pixels in images)
