"""DICOM instances held in memory, as the gateway receives them: encrypted and decrypted like files.

The DICOM gateway (keras_dkg.gateway) receives instances over the network, so it has their
bytes, not a path: `encrypt_dicom_bytes` / `decrypt_dicom_bytes` are `dkg-encrypt --model
--seed --keys` and `dkg-decrypt --keys` for one such instance, on the key custody of
runtime.encryption (`fresh_key_use`: the key stored with its first use before the ciphertext
exists, the use given back when it is not made), with formats.dicom for the container.

An instance received over DICOM networking has no file meta of its own (group 0002 is not
sent) and a ciphertext's tag covers the file meta, so `instance_file_bytes` gives every
network instance the same fixed file meta: the ciphertext the gateway stored and the one
it later fetches back from the PACS (which rewrites its own meta) verify alike.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from keras_dkg.runtime.ciphers.metadata import CipherMetadata, check_plaintext, plaintext_digest
from keras_dkg.runtime.encryption import fresh_key_size, fresh_key_use
from keras_dkg.runtime.formats.dicom import (
    decrypt_dicom,
    encrypt_dicom,
    load_dicom_ciphertext,
    plaintext_bytes,
    read_dicom,
)
from keras_dkg.runtime.keys.artifact import Key
from keras_dkg.runtime.keys.generator import KeyGenerator, KeyJob, random_nonce
from keras_dkg.runtime.keystore.store import KeyStore

# The file meta's Implementation Class UID for instances received over the network: fixed
# (not pydicom's or pynetdicom's, which change with their versions) because it is authenticated.
IMPLEMENTATION_UID = "2.25.240925160213931577350826316442702785817"
IMPLEMENTATION_VERSION = "KERAS_DKG_1"


def instance_file_bytes(dataset: bytes, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """A Part-10 file from an encoded data set (as a C-STORE carries it): fixed preamble and file meta."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue() + bytes(dataset)


class KeySource:
    """Fresh keys from one generator and one seed for a long-running service, thread-safe.

    The seed is prepared once per key size (read, resized: `KeyGenerator.prepare`) and kept
    for the last `sizes` sizes; the generator itself runs once per base-key size (nonce schemes
    v2, v3: `KeyGenerator` keeps its base keys) and each key is a keyed permutation of that run for a fresh nonce
    (docs/keys.md), exactly the keys `dkg-encrypt --model --seed` would make.
    """

    def __init__(self, generator: KeyGenerator, seed: np.ndarray, sizes: int = 8):
        self.generator, self.seed, self.sizes = generator, seed, sizes
        self._jobs: OrderedDict[tuple[int, int], KeyJob] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, size: tuple[int, int]) -> Key:
        with self._lock:
            job = self._jobs.get(size)
            if job is None:  # first key of this size: prepare (and run the generator) under the lock
                job = self.generator.prepare(self.seed, size)
                key = next(self.generator.keys(job, [random_nonce()]))
                self._jobs[size] = job
                while len(self._jobs) > self.sizes:
                    self._jobs.popitem(last=False)
                return key
            self._jobs.move_to_end(size)
        return next(self.generator.keys(job, [random_nonce()]))


@dataclass(frozen=True)
class EncryptedInstance:
    """A DICOM ciphertext file's bytes, the fingerprint of its (stored) key and its metadata."""

    data: bytes
    fingerprint: str
    meta: CipherMetadata


def encrypt_dicom_bytes(data: bytes, keys: KeySource, store: KeyStore, *, cipher: str = "hardened",
                        used_for: str, label: str | None = None) -> EncryptedInstance:
    """Encrypt one DICOM file given as bytes with a fresh key from `keys`, stored in `store` first.

    `used_for` names the instance in the
    key's record and the audit log (the gateway: `dicom:CALLING_AE@HOST/SOPInstanceUID`).
    Errors are the runtime's (InputError for an instance that cannot be encrypted,
    KeyMaterialError/OutputError for a store that cannot take the key); the key's use is
    given back when the instance could not be encrypted after its key was stored.
    """
    plain = read_dicom(data, label=label)
    samples = check_plaintext(plain.plain_array())
    key = keys.key(fresh_key_size(samples, label or "DICOM instance"))
    # hardened: a fresh salt and nonce per encryption make reuse safe; xor keys are one-use (fresh here anyway)
    with fresh_key_use(store, key, plaintext_digest(samples), used_for, allow_reuse=cipher == "hardened"):
        ciphertext, meta = encrypt_dicom(plain, key.pixels, cipher=cipher, nonce=key.record.get("nonce"))
    return EncryptedInstance(ciphertext, key.fingerprint, meta)


def decrypt_dicom_bytes(data: bytes, store: KeyStore, *, label: str | None = None) -> tuple[bytes, str]:
    """Verify and decrypt one DICOM ciphertext given as bytes with its key from `store`.

    Returns (the plaintext DICOM file's bytes, the key's fingerprint). A wrong key or an
    altered ciphertext raises IntegrityError, never gives a wrong image.
    """
    encrypted = load_dicom_ciphertext(data, label=label)
    key = store.load(encrypted.meta.key_fingerprint)
    return plaintext_bytes(decrypt_dicom(encrypted, key.pixels)), key.fingerprint
