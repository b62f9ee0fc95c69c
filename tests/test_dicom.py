"""DICOM container: every variant round-trips bit-exact, every other element survives."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid  # noqa: E402

from keras_dkg.errors import InputError, IntegrityError, KeyMaterialError  # noqa: E402
from keras_dkg.runtime.ciphers.metadata import key_size_for  # noqa: E402
from keras_dkg.runtime.formats import dicom  # noqa: E402

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_file(name: str) -> Path:
    path = TEST_FILES / name
    if not path.is_file():
        pytest.skip(f"{name} is not shipped with this pydicom")
    return path


def random_key(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def build_dicom(path: Path, *, rows=6, columns=5, frames=1, samples=1, bits=16, stored=16,
                signed=False, photometric="MONOCHROME2", implicit=False, seed=0, pixel_bytes=None) -> Path:
    """A small but complete image dataset (with a sequence and a private block)."""
    rng = np.random.default_rng(seed)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P-0001"
    ds.Modality = "OT"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    item = Dataset()
    item.CodeValue = "T-D0050"
    item.CodingSchemeDesignator = "SRT"
    ds.AnatomicRegionSequence = [item]
    block = ds.private_block(0x0011, "SOME VENDOR", create=True)
    block.add_new(0x01, "LO", "vendor value")
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, stored, stored - 1
    ds.PixelRepresentation = int(signed)
    if pixel_bytes is None:
        count = rows * columns * samples * frames * bits // 8
        pixel_bytes = rng.integers(0, 256, count, dtype=np.uint8).tobytes()
    if len(pixel_bytes) % 2:
        pixel_bytes += b"\x00"  # DICOM pads odd values; the pad byte is part of the value
    ds.PixelData = pixel_bytes
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return path


def raw_elements(dataset) -> dict:
    """tag -> (VR, raw value bytes) for every element (VR None: implicit VR, not looked up)."""
    out = {}
    for tag in dataset.keys():
        element = dataset.get_item(tag)
        if getattr(element, "is_raw", False):
            out[int(tag)] = (element.VR, element.value)
            continue
        else:
            value = dataset[tag].value
            vr = None if dataset.original_encoding[0] else element.VR
            out[int(tag)] = (vr, value if isinstance(value, bytes) else repr(value))
    return out


def element_values(dataset, skip=()) -> dict:
    """tag -> decoded value (as text), for comparing datasets stored in different encodings."""
    return {int(tag): str(dataset[tag].value) for tag in dataset.keys() if int(tag) not in skip}


def encrypt_file(path: Path, seed=0):
    plain = dicom.read_dicom(path)
    key = random_key(plain.key_size(), seed)
    data, meta = dicom.encrypt_dicom(plain, key, nonce="test-nonce")
    return plain, key, data, meta


def assert_round_trip(path: Path, expect_same_file=True):
    original_bytes = path.read_bytes()
    original = pydicom.dcmread(path, force=True)
    original_raw = raw_elements(pydicom.dcmread(path, force=True))
    plain, key, data, meta = encrypt_file(path)
    original_pixels = bytes(original.PixelData)

    # the ciphertext is a valid DICOM file pydicom reads, with different pixel bytes
    encrypted = pydicom.dcmread(io.BytesIO(data))
    assert encrypted.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert len(encrypted.PixelData) == len(original_pixels)
    assert encrypted.PixelData != original_pixels
    block = encrypted.private_block(dicom.PRIVATE_GROUP, dicom.PRIVATE_CREATOR)
    assert encrypted[block.get_tag(dicom.METADATA_ELEMENT)].VR == "UT"
    stored = json.loads(encrypted[block.get_tag(dicom.METADATA_ELEMENT)].value)
    assert stored["key_fingerprint"] == meta.key_fingerprint and stored["tag"] == meta.tag
    # every other element of the ciphertext is the original's (raw bytes when the
    # original was Explicit VR Little Endian too, else the decoded values)
    skip = {dicom.PIXEL_DATA} | dicom._block_tags(encrypted)[0]
    if original.original_encoding == (False, True):
        before = {t: v for t, v in original_raw.items() if t != dicom.PIXEL_DATA}
        assert {t: v for t, v in raw_elements(encrypted).items() if t not in skip} == before
    assert element_values(encrypted, skip) == element_values(original, {dicom.PIXEL_DATA})

    back = dicom.decrypt_dicom(data, key)
    restored = dicom.plaintext_bytes(back)
    decrypted = pydicom.dcmread(io.BytesIO(restored))
    assert bytes(decrypted.PixelData) == original_pixels
    assert raw_elements(decrypted) == original_raw
    if expect_same_file:
        assert restored == original_bytes
    return plain, key, data


VARIANTS = {
    "8bit": dict(bits=8, stored=8),
    "8bit_odd_padding": dict(bits=8, stored=8, rows=3, columns=3),
    "12bit_in_16": dict(bits=16, stored=12),
    "16bit_unsigned": dict(bits=16, stored=16),
    "16bit_signed": dict(bits=16, stored=16, signed=True),
    "monochrome1": dict(bits=16, stored=16, photometric="MONOCHROME1"),
    "rgb": dict(bits=8, stored=8, samples=3, photometric="RGB"),
    "multiframe": dict(bits=16, stored=12, frames=4),
    "rgb_multiframe": dict(bits=8, stored=8, samples=3, photometric="RGB", frames=3),
    "implicit_vr": dict(bits=16, stored=16, implicit=True),
    "32bit": dict(bits=32, stored=32),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_built_variants_round_trip_bit_exact(tmp_path, name):
    path = build_dicom(tmp_path / f"{name}.dcm", **VARIANTS[name])
    assert_round_trip(path)


def test_12bit_unused_high_bits_and_padding_are_restored(tmp_path):
    # 12-bit samples whose unused high nibble holds junk (it must come back exactly)
    values = np.random.default_rng(3).integers(0, 65536, 5 * 7, dtype=np.uint16)
    assert (values >> 12).any()
    path = build_dicom(tmp_path / "junk12.dcm", rows=5, columns=7, bits=16, stored=12,
                       pixel_bytes=values.astype("<u2").tobytes())
    plain, key, data = assert_round_trip(path)
    assert plain.nbytes == 70  # the key covers every stored byte, 2 per sample
    assert key.size >= 70


def test_key_covers_all_bytes_and_is_image_shaped(tmp_path):
    path = build_dicom(tmp_path / "k.dcm", rows=30, columns=20, bits=16, stored=16)
    plain = dicom.read_dicom(path)
    # a single-frame H×W 16-bit image gets exactly key_size_for((H, W), uint16)
    assert plain.key_size() == key_size_for((30, 20), np.uint16)
    h, w = plain.key_size()
    assert h * w * 3 >= plain.nbytes and h % 4 == 0 and w % 4 == 0
    # one key covers all frames: the frames stacked vertically
    multi = dicom.read_dicom(build_dicom(tmp_path / "m.dcm", rows=30, columns=20, frames=5))
    assert multi.plain_array().shape == (150, 20)
    assert multi.key_size() == key_size_for((150, 20), np.uint16)
    mh, mw = multi.key_size()
    assert mh * mw * 3 >= multi.nbytes == 5 * plain.nbytes
    # a key one column too narrow is refused, never tiled
    _, key, data, _ = encrypt_file(path)
    with pytest.raises(KeyMaterialError):
        dicom.encrypt_dicom(dicom.read_dicom(path), key[:, : w - 4])


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom: rtdose.dcm has a non-conformant UID
@pytest.mark.parametrize("name", [
    "CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm",
    "examples_rgb_color.dcm", "SC_rgb_small_odd.dcm", "liver_1frame.dcm", "rtdose.dcm",
])
def test_pydicom_files_round_trip_bit_exact(name):
    assert_round_trip(pydicom_file(name))


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_rle_16bit.dcm"])
def test_rle_files_are_decoded_and_round_trip(name):
    path = pydicom_file(name)
    reference = pydicom.dcmread(path)
    expected = reference.pixel_array
    plain, key, data, _ = encrypt_file(path)
    assert plain.info["decoded_by"] == "pydicom"
    encrypted = pydicom.dcmread(io.BytesIO(data))
    assert encrypted.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # written uncompressed
    back = pydicom.dcmread(io.BytesIO(dicom.plaintext_bytes(dicom.decrypt_dicom(data, key))))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # stays decoded
    np.testing.assert_array_equal(back.pixel_array, expected)
    skip = {dicom.PIXEL_DATA, 0x00020010}
    original = {t: v for t, v in raw_elements(reference).items() if t not in skip and t >> 16 != 2}
    restored = {t: v for t, v in raw_elements(back).items() if t not in skip and t >> 16 != 2}
    assert restored == original


def test_any_changed_element_is_detected(tmp_path):
    path = build_dicom(tmp_path / "t.dcm")
    _, key, data, _ = encrypt_file(path)

    def altered(change) -> bytes:
        ds = pydicom.dcmread(io.BytesIO(data))
        change(ds)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    def nested(ds):
        ds.AnatomicRegionSequence[0].CodeValue = "T-00000"

    def private(ds):
        ds.private_block(0x0011, "SOME VENDOR")[0x01].value = "other"

    def pixels(ds):
        value = bytearray(ds.PixelData)
        value[0] ^= 1
        ds.PixelData = bytes(value)

    def metadata(ds):
        tag = ds.private_block(dicom.PRIVATE_GROUP, dicom.PRIVATE_CREATOR).get_tag(dicom.METADATA_ELEMENT)
        fields = json.loads(ds[tag].value)
        fields["nonce"] = "another"
        ds[tag].value = json.dumps(fields)

    def info(ds):
        tag = ds.private_block(dicom.PRIVATE_GROUP, dicom.PRIVATE_CREATOR).get_tag(dicom.INFO_ELEMENT)
        fields = json.loads(ds[tag].value)
        fields["transfer_syntax"] = "1.2.840.10008.1.2"
        ds[tag].value = json.dumps(fields)

    def trailing(ds):
        ds.PixelData = ds.PixelData + b"\x00\x00"

    def preamble(ds):
        ds.preamble = b"\x01" * 128

    changes = [lambda ds: setattr(ds, "PatientName", "Doe^John"), lambda ds: setattr(ds, "WindowWidth", "401"),
               nested, private, pixels, metadata, info, trailing, preamble,
               lambda ds: setattr(ds, "InstitutionName", "added"), lambda ds: delattr(ds, "Modality")]
    for change in changes:
        with pytest.raises(IntegrityError):
            dicom.decrypt_dicom(altered(change), key)
    with pytest.raises(KeyMaterialError, match="wrong key"):
        dicom.decrypt_dicom(data, random_key(key.shape[:2], seed=99))


def test_refusals_have_clear_messages(tmp_path):
    with pytest.raises(InputError, match=r"Explicit VR Big Endian .*not supported.*Little Endian"):
        dicom.read_dicom(pydicom_file("MR_small_bigendian.dcm"))
    with pytest.raises(InputError, match=r"holds 8130 bytes but the image needs 8192"):
        dicom.read_dicom(pydicom_file("MR_truncated.dcm"))
    with pytest.raises(InputError, match="no Pixel Data"):
        dicom.read_dicom(pydicom_file("rtplan.dcm"))
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(InputError, match="not a DICOM file"):
        dicom.read_dicom(garbage)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        dicom.read_dicom(empty)
    # an encrypted file is not encrypted twice
    _, _, data, _ = encrypt_file(build_dicom(tmp_path / "a.dcm"))
    twice = tmp_path / "twice.dcm"
    twice.write_bytes(data)
    with pytest.raises(InputError, match="already encrypted"):
        dicom.read_dicom(twice)
    with pytest.raises(InputError, match="not encrypted by keras_dkg"):
        dicom.load_dicom_ciphertext(build_dicom(tmp_path / "b.dcm"))


def test_compressed_without_decoder_names_syntax_and_install():
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(InputError) as info:
        dicom.read_dicom(pydicom_file("MR_small_jpeg_ls_lossless.dcm"))
    message = str(info.value)
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in message
    assert "no decoder for it is installed" in message and "pip install pylibjpeg" in message


def test_write_and_read_files(tmp_path):
    path = build_dicom(tmp_path / "w.dcm")
    plain, key, data, _ = encrypt_file(path)
    out = dicom.save_dicom_ciphertext(tmp_path / "w.enc.dcm", data)
    loaded = dicom.load_dicom_ciphertext(out)
    assert loaded.info["transfer_syntax"] == ExplicitVRLittleEndian
    back = dicom.decrypt_dicom(loaded, key)
    target = dicom.write_dicom_plaintext(tmp_path / "w.back.dcm", back)
    assert target.read_bytes() == path.read_bytes()
    from keras_dkg.errors import OutputError

    with pytest.raises(OutputError, match="exists"):
        dicom.write_dicom_plaintext(target, back)


def test_dicom_seed_reads_first_frame():
    from keras_dkg.runtime.formats.images import read_image

    image = read_image(pydicom_file("CT_small.dcm"))
    assert image.shape == (128, 128) and image.dtype in (np.int16, np.uint16)


def test_single_file_cli_uses_the_dicom_container(tmp_path, tiny_onnx_model, capsys):
    from keras_dkg.runtime.cli.encrypt import decrypt_main, encrypt_main

    source = build_dicom(tmp_path / "slice.dcm", rows=16, columns=20, bits=16, stored=12, signed=True)
    encrypted, back, keys = tmp_path / "slice.enc.dcm", tmp_path / "slice.back.dcm", tmp_path / "keys"
    assert encrypt_main([str(source), "-o", str(encrypted), "--model", str(tiny_onnx_model),
                         "--seed", str(pydicom_file("CT_small.dcm")), "--keys", str(keys)]) == 0
    assert "(16, 20) int16" in capsys.readouterr().out
    assert pydicom.dcmread(encrypted).PatientName == "Doe^Jane"  # still a DICOM file, header kept
    assert decrypt_main([str(encrypted), "-o", str(back), "--keys", str(keys)]) == 0
    assert back.read_bytes() == source.read_bytes()
    # a DICOM ciphertext needs a DICOM plaintext
    png = tmp_path / "plain.png"
    import cv2

    cv2.imwrite(str(png), np.zeros((16, 16), np.uint8))
    assert encrypt_main([str(png), "-o", str(tmp_path / "x.dcm"), "--model", str(tiny_onnx_model),
                         "--seed", str(pydicom_file("CT_small.dcm")), "--keys", str(keys)]) == 2
    assert "needs a DICOM plaintext" in capsys.readouterr().err
