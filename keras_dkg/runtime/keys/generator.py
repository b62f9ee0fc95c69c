"""Key generation with onnxruntime: seed image (+ nonce) → key image + record.

No TensorFlow here: numpy, onnxruntime and OpenCV only. The seed goes through the one
shared `preprocess` path at the generation size (the requested size rounded up to a
multiple of 4, and to at least MIN_GENERATION_SIDE on each side), the generator's tanh
output is quantised with `quantize_key`, and the key is cropped to the requested size.

Memory is bounded: a key of at most `tile_pixels` generation pixels is made in one run
(batched with other nonces), a larger one window by window (`tiling`, scheme `tiled/1`,
named in the record's `generation`), so the generator never sees more than
max(`tile_pixels`, MAX_BATCH_PIXELS) pixels at once; keys are limited to MAX_KEY_PIXELS
and MAX_KEY_SIDE, and `estimate_peak_bytes` / `estimate_seconds` say what a job needs
before it starts.

A nonce makes one seed give many keys, by a scheme of `keras_dkg.runtime.keys.nonces`: v3
(the default) runs the generator once per seed at no more than 256² and fills a key of any
size with ChaCha20-keyed permutations of that base key, block by block; v2 runs it once
per seed and size and permutes the whole key per nonce; v1 (the first round's) perturbs
the seed per nonce. `nonce=None` is the generator's key at the full size under all three.
Records name their scheme (`nonce_scheme`) and the engine that computed the key (`engine`:
onnxruntime or OpenVINO, version, precision; `keras_dkg.runtime.keys.engines.registry`).
"""

from __future__ import annotations

import os
import secrets
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import keras_dkg
from keras_dkg.common import utc_timestamp
from keras_dkg.errors import InputError, ModelError
from keras_dkg.runtime.ciphers.metadata import SIZE_MULTIPLE, digest
from keras_dkg.runtime.formats.images import image_from_bytes
from keras_dkg.runtime.guards.inputs import MAX_IMAGE_BYTES, MAX_MODEL_BYTES, read_bounded
from keras_dkg.runtime.keys.artifact import Key, make_record
from keras_dkg.runtime.keys.engines.registry import (
    AUTO,
    BACKEND_CHOICES,
    FP32,
    ONNXRUNTIME,
    PRECISION_CHOICES,
    check_choice,
    create_engine,
    run_checked,
)
from keras_dkg.runtime.keys.nonces import (
    BLOCK_SIDE,
    DEFAULT_SCHEME,
    DESCRIPTIONS,
    V1,
    V3,
    block_key,
    check_scheme,
    permute_key,
    perturb_seed,
)
from keras_dkg.runtime.keys.preprocess import (
    parse_size,
    preprocess_uint8,
    quantize_key,
    scale_to_unit,
)
from keras_dkg.runtime.keys.tiling import SINGLE_SCHEME, TilePlan, check_tiling, plan_tiles

DEFAULT_BATCH = 16
# Cap pixels per session call (16 keys of 256²): activations grow with batch × H × W, and
# on the CPU a larger batch is no faster per key (tools/bench_keygen.py).
MAX_BATCH_PIXELS = 16 * 256 * 256
_PROBE_SIZE = 16
# The generator halves H and W twice, then its residual blocks reflection-pad by 1, which
# needs at least 2 values per axis: sides under 8 fail in onnxruntime ("Pad reflect
# requires axis length >= 2"). Smaller keys are generated at 8 and cropped; sizes that
# worked before (>= 8) are generated exactly as before, so their keys do not change.
MIN_GENERATION_SIDE = 8

# Keys up to TILE_PIXELS generation pixels (1024², a 1024x1024 8-bit RGB plaintext's key)
# are made in one run exactly as before; larger ones in windows of at most 1024x1024 with
# TILE_OVERLAP pixels of overlap (docs/keys.md, "Large keys").
TILE_PIXELS = 1 << 20
TILE_OVERLAP = 64
# Every key fits in PNG (libpng refuses sides over 1,000,000) and in bounded memory:
# 2^27 pixels (~400 MB of key) covers the key of any 8-bit image formats.images accepts.
MAX_KEY_SIDE = 1_000_000
MAX_KEY_PIXELS = 1 << 27

# What a job costs, measured on the full 6-block generator (`dkg-keygen` under
# /usr/bin/time -v, 2 shared CPU cores; docs/keys.md): onnxruntime's CPU arena holds
# ~393 bytes per pixel of the largest run (plus its input and the quantisation's float
# temporaries), the key's own arrays ~21 bytes per key pixel (uint8 seed, perturbed seed,
# the nonce noise in int16, the key, its PNG; scheme v2 adds its int32 permutation of the
# key's 3 bytes per pixel, counted in), and the process itself ~BASE_BYTES.
BASE_BYTES = 200 << 20
RUN_BYTES_PER_PIXEL = 450
KEY_BYTES_PER_PIXEL = 21 + 12
CPU_SECONDS_PER_PIXEL = 1.8e-6
BASE_KEY_CACHE_BYTES = 64 << 20  # base keys kept per generator (v2/v3): a v3 base key is at most 192 KiB


def random_nonce() -> str:
    """A fresh 128-bit nonce as 32 hex digits."""
    return secrets.token_hex(16)


def generation_size(size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) rounded up to the generator's multiple of 4, and to at least MIN_GENERATION_SIDE."""
    return tuple(  # type: ignore[return-value]
        max(MIN_GENERATION_SIDE, -(-int(v) // SIZE_MULTIPLE) * SIZE_MULTIPLE) for v in size
    )


def check_key_size(size: tuple[int, int], what: str = "key size") -> tuple[int, int]:
    """Refuse a key over MAX_KEY_SIDE per side or MAX_KEY_PIXELS in all, naming `what`."""
    height, width = (int(v) for v in size)
    if max(height, width) > MAX_KEY_SIDE:
        raise InputError(f"{what}: a {height}x{width} key has a side over {MAX_KEY_SIDE} pixels, "
                         "which PNG cannot store")
    if height * width > MAX_KEY_PIXELS:
        raise InputError(f"{what}: a {height}x{width} key is {height * width} pixels, over the limit of "
                         f"{MAX_KEY_PIXELS} pixels per key")
    return height, width


def estimate_peak_bytes(size, count: int = 1, seed_bytes: int = 0, tile_pixels: int = TILE_PIXELS,
                        tile_overlap: int = TILE_OVERLAP, batch_size: int = DEFAULT_BATCH) -> int:
    """About how much memory generating `count` keys of `size` (N, (h, w), "HxW") needs at its peak.

    Keys are made one batch (small keys) or one window (large keys) at a time, so the peak
    grows with the largest run, one key's arrays and the decoded seed (`seed_bytes`, held
    while it is resized) — not with `count`.
    """
    generation = generation_size(parse_size(size))
    pixels = generation[0] * generation[1]
    plan = plan_tiles(generation, tile_pixels, tile_overlap)
    if plan is None:  # a batch of keys per run
        keys = max(1, min(batch_size, count, MAX_BATCH_PIXELS // pixels))
        run = pixels * keys
    else:  # one key at a time, one window per run
        keys, run = 1, max(h * w for h, w in (tile.window_shape for tile in plan.tiles))
    return BASE_BYTES + RUN_BYTES_PER_PIXEL * run + KEY_BYTES_PER_PIXEL * pixels * keys + int(seed_bytes)


def estimate_seconds(size, count: int = 1, tile_pixels: int = TILE_PIXELS, tile_overlap: int = TILE_OVERLAP) -> float:
    """About how long `count` keys of `size` take on a 2-core CPU (overlaps of tiles included)."""
    generation = generation_size(parse_size(size))
    plan = plan_tiles(generation, tile_pixels, tile_overlap)
    pixels = generation[0] * generation[1] if plan is None else plan.pixels_run
    return CPU_SECONDS_PER_PIXEL * pixels * max(1, int(count))


def block_size(target: tuple[int, int]) -> tuple[int, int]:
    """v3: the generation size of the base key of a `target` key: its own, or BLOCK_SIDE² when larger."""
    padded = generation_size(target)
    if padded[0] * padded[1] <= BLOCK_SIDE * BLOCK_SIDE:
        return padded
    return BLOCK_SIDE, BLOCK_SIDE


@dataclass
class KeyJob:
    """One seed prepared for keys of one size: the decoded seed, its target, and how to run it."""

    source: np.ndarray  # the decoded seed, resized on demand (`seed_at`)
    padded: tuple[int, int]  # the generation size of the full key
    target: tuple[int, int]
    plan: TilePlan | None  # None: one run per key (batched)
    seed_sha256: str
    seed_label: str
    seed_nbytes: int  # the decoded seed's pixels, held while it was resized
    _seeds: dict = field(default_factory=dict, repr=False)

    def seed_at(self, size: tuple[int, int]) -> np.ndarray:
        """The uint8 H×W×3 seed preprocessed at a generation size (made once per size)."""
        if size not in self._seeds:
            self._seeds[size] = preprocess_uint8(self.source, size)
        return self._seeds[size]

    @property
    def base(self) -> np.ndarray:
        """The seed at the full key's generation size (nonce-free keys, v1, v2)."""
        return self.seed_at(self.padded)

    @property
    def generation_size(self) -> tuple[int, int]:
        return self.padded

    @property
    def generation(self) -> dict:
        """The record's `generation`: how the generator covered the key."""
        return self.plan.record() if self.plan is not None else {"scheme": SINGLE_SCHEME}


def load_seed(seed: str | os.PathLike | np.ndarray) -> tuple[np.ndarray, str, str]:
    """(pixels, "sha256:" of the file or array bytes, a label)."""
    if isinstance(seed, np.ndarray):
        return seed, digest(np.ascontiguousarray(seed).tobytes()), "<array>"
    from keras_dkg.runtime.formats.sources import seed_slice, split_slice_spec

    volume = split_slice_spec(seed)
    if volume is not None:  # VOLUME.nii[.gz][:SLICE]: one axial slice (formats.sources.seed_slice)
        pixels, digested, label = seed_slice(*volume)
        return pixels, digest(digested), label
    path = Path(seed)
    # Read once, bounded and refused by type (a FIFO, /dev/zero): the digest is of the bytes decoded.
    data = read_bounded(path, MAX_IMAGE_BYTES, "seed")
    return image_from_bytes(data, path), digest(data), path.name


class KeyGenerator:
    """An exported generator (ONNX) in an onnxruntime session, validated on load.

    Parameters
    ----------
    model_path : path of the .onnx file written by `dkg-export onnx`.
    provider : "auto" (CUDA when available, else CPU), "cpu" or "cuda".
    threads : intra-op threads for the CPU provider (None: onnxruntime's default).
    batch_size : most keys per session call in `generate_many` (fewer for large keys,
        see MAX_BATCH_PIXELS).
    tile_pixels, tile_overlap : keys of more generation pixels are made in windows of at
        most `tile_pixels` pixels overlapping by `tile_overlap` (scheme `tiled/1`).
    nonce_scheme : "v3" (default: one generator run of at most 256² per seed, keyed block
        permutations), "v2" (one run per seed and size, a keyed permutation per nonce) or
        "v1" (a perturbed seed per nonce); see `keras_dkg.runtime.keys.nonces`.
    backend : "onnxruntime" (the default here: analyses get the exported model's own fp32
        arithmetic), "openvino", or "auto" (the engine this machine measures fastest,
        `keys.engines.choice`; what dkg-keygen, dkg-encrypt and the batch use by default).
    precision : "fp32" (default), "bf16", or "auto" (bf16 where the engine and CPU support
        it). bf16 keys have fp32's entropy, χ² and nonce relatedness, but their one-pixel
        NPCR is inflated by rounding (docs/performance.md): measure the generator in fp32.
    engine_settings : a named backend's session settings (onnxruntime: "defaults" or
        "tuned"; openvino: "latency" or "throughput"); None: the backend's default.
    """

    def __init__(self, model_path: str | os.PathLike, provider: str = "auto", threads: int | None = None,
                 batch_size: int = DEFAULT_BATCH, tile_pixels: int = TILE_PIXELS, tile_overlap: int = TILE_OVERLAP,
                 nonce_scheme: str = DEFAULT_SCHEME, backend: str = ONNXRUNTIME, precision: str = FP32,
                 engine_settings: str | None = None):
        self.model_path = Path(model_path)
        self.nonce_scheme = check_scheme(nonce_scheme)
        check_tiling(tile_pixels, tile_overlap)
        self.tile_pixels, self.tile_overlap = int(tile_pixels), int(tile_overlap)
        try:
            model_bytes = read_bounded(self.model_path, MAX_MODEL_BYTES, "model")
        except InputError as exc:  # missing, a folder, a FIFO, a device, too big
            raise ModelError(str(exc)) from exc
        self.model_sha256 = digest(model_bytes)
        backend = check_choice(backend, BACKEND_CHOICES, "backend")
        precision = check_choice(precision, PRECISION_CHOICES, "precision")
        if backend == AUTO:
            from keras_dkg.runtime.keys.engines.choice import choose

            self.engine, self.engine_choice = choose(model_bytes, str(self.model_path), self.model_sha256,
                                                     precision, provider, threads)
        else:
            self.engine = create_engine(model_bytes, str(self.model_path), backend, precision, provider, threads,
                                        engine_settings)
            self.engine_choice = f"backend {backend}: {self.engine.info.describe()} (as asked)"
        self.provider = self.engine.info.device
        self.batch_size = max(1, int(batch_size))
        self.metadata = self.engine.metadata
        self._base_keys: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._probe()

    def _probe(self) -> None:
        """One tiny run: the output must be finite and have the input's shape."""
        _, height, width, _ = (v if isinstance(v, int) else None for v in self.engine.signature.input_shape)
        shape = (1, height or _PROBE_SIZE, width or _PROBE_SIZE, 3)
        ramp = np.linspace(-1.0, 1.0, num=int(np.prod(shape)), dtype=np.float32).reshape(shape)
        output = self._run(ramp)
        if output.shape != ramp.shape:
            raise ModelError(f"{self.model_path}: maps {ramp.shape} to {output.shape}; a generator keeps the shape")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return run_checked(self.engine, batch, str(self.model_path))

    def prepare(self, seed: str | os.PathLike | np.ndarray, size=None) -> KeyJob:
        """Read the seed and bring it to the generation size; `size`: N, (h, w), "HxW" or None (the seed's)."""
        pixels, seed_sha256, seed_label = load_seed(seed)
        requested = parse_size(size)
        target = check_key_size(requested or tuple(int(v) for v in pixels.shape[:2]),
                                "key size" if requested else f"{seed_label} (the seed's own size)")
        padded = generation_size(target)
        plan = plan_tiles(padded, self.tile_pixels, self.tile_overlap)
        return KeyJob(pixels, padded, target, plan, seed_sha256, seed_label, int(pixels.nbytes))

    def runs_tiled(self, job: KeyJob, nonces: Sequence[str | int | None]) -> bool:
        """Whether the generator covers these keys window by window (v3 keys of a nonce never are)."""
        if job.plan is None:
            return False
        return not (self.nonce_scheme == V3 and all(nonce is not None for nonce in nonces))

    def generate(self, seed: str | os.PathLike | np.ndarray, size=None, nonce: str | int | None = None) -> Key:
        """One key. `size`: N, (h, w) or "HxW"; None = the seed's own size."""
        return self.generate_many(seed, size, [nonce])[0]

    def generate_many(self, seed: str | os.PathLike | np.ndarray, size, nonces: Sequence[str | int | None]) -> list[Key]:
        """One key per nonce, from one seed, batched through the session."""
        if len(nonces) == 0:
            raise InputError("generate_many needs at least one nonce")
        return list(self.keys(self.prepare(seed, size), nonces))

    def keys(self, job: KeyJob, nonces: Sequence[str | int | None]) -> Iterator[Key]:
        """The keys of a prepared job, one at a time (a caller that saves each holds one key, not all)."""
        names = [None if n is None else str(n) for n in nonces]
        if self.nonce_scheme == V3 and any(name is not None for name in names):
            yield from self._block_keys(job, names)
            return
        if self.nonce_scheme != V1:  # v2: the generator once, then a keyed permutation per nonce
            base_key = self._base_key(job, ("full", *job.target), lambda: next(self._runs(job, [None])))
            for nonce in names:
                yield self._key(job, nonce, permute_key(base_key, nonce, self.model_sha256, job.seed_sha256))
            return
        for nonce, pixels in zip(names, self._runs(job, names), strict=True):
            yield self._key(job, nonce, pixels)

    def _block_keys(self, job: KeyJob, names: list[str | None]) -> Iterator[Key]:
        """v3: one generator run at the block size, then the nonce's block permutations of that base key."""
        size = block_size(job.target)
        base_key = None
        for nonce in names:
            if nonce is None:  # the generator's own key at the full size, as under v1/v2
                yield next(self.keys(job, [None]))
                continue
            if base_key is None:
                base_key = self._base_key(job, ("block", *size), lambda: np.ascontiguousarray(
                    quantize_key(self._run(scale_to_unit(job.seed_at(size))[None]))[0]))
            pixels = block_key(base_key, job.target, nonce, self.model_sha256, job.seed_sha256)
            blocks = -(-pixels.size // base_key.size)
            yield self._key(job, nonce, pixels, {"scheme": "blocks/1", "block": list(size), "blocks": blocks},
                            list(size))

    def _base_key(self, job: KeyJob, size: tuple, make) -> np.ndarray:
        """The generator's key for this seed at this size, made once per generator (a batch asks per chunk).

        Kept in a small LRU of at most BASE_KEY_CACHE_BYTES: a batch of one seed and a few file
        sizes then runs the generator once per size, not once per chunk of files.
        """
        key = (job.seed_sha256, tuple(size))
        if key in self._base_keys:
            self._base_keys.move_to_end(key)
            return self._base_keys[key]
        base = make()
        self._base_keys[key] = base
        while sum(v.nbytes for v in self._base_keys.values()) > BASE_KEY_CACHE_BYTES and len(self._base_keys) > 1:
            self._base_keys.popitem(last=False)
        return base

    def _runs(self, job: KeyJob, names: list[str | None]) -> Iterator[np.ndarray]:
        """Generator outputs (key pixels) for v1-perturbed seeds, batched or window by window."""
        if job.plan is not None:
            for nonce in names:
                yield self._tiled(job, nonce)
            return
        padded = job.generation_size
        per_call = max(1, min(self.batch_size, MAX_BATCH_PIXELS // (padded[0] * padded[1])))
        for start in range(0, len(names), per_call):
            chunk = names[start:start + per_call]
            batch = np.stack([scale_to_unit(perturb_seed(job.base, nonce)) for nonce in chunk])
            outputs = quantize_key(self._run(batch))[:, : job.target[0], : job.target[1], :]
            del batch
            for key_pixels in outputs:
                yield np.ascontiguousarray(key_pixels)

    def _tiled(self, job: KeyJob, nonce: str | None) -> np.ndarray:
        """One key window by window: each window of the perturbed seed runs alone, its core is kept."""
        seed = perturb_seed(job.base, nonce)
        height, width = job.target
        key = np.empty((height, width, 3), dtype=np.uint8)
        for tile in job.plan.tiles:  # type: ignore[union-attr]
            rows, cols = tile.core  # cores are >= 8 and the padding < 4: each one reaches into the key
            bottom, right = min(rows.stop, height), min(cols.stop, width)
            output = quantize_key(self._run(scale_to_unit(seed[tile.window])[None]))[0]
            top, left = rows.start - tile.window[0].start, cols.start - tile.window[1].start
            key[rows.start:bottom, cols.start:right] = output[top:top + bottom - rows.start,
                                                              left:left + right - cols.start]
        return key

    def _key(self, job: KeyJob, nonce: str | None, pixels: np.ndarray, generation: dict | None = None,
             size: list[int] | None = None) -> Key:
        record = make_record(
            pixels,
            model_sha256=self.model_sha256, model=self.model_path.name,
            seed_sha256=job.seed_sha256, seed=job.seed_label,
            nonce=nonce, nonce_scheme=DESCRIPTIONS[self.nonce_scheme] if nonce is not None else None,
            generation_size=size or list(job.generation_size), generation=generation or job.generation,
            provider=self.provider, engine=self.engine.info.record(),
            package_version=keras_dkg.__version__, created=utc_timestamp(),
        )
        return Key(pixels, record)
