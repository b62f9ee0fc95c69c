"""Shared preprocessing and image I/O: dtypes kept, lossless only, atomic, clear errors."""

import numpy as np
import pytest

from keras_dkg import embedded
from keras_dkg.errors import InputError, ModelError, OutputError
from keras_dkg.runtime.formats import images
from keras_dkg.runtime.guards import atomic
from keras_dkg.runtime.keys.preprocess import parse_size, preprocess, quantize_key, to_uint8_rgb


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("shape, dtype", [((17, 23), np.uint8), ((17, 23, 3), np.uint8), ((17, 23), np.uint16),
                                          ((17, 23, 3), np.uint16), ((9, 11, 4), np.uint8)])
def test_lossless_round_trip(tmp_path, suffix, shape, dtype):
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    path = images.write_image(tmp_path / f"x{suffix}", image)
    back = images.read_image(path)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, image)
    assert [p.name for p in tmp_path.iterdir()] == [f"x{suffix}"]  # no temporary left


def test_lossy_output_and_overwrite_refused(tmp_path):
    image = np.zeros((4, 4), np.uint8)
    with pytest.raises(OutputError, match="not lossless"):
        images.write_image(tmp_path / "x.jpg", image)
    images.write_image(tmp_path / "x.png", image)
    with pytest.raises(OutputError, match="exists"):
        images.write_image(tmp_path / "x.png", image)
    images.write_image(tmp_path / "x.png", image + 1, overwrite=True)
    assert images.read_image(tmp_path / "x.png").max() == 1


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic.atomic_output(tmp_path / "y.png") as temporary:
        temporary.write_bytes(b"partial")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_name_the_file(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(InputError, match="zero.png: file is empty"):
        images.read_image(tmp_path / "zero.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InputError, match="text.png: not a readable image"):
        images.read_image(tmp_path / "text.png")
    bomb = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (100000).to_bytes(4, "big") * 2 + b"\x08\x00\x00\x00\x00"
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(InputError, match="decompression bomb"):
        images.read_image(tmp_path / "bomb.png")
    with pytest.raises(InputError, match="no such file"):
        images.read_image(tmp_path / "missing.png")


def test_reads_the_embedded_dicom_seed():
    seed = images.read_image(embedded.seed_path())
    assert seed.shape == (128, 128) and seed.dtype == np.int16
    x = preprocess(seed, 64)
    assert x.shape == (64, 64, 3) and x.dtype == np.float32
    assert -1.0 <= x.min() < x.max() <= 1.0


def test_preprocess_rules():
    gray16 = np.array([[0, 1000], [2000, 4000]], np.uint16)
    rgb = to_uint8_rgb(gray16)
    assert rgb.shape == (2, 2, 3) and rgb[1, 1, 0] == 255 and rgb[0, 0, 0] == 0
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    assert to_uint8_rgb(np.full((3, 3), 7.0)).max() == 0  # constant → black, no division by zero
    with pytest.raises(InputError):
        to_uint8_rgb(np.full((3, 3), np.nan))
    assert parse_size("64x48") == (64, 48) and parse_size(32) == (32, 32) and parse_size(None) is None
    with pytest.raises(InputError):
        parse_size("big")
    np.testing.assert_array_equal(quantize_key(np.array([-1.0, -0.999, 0.0, 1.0])), [0, 0, 128, 255])
    with pytest.raises(ModelError):
        quantize_key(np.array([np.nan]))
