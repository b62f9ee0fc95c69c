"""Large keys in tiles (scheme tiled/1): bounded runs, exact shape, determinism, small keys unchanged.

The tile budget is a KeyGenerator parameter, lowered here (48x48 windows, overlap 8) so
keys of a few thousand pixels are tiled and the tests stay fast.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_dkg.embedded import seed_path
from keras_dkg.errors import InputError
from keras_dkg.runtime.cli import keygen as keygen_cli
from keras_dkg.runtime.keys.artifact import load_key
from keras_dkg.runtime.keys.generator import (
    KEY_BYTES_PER_PIXEL,
    MAX_KEY_PIXELS,
    MAX_KEY_SIDE,
    RUN_BYTES_PER_PIXEL,
    TILE_PIXELS,
    KeyGenerator,
    check_key_size,
    estimate_peak_bytes,
    estimate_seconds,
    generation_size,
)
from keras_dkg.runtime.keys.tiling import check_tiling, plan_tiles

TILE, OVERLAP = 48 * 48, 8


@pytest.fixture(scope="module")
def whole(tiny_onnx_model) -> KeyGenerator:
    return KeyGenerator(tiny_onnx_model, provider="cpu", backend="onnxruntime", nonce_scheme="v2")


@pytest.fixture(scope="module")
def tiled(tiny_onnx_model) -> KeyGenerator:
    return KeyGenerator(tiny_onnx_model, provider="cpu", backend="onnxruntime", nonce_scheme="v2",
                        tile_pixels=TILE, tile_overlap=OVERLAP)


class RunSpy:
    """Stands in for the key engine and records the shape of every run."""

    def __init__(self, engine):
        self.engine, self.shapes = engine, []

    def run(self, batch):
        self.shapes.append(batch.shape)
        return self.engine.run(batch)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def test_keys_within_the_budget_are_the_one_pass_keys(whole, tiled):
    for size in [(48, 48), (40, 56), (3, 5)]:
        small, reference = tiled.generate(seed_path(), size, "n"), whole.generate(seed_path(), size, "n")
        assert small.record["generation"] == {"scheme": "single"}
        np.testing.assert_array_equal(small.pixels, reference.pixels)


def test_tiled_key_has_the_exact_shape_and_names_its_scheme(tiled):
    key = tiled.generate(seed_path(), (101, 69))  # the base key: what the tiles themselves make
    assert key.pixels.shape == (101, 69, 3) and key.pixels.dtype == np.uint8
    assert key.record["generation_size"] == [104, 72]
    assert key.record["generation"] == {"scheme": "tiled/1", "tile": 48, "overlap": OVERLAP, "grid": [4, 3]}
    # the crop of the padded size's key: the tiles depend on the generation size only
    padded = tiled.generate(seed_path(), (104, 72))
    np.testing.assert_array_equal(key.pixels, padded.pixels[:101, :69])


def test_tiled_keys_are_deterministic_and_nonces_differ(tiled):
    first = tiled.generate_many(seed_path(), (100, 90), ["a", "b"])
    again = tiled.generate(seed_path(), (100, 90), nonce="a")
    np.testing.assert_array_equal(first[0].pixels, again.pixels)
    assert np.mean(first[0].pixels != first[1].pixels) > 0.5


def test_a_tiled_key_is_its_own_scheme(whole, tiled):
    one_pass, tiles = whole.generate(seed_path(), (100, 90), "s"), tiled.generate(seed_path(), (100, 90), "s")
    assert one_pass.record["generation"] != tiles.record["generation"]
    assert not np.array_equal(one_pass.pixels, tiles.pixels)  # instance norm sees each window alone


def test_the_generator_only_ever_runs_on_bounded_tiles(tiled, monkeypatch):
    spy = RunSpy(tiled.engine)
    monkeypatch.setattr(tiled, "engine", spy)
    tiled.generate_many(seed_path(), (150, 97), ["x", "y"])
    plan = plan_tiles(generation_size((150, 97)), TILE, OVERLAP)
    assert len(spy.shapes) == len(plan.tiles) > 2  # nonce scheme v2: the tiles run once for both keys
    for batch, height, width, channels in spy.shapes:
        assert batch == 1 and channels == 3
        assert height * width <= TILE and height % 4 == 0 and width % 4 == 0 and min(height, width) >= 8


@pytest.mark.parametrize("tile_pixels, overlap", [(48 * 48, 8), (32 * 32, 8), (40 * 40, 0), (1 << 20, 64)])
def test_tiles_cover_every_generation_size_exactly_once(tile_pixels, overlap):
    for size in [(8, 4000), (4000, 12), (100, 72), (36, 1000), (1028, 1028), (20000, 1000)]:
        plan = plan_tiles(size, tile_pixels, overlap)
        if plan is None:
            assert size[0] * size[1] <= tile_pixels
            continue
        cover = np.zeros(size, dtype=np.int32)
        for tile in plan.tiles:
            (top, left), (height, width) = (s.start for s in tile.window), tile.window_shape
            assert height * width <= tile_pixels and min(height, width) >= 8
            assert all(s.start % 4 == 0 and s.stop % 4 == 0 for s in (*tile.window, *tile.core))
            rows, cols = tile.core
            assert top <= rows.start and rows.stop <= top + height and left <= cols.start and cols.stop <= left + width
            cover[tile.core] += 1
        assert (cover == 1).all(), size
    assert plan_tiles((1024, 1024), tile_pixels=1 << 20, overlap=64) is None  # at the budget: one pass


def test_tile_budget_must_leave_a_core():
    with pytest.raises(ValueError, match="no core"):
        check_tiling(24 * 24, 8)
    with pytest.raises(ValueError, match="multiple of 4"):
        check_tiling(TILE, 6)


def test_key_size_limits():
    assert check_key_size((MAX_KEY_PIXELS // 8192, 8192)) == (MAX_KEY_PIXELS // 8192, 8192)
    with pytest.raises(InputError, match="over the limit of"):
        check_key_size((MAX_KEY_PIXELS // 8192, 8193))
    with pytest.raises(InputError, match="PNG cannot store"):
        check_key_size((4, MAX_KEY_SIDE + 1))


def test_estimates_grow_with_the_key_but_the_run_stays_bounded():
    small, big = estimate_peak_bytes(256), estimate_peak_bytes((20000, 1000))
    assert small < big
    bound = estimate_peak_bytes(1024)  # the largest one-pass key
    for size in [(6000, 6000), (20000, 1000), (4, 30_000_000)]:
        height, width = generation_size(size)
        model_part = estimate_peak_bytes(size) - KEY_BYTES_PER_PIXEL * height * width
        assert model_part <= bound - KEY_BYTES_PER_PIXEL * TILE_PIXELS + 1
        assert model_part <= estimate_peak_bytes(16) + RUN_BYTES_PER_PIXEL * TILE_PIXELS
    assert estimate_peak_bytes((20000, 1000), count=16) == big  # one key at a time
    assert estimate_seconds((20000, 1000), count=2) == pytest.approx(2 * estimate_seconds((20000, 1000)))
    assert estimate_seconds((2048, 2048)) > estimate_seconds((2040, 2040))


def test_cli_says_what_a_tiled_job_needs_then_writes_each_key(tiny_onnx_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(keygen_cli, "KeyGenerator",
                        lambda model, provider, **kw: KeyGenerator(model, provider, tile_pixels=TILE,
                                                                   tile_overlap=OVERLAP, **kw))
    out = tmp_path / "big.png"
    argv = ["--model", str(tiny_onnx_model), "--seed", str(seed_path()), "-o", str(out), "--provider", "cpu",
            "--size", "100x90", "--count", "2", "--nonce", "n", "--nonce-scheme", "v2"]
    assert keygen_cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    note, *wrote = captured.out.splitlines()
    assert note.startswith("dkg-keygen: 2 key(s) of 100x90 in 12 tiles of at most 48x48: about ")
    assert "GiB of memory" in note and len(wrote) == 2
    for index in range(2):
        key = load_key(tmp_path / f"big_{index:03d}.png")
        assert key.pixels.shape == (100, 90, 3)
        assert json.loads((tmp_path / f"big_{index:03d}.json").read_text())["generation"]["scheme"] == "tiled/1"


def test_cli_small_key_prints_no_note(tiny_onnx_model, tmp_path, capsys):
    argv = ["--model", str(tiny_onnx_model), "--seed", str(seed_path()), "-o", str(tmp_path / "k.png"),
            "--provider", "cpu", "--size", "64"]
    assert keygen_cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("wrote ")


def test_v3_keys_of_any_size_need_one_bounded_run_and_no_tiles(tiny_onnx_model, monkeypatch):
    v3 = KeyGenerator(tiny_onnx_model, provider="cpu", backend="onnxruntime", tile_pixels=TILE, tile_overlap=OVERLAP)
    spy = RunSpy(v3.engine)
    monkeypatch.setattr(v3, "engine", spy)
    job = v3.prepare(seed_path(), (300, 460))
    assert job.plan is not None and not v3.runs_tiled(job, ["x", "y"]) and v3.runs_tiled(job, [None])
    first, second = v3.keys(job, ["x", "y"])
    assert spy.shapes == [(1, 256, 256, 3)]  # one run at the block size for both keys
    assert first.record["generation"] == {"scheme": "blocks/1", "block": [256, 256], "blocks": 3}
    assert first.record["generation_size"] == [256, 256]
    assert first.pixels.shape == (300, 460, 3) and np.mean(first.pixels != second.pixels) > 0.5


@pytest.mark.parametrize("scheme,runs", [("v2", 3), ("v3", 2)])  # v3: 101x69 and 104x72 share a 104x72 base
def test_a_batch_of_chunks_runs_the_generator_once_per_key_size(tiny_onnx_model, monkeypatch, scheme, runs):
    generator = KeyGenerator(tiny_onnx_model, provider="cpu", nonce_scheme=scheme)
    spy = RunSpy(generator.engine)
    monkeypatch.setattr(generator, "engine", spy)
    chunks = [generator.generate_many(seed_path(), size, [f"{size}-{i}-{j}" for j in range(3)])
              for i in range(3) for size in ((40, 36), (101, 69), (104, 72))]
    assert len(spy.shapes) == runs  # one run per base-key size, whatever the number of chunks
    assert {keys[0].pixels.shape for keys in chunks} == {(40, 36, 3), (101, 69, 3), (104, 72, 3)}
    again = KeyGenerator(tiny_onnx_model, provider="cpu", nonce_scheme=scheme)
    np.testing.assert_array_equal(again.generate(seed_path(), (101, 69), "(101, 69)-2-1").pixels, chunks[7][1].pixels)
