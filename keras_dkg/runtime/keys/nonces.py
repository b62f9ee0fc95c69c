"""Nonce schemes: how one secret seed gives a different key for every file.

v1 (the first round, still readable and selectable): the nonce perturbs the *seed* by
±8 uint8 levels before the generator. A trained generator smooths such noise away, so
keys for two nonces of one seed agree on 3–21 % of their bytes where independent keys
agree on ~0.4 % — XOR archives then leak partly like key reuse (docs/keys.md).

v2 (the default from the second round until v3): the generator runs once on the unperturbed seed, giving
the base key K0; the key for a nonce is a permutation of K0's bytes (all H×W×3 of them,
across channels), drawn by PCG64 from SHA-256 of a label, the model's and the seed's
SHA-256 and the nonce. Two nonces give two independent uniform permutations, so their
keys agree on exactly as many bytes as independent keys *with K0's histogram* would
(sum of p_v², the target of the key-quality issue), by construction rather than by luck
of training. What v2 does not change, and must not be credited for: the histogram,
entropy and χ² of a key are K0's, and one-pixel seed sensitivity is measured on nonce-free
keys (nonce=None gives K0 itself, identical under v1 and v2), since the permutation's
seed digest would otherwise turn any seed change into a new permutation.

v3 (the default since issue 27): v2's construction per fixed block, with a cryptographic
permutation. The generator runs once per key on the seed at no more than BLOCK_SIDE² (the
key's own generation size when that is smaller), giving K0; a key of any size is its flat
bytes cut into consecutive blocks of K0's size, block i holding K0's bytes in the order of
a uniform permutation drawn by Fisher–Yates (numpy `Generator.shuffle`) from ChaCha20
(20 rounds, RFC 8439's keystream: randomgen's ChaCha bit generator, checked against the
`cryptography` package in the tests) keyed by SHA-256('keras_dkg/nonce/v3\0' + model sha256
+ '\0' + seed sha256 + '\0' + utf-8 nonce + '\0' + decimal block index). Blocks of one key
and keys of two nonces are as unrelated as v2's keys of two nonces; a 240×240×155 volume
costs one 256² generator pass instead of one per key byte. `nonce=None` is still the
generator's key at the full size (as under v1 and v2): analyses of G see G.

Security note: the permutation depends on the model and seed digests, so a known
plaintext that reveals one key does not reveal another file's key to someone without
both (it reveals K0's byte histogram only). Keys are stored, never regenerated to
decrypt, so a scheme change can never make an old ciphertext undecryptable; records name
their scheme (`nonce_scheme`).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keras_dkg.errors import InputError

V1, V2, V3 = "v1", "v2", "v3"
DEFAULT_SCHEME = V3
SCHEMES = (V1, V2, V3)
BLOCK_SIDE = 256  # v3: the generator's run is at most BLOCK_SIDE × BLOCK_SIDE per key

V1_AMPLITUDE = 8  # uint8 levels, i.e. ±8/127.5 in the generator's [-1, 1] input
V1_LABEL = b"keras_dkg/nonce/v1\x00"
V2_LABEL = b"keras_dkg/nonce/v2\x00"
V3_LABEL = b"keras_dkg/nonce/v3\x00"
DESCRIPTIONS = {
    V1: ("v1: PCG64 seeded by SHA-256('keras_dkg/nonce/v1\\0' + utf-8 nonce); uint8 seed + "
         f"uniform integer in [-{V1_AMPLITUDE}, {V1_AMPLITUDE}] per value, reflected at 0 and 255"),
    V2: ("v2: base key K0 = G(seed); key = K0's H*W*3 bytes in the order of a uniform permutation "
         "(numpy Generator.shuffle of int32 indices) drawn by PCG64 seeded by SHA-256('keras_dkg/nonce/v2\\0' + "
         "model sha256 + '\\0' + seed sha256 + '\\0' + utf-8 nonce)"),
    V3: ("v3: base key K0 = G(seed) at the key's generation size, at most 256x256; key = consecutive blocks of "
         "K0's size, block i = K0's bytes in the order of a uniform permutation (numpy Generator.shuffle of int32 "
         "indices) drawn from ChaCha20 (20 rounds, RFC 8439 keystream, counter 0) keyed by SHA-256("
         "'keras_dkg/nonce/v3\\0' + model sha256 + '\\0' + seed sha256 + '\\0' + utf-8 nonce + '\\0' + block index)"),
}


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise InputError(f"unknown nonce scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    return scheme


def _rng(label: bytes, *parts: str) -> np.random.Generator:
    digest = hashlib.sha256(label + b"\x00".join(part.encode("utf-8") for part in parts)).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "big")))


def perturb_seed(seed_uint8: np.ndarray, nonce: str | int | None) -> np.ndarray:
    """v1: the nonce's deterministic perturbation of a preprocessed uint8 seed (None: unchanged)."""
    if nonce is None:
        return seed_uint8
    values = _rng(V1_LABEL, str(nonce)).integers(-V1_AMPLITUDE, V1_AMPLITUDE + 1, size=seed_uint8.shape,
                                                   dtype=np.int16)
    values += seed_uint8  # in place in one int16 array: a big key's seed is big
    np.abs(values, out=values)  # reflect below 0
    np.subtract(510, values, out=values, where=values > 255)  # reflect above 255
    return values.astype(np.uint8)


def permute_key(base_key: np.ndarray, nonce: str | int | None, model_sha256: str, seed_sha256: str) -> np.ndarray:
    """v2: the nonce's key from the base key K0 (None: K0 itself). Memory: 4 bytes per key byte."""
    if nonce is None:
        return base_key
    flat = np.ascontiguousarray(base_key).reshape(-1)
    if flat.size >= 2**31:
        raise InputError(f"a key of {flat.size} bytes is too large for nonce scheme v2")
    order = np.arange(flat.size, dtype=np.int32)
    _rng(V2_LABEL, model_sha256, seed_sha256, str(nonce)).shuffle(order)
    return flat[order].reshape(base_key.shape)


def block_generator(model_sha256: str, seed_sha256: str, nonce: str, block: int) -> np.random.Generator:
    """v3: the ChaCha20 generator of one block's permutation (RFC 8439 keystream, key = the SHA-256 below)."""
    from randomgen import ChaCha  # a base dependency; imported here so v1/v2 work without it

    digest = hashlib.sha256(V3_LABEL + b"\x00".join(
        part.encode("utf-8") for part in (model_sha256, seed_sha256, str(nonce), str(int(block))))).digest()
    return np.random.Generator(ChaCha(key=int.from_bytes(digest, "little"), counter=0, rounds=20))


def block_key(base_key: np.ndarray, shape: tuple[int, int], nonce: str | int, model_sha256: str,
              seed_sha256: str) -> np.ndarray:
    """v3: the (h, w, 3) key of a nonce: consecutive blocks of K0's size, each a keyed permutation of K0's bytes."""
    flat = np.ascontiguousarray(base_key).reshape(-1)
    total = int(shape[0]) * int(shape[1]) * 3
    if flat.size >= 2**31:
        raise InputError(f"a base key of {flat.size} bytes is too large for nonce scheme v3")
    key = np.empty(total, dtype=np.uint8)
    identity = np.arange(flat.size, dtype=np.int32)
    starts = range(0, total, flat.size)

    def fill(block: int) -> None:  # numpy's shuffle runs without the GIL: blocks fill in parallel
        order = identity.copy()
        block_generator(model_sha256, seed_sha256, str(nonce), block).shuffle(order)
        start = starts[block]
        stop = min(start + flat.size, total)
        np.take(flat, order[: stop - start], out=key[start:stop])

    if len(starts) == 1:
        fill(0)
    else:
        with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
            list(pool.map(fill, range(len(starts))))
    return key.reshape(int(shape[0]), int(shape[1]), 3)
