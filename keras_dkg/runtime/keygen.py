"""Key generation with onnxruntime: seed image (+ nonce) → key image + record.

No TensorFlow here: numpy, onnxruntime and OpenCV only. The seed goes through the one
shared `preprocess` path at the generation size (the requested size rounded up to a
multiple of 4, and to at least MIN_GENERATION_SIDE on each side), the generator's tanh
output is quantised with `quantize_key`, and the key is cropped to the requested size —
never tiled.

A nonce perturbs the seed deterministically so one seed gives many distinct keys
(docs/keys.md): SHA-256 of a label and the nonce seeds numpy's PCG64, which draws an
integer in [-NONCE_AMPLITUDE, NONCE_AMPLITUDE] for every value of the uint8 seed;
values pushed past 0 or 255 are reflected back. `nonce=None` is the unperturbed seed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import keras_dkg
from keras_dkg.errors import InputError, ModelError
from keras_dkg.runtime.cipher import SIZE_MULTIPLE, digest
from keras_dkg.runtime.imageio import read_image
from keras_dkg.runtime.keys import Key, make_record, utc_now
from keras_dkg.runtime.preprocess import parse_size, preprocess_uint8, quantize_key, scale_to_unit
from keras_dkg.runtime.providers import create_session, session_options

NONCE_AMPLITUDE = 8  # uint8 levels, i.e. ±8/127.5 in the generator's [-1, 1] input
NONCE_LABEL = b"keras_dkg/nonce/v1\x00"
NONCE_SCHEME = (
    "v1: PCG64 seeded by SHA-256('keras_dkg/nonce/v1\\0' + utf-8 nonce); uint8 seed + "
    f"uniform integer in [-{NONCE_AMPLITUDE}, {NONCE_AMPLITUDE}] per value, reflected at 0 and 255"
)
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


def random_nonce() -> str:
    """A fresh 128-bit nonce as 32 hex digits."""
    return secrets.token_hex(16)


def perturb_seed(seed_uint8: np.ndarray, nonce: str | int | None) -> np.ndarray:
    """The nonce's deterministic perturbation of a preprocessed uint8 seed (None: unchanged)."""
    if nonce is None:
        return seed_uint8
    seed_bytes = hashlib.sha256(NONCE_LABEL + str(nonce).encode("utf-8")).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(seed_bytes, "big")))
    noise = rng.integers(-NONCE_AMPLITUDE, NONCE_AMPLITUDE + 1, size=seed_uint8.shape, dtype=np.int16)
    values = seed_uint8.astype(np.int16) + noise
    values = np.abs(values)  # reflect below 0
    values = np.where(values > 255, 510 - values, values)  # reflect above 255
    return values.astype(np.uint8)


def generation_size(size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) rounded up to the generator's multiple of 4, and to at least MIN_GENERATION_SIDE."""
    return tuple(  # type: ignore[return-value]
        max(MIN_GENERATION_SIDE, -(-int(v) // SIZE_MULTIPLE) * SIZE_MULTIPLE) for v in size
    )


def _load_seed(seed: str | os.PathLike | np.ndarray) -> tuple[np.ndarray, str, str]:
    """(pixels, "sha256:" of the file or array bytes, a label)."""
    if isinstance(seed, np.ndarray):
        return seed, digest(np.ascontiguousarray(seed).tobytes()), "<array>"
    path = Path(seed)
    pixels = read_image(path)
    return pixels, digest(path.read_bytes()), path.name


class KeyGenerator:
    """An exported generator (ONNX) in an onnxruntime session, validated on load.

    Parameters
    ----------
    model_path : path of the .onnx file written by `dkg-export onnx`.
    provider : "auto" (CUDA when available, else CPU), "cpu" or "cuda".
    threads : intra-op threads for the CPU provider (None: onnxruntime's default).
    batch_size : most keys per session call in `generate_many` (fewer for large keys,
        see MAX_BATCH_PIXELS).
    """

    def __init__(self, model_path: str | os.PathLike, provider: str = "auto", threads: int | None = None,
                 batch_size: int = DEFAULT_BATCH):
        self.model_path = Path(model_path)
        try:
            model_bytes = self.model_path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{self.model_path}: cannot read model ({exc.strerror or exc})") from exc
        self.model_sha256 = digest(model_bytes)
        self.session, self.provider = create_session(
            model_bytes, str(self.model_path), provider, session_options(threads)
        )
        self.batch_size = max(1, int(batch_size))
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._input = self._check_signature()
        self._probe()

    def _check_signature(self) -> str:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{self.model_path}: expected one input and one output, got {len(inputs)} and {len(outputs)}"
            )
        spec = inputs[0]
        channels = spec.shape[-1] if spec.shape else None
        if len(spec.shape) != 4 or spec.type != "tensor(float)" or (isinstance(channels, int) and channels != 3):
            raise ModelError(
                f"{self.model_path}: input {spec.name!r} is {spec.type} {spec.shape}; "
                "expected float32 of rank 4 (N, H, W, 3)"
            )
        if outputs[0].shape and len(outputs[0].shape) != 4:
            raise ModelError(f"{self.model_path}: output has rank {len(outputs[0].shape)}; expected 4 (N, H, W, 3)")
        return spec.name

    def _probe(self) -> None:
        """One tiny run: the output must be finite and have the input's shape."""
        _, height, width, _ = (v if isinstance(v, int) else None for v in self.session.get_inputs()[0].shape)
        shape = (1, height or _PROBE_SIZE, width or _PROBE_SIZE, 3)
        ramp = np.linspace(-1.0, 1.0, num=int(np.prod(shape)), dtype=np.float32).reshape(shape)
        output = self._run(ramp)
        if output.shape != ramp.shape:
            raise ModelError(f"{self.model_path}: maps {ramp.shape} to {output.shape}; a generator keeps the shape")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            output = self.session.run(None, {self._input: batch})[0]
        except Exception as exc:  # onnxruntime's own exception types
            reason = " ".join(str(exc).split())[:300]  # onnxruntime messages can span lines
            raise ModelError(f"{self.model_path}: inference failed on {batch.shape} ({reason})") from exc
        if not np.isfinite(output).all():
            raise ModelError(f"{self.model_path}: generator output contains NaN or infinite values (broken weights?)")
        return output

    def generate(self, seed: str | os.PathLike | np.ndarray, size=None, nonce: str | int | None = None) -> Key:
        """One key. `size`: N, (h, w) or "HxW"; None = the seed's own size."""
        return self.generate_many(seed, size, [nonce])[0]

    def generate_many(self, seed: str | os.PathLike | np.ndarray, size, nonces: Sequence[str | int | None]) -> list[Key]:
        """One key per nonce, from one seed, batched through the session."""
        if len(nonces) == 0:
            raise InputError("generate_many needs at least one nonce")
        pixels, seed_sha256, seed_label = _load_seed(seed)
        target = parse_size(size) or tuple(int(v) for v in pixels.shape[:2])
        padded = generation_size(target)
        base = preprocess_uint8(pixels, padded)
        names = [None if n is None else str(n) for n in nonces]
        per_call = max(1, min(self.batch_size, MAX_BATCH_PIXELS // (padded[0] * padded[1])))
        keys: list[Key] = []
        for start in range(0, len(names), per_call):
            chunk = names[start:start + per_call]
            batch = np.stack([scale_to_unit(perturb_seed(base, nonce)) for nonce in chunk])
            outputs = quantize_key(self._run(batch))[:, : target[0], : target[1], :]
            for nonce, key_pixels in zip(chunk, outputs, strict=True):
                key_pixels = np.ascontiguousarray(key_pixels)
                record = make_record(
                    key_pixels,
                    model_sha256=self.model_sha256, model=self.model_path.name,
                    seed_sha256=seed_sha256, seed=seed_label,
                    nonce=nonce, nonce_scheme=NONCE_SCHEME if nonce is not None else None,
                    generation_size=list(padded), provider=self.provider,
                    package_version=keras_dkg.__version__, created=utc_now(),
                )
                keys.append(Key(key_pixels, record))
        return keys
