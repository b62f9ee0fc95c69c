"""Bad-input matrix, NIfTI volumes (issue 14): each damaged, unsupported or altered volume gets one
clear line and a non-zero exit, and nothing that was there before changes."""

from __future__ import annotations

import gzip
import io
import struct

import nibabel as nib
import numpy as np
from badinput_kit import Matrix, check_case, key_file

from keras_dkg.runtime import formats
from keras_dkg.runtime.ciphers.registry import encrypt_array

MATRIX = Matrix()
case = MATRIX.case
SHAPE = (12, 10, 5)  # int16: 1,200 voxel bytes, the cipher's view 12 × 100 uint8
VIEW = (12, 100)


def nii(dtype: str = "int16", gz: bool = True) -> bytes:
    data = np.random.default_rng(5).integers(-300, 300, SHAPE).astype(dtype)
    raw = nib.Nifti1Image(data, np.diag([1.5, 1.5, 2.0, 1.0])).to_bytes()
    return gzip.compress(raw) if gz else raw


def volume_argv(env, relative: str, data: bytes, output: str = "out/enc.nii.gz") -> list[str]:
    key_file(env, shape=VIEW, dtype=np.uint8)
    env.folder("out")
    return [env.write(relative, data), "--key", "k/key.png", "-o", output]


def encrypted(env, name: str = "enc/v.nii") -> str:
    """A volume encrypted with k/key.png (through the format handles)."""
    from keras_dkg.runtime.keys.artifact import load_key

    key_file(env, shape=VIEW, dtype=np.uint8)
    source = env.write("in/v.nii", nii(gz=False))
    plain = formats.open_plaintext(env.path(source))
    ciphertext, meta = encrypt_array(plain.array, load_key(env.path("k/key.png")).pixels, context=plain.context)
    plain.save_ciphertext(env.path(name), ciphertext, meta)
    env.folder("back")
    return name


def flipped(env, name: str, offset: int) -> str:
    data = bytearray(env.path(name).read_bytes())
    data[offset if offset >= 0 else len(data) + offset] ^= 0x01
    env.path(name).write_bytes(bytes(data))
    return name


@case("nii-truncated-gz", "dkg-encrypt", "a .nii.gz cut short (its last 40 bytes missing)", 2,
      r"in/v\.nii\.gz: damaged or truncated gzip")
def _(env):
    return volume_argv(env, "in/v.nii.gz", nii()[:-40])


@case("nii-header-claims-more", "dkg-encrypt", "a .nii whose header claims more voxel bytes than the file holds", 2,
      r"in/v\.nii: the header claims 1200 voxel bytes from offset 352, the file holds 1100 \(truncated\?\)")
def _(env):
    return volume_argv(env, "in/v.nii", nii(gz=False)[:-100], "out/enc.nii")


@case("nii-pair-half-missing", "dkg-encrypt", "a NIfTI pair's .hdr without its .img", 2,
      r"in/v\.hdr: NIfTI pairs \(\.hdr/\.img\) are not supported; convert the pair to one \.nii")
def _(env):
    buffer = io.BytesIO()
    header = nib.Nifti1Pair(np.zeros(SHAPE, np.int16), np.eye(4)).header
    header.write_to(buffer)
    return volume_argv(env, "in/v.hdr", buffer.getvalue(), "out/enc.nii")


@case("nii-not-nifti", "dkg-encrypt", "a file named .nii that is no NIfTI", 2,
      r"in/v\.nii: not a NIfTI-1/NIfTI-2 file \(sizeof_hdr is neither 348 nor 540\)")
def _(env):
    return volume_argv(env, "in/v.nii", b"this is not a volume" * 30, "out/enc.nii")


@case("nii-already-encrypted", "dkg-encrypt", "a volume that is already one of our ciphertexts", 2,
      r"enc/v\.nii: already a keras_dkg ciphertext \(NIfTI with a keras_dkg\.cipher extension\)")
def _(env):
    name = encrypted(env)
    env.folder("out")
    return [name, "--key", "k/key.png", "-o", "out/again.nii"]


@case("nii-to-png", "dkg-encrypt", "a volume with -o a PNG", 2,
      r"out/enc\.png: a PNG/TIFF ciphertext needs a PNG/TIFF plaintext; write this NIfTI file as \.nii or \.nii\.gz")
def _(env):
    return volume_argv(env, "in/v.nii.gz", nii(), "out/enc.png")


@case("nii-wrong-key", "dkg-decrypt", "an encrypted volume with another key", 2,
      r"enc/v\.nii with key k/other\.png: wrong key: this ciphertext was made with key sha256:")
def _(env):
    name = encrypted(env)
    key_file(env, "k/other.png", shape=VIEW, dtype=np.uint8, seed=9)
    return [name, "--key", "k/other.png", "-o", "back/v.nii"]


@case("nii-tampered-header", "dkg-decrypt", "an encrypted volume with one header byte (pixdim) changed", 3,
      r"enc/v\.nii with key k/key\.png: authentication failed")
def _(env):
    return [flipped(env, encrypted(env), 80), "--key", "k/key.png", "-o", "back/v.nii"]


@case("nii-tampered-voxel", "dkg-decrypt", "an encrypted volume with one voxel byte changed", 3,
      r"enc/v\.nii with key k/key\.png: authentication failed")
def _(env):
    return [flipped(env, encrypted(env), -3), "--key", "k/key.png", "-o", "back/v.nii"]


# ---- issue 23: bytes outside what the header declares, hostile header values ---------------------

def nii_with(raw: bytes, **fields) -> bytes:
    """A NIfTI-1 volume's bytes with raw header fields replaced (vox_offset as float32)."""
    data = bytearray(raw)
    for name, value in fields.items():
        offset, code = {"vox_offset": (108, "<f")}[name]
        struct.pack_into(code, data, offset, value)
    return bytes(data)


def nii2(dims: tuple[int, ...]) -> bytes:
    """A NIfTI-2 volume whose dim[0..7] are replaced by `dims`."""
    data = bytearray(nib.Nifti2Image(np.zeros(SHAPE, np.int16), np.eye(4)).to_bytes())
    struct.pack_into("<8q", data, 16, *dims)
    return bytes(data)


def ten_slices_header_says_five(gz: bool) -> bytes:
    """The header of a 5-slice volume over the voxels of a 10-slice one: slices 6-10 undeclared."""
    data = np.random.default_rng(5).integers(-300, 300, (*SHAPE[:2], 10)).astype("int16")
    five = nib.Nifti1Image(data[:, :, :5], np.eye(4)).to_bytes()
    raw = five + data[:, :, 5:].tobytes(order="F")
    return gzip.compress(raw) if gz else raw


@case("nii-undeclared-slices", "dkg-encrypt", "a .nii whose header says 5 slices while the file holds 10", 2,
      r"in/v\.nii: 1200 bytes follow the 1200 voxel bytes the header declares \(dim 12×10×5, int16\) and are not "
      r"zero padding; they would be left unencrypted, so the file is refused")
def _(env):
    return volume_argv(env, "in/v.nii", ten_slices_header_says_five(gz=False), "out/enc.nii")


@case("nii-gz-undeclared-slices", "dkg-encrypt", "a .nii.gz whose header says 5 slices while it holds 10", 2,
      r"in/v\.nii\.gz: 1200 bytes follow the 1200 voxel bytes .* not zero padding")
def _(env):
    return volume_argv(env, "in/v.nii.gz", ten_slices_header_says_five(gz=True))


@case("nii-gz-bomb-of-zeros", "dkg-encrypt", "a 3 KB .nii.gz that inflates to 4 MB of zeros after its voxels", 2,
      r"in/v\.nii\.gz: inflates past the 1552 bytes its header declares plus 65536 bytes of padding "
      r"\(a decompression bomb\?\)")
def _(env):
    return volume_argv(env, "in/v.nii.gz", gzip.compress(nii(gz=False) + bytes(4 << 20), compresslevel=9))


@case("nii-padding-too-long", "dkg-encrypt", "a .nii with 65537 zero bytes after its voxels", 2,
      r"in/v\.nii: 65537 bytes follow the 1200 voxel bytes .* over the 65536 bytes of zero padding accepted")
def _(env):
    return volume_argv(env, "in/v.nii", nii(gz=False) + bytes(65537), "out/enc.nii")


@case("nii-vox-offset-nan", "dkg-encrypt", "a .nii whose vox_offset is NaN", 2,
      r"in/v\.nii: vox_offset nan is not a whole byte offset after the header")
def _(env):
    return volume_argv(env, "in/v.nii", nii_with(nii(gz=False), vox_offset=float("nan")), "out/enc.nii")


@case("nii-vox-offset-inf", "dkg-encrypt", "a .nii.gz whose vox_offset is +Inf", 2,
      r"in/v\.nii\.gz: vox_offset inf is not a whole byte offset after the header")
def _(env):
    return volume_argv(env, "in/v.nii.gz", gzip.compress(nii_with(nii(gz=False), vox_offset=float("inf"))))


@case("nii2-dims-overflow", "dkg-encrypt", "a NIfTI-2 whose dims multiply past 2^64 (2^40 × 2^40 × 2^40)", 2,
      r"in/v\.nii: the header claims 2658455991569831745807614120560689152 voxel bytes from offset 544, "
      r"the file holds 1200")
def _(env):
    return volume_argv(env, "in/v.nii", nii2((3, 1 << 40, 1 << 40, 1 << 40, 1, 1, 1, 1)), "out/enc.nii")


@case("nii2-gz-dims-overflow", "dkg-encrypt", "a NIfTI-2 .nii.gz whose dims multiply past 2^63", 2,
      r"in/v\.nii\.gz: the header claims 36893488147419103232 voxel bytes from offset 544, the file holds 1200")
def _(env):
    return volume_argv(env, "in/v.nii.gz", gzip.compress(nii2((3, 1 << 62, 4, 1, 1, 1, 1, 1))))


@MATRIX.parametrize()
def test_bad_input(case, tmp_path, request, monkeypatch, capfd):
    check_case(case, tmp_path, request, monkeypatch, capfd)
