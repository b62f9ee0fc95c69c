"""The Storage SCP for modalities: encrypt each instance, make it durable, only then answer Success.

Per instance, in the association's thread: access check, encryption as `dkg-encrypt` does a
DICOM file (runtime.instances: fresh key, key stored and fsynced first, pixels encrypted,
every other element kept), the ciphertext written to the spool (fsync, rename, directory
fsync), queued for the forwarder, then Success. Anything that stops the instance being
durable is a refusal the modality retries: 0xA700 (out of resources: spool full, key store
locked or unwritable); an instance that cannot be encrypted is 0xC000 (cannot understand),
an AE not allowed to store 0x0124 (not authorised). Every store and refusal is in the key
store's audit log with the calling AE and its address.
"""

from __future__ import annotations

import logging

from keras_dkg.errors import DkgError, InputError
from keras_dkg.gateway.spool import SpoolFull
from keras_dkg.runtime.instances import encrypt_dicom_bytes, instance_file_bytes

LOG = logging.getLogger("keras_dkg.gateway.store")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
NOT_AUTHORISED = 0x0124


def peer_of(assoc) -> tuple[str, str]:
    """(calling AE title, address) of an association's requestor."""
    return str(assoc.requestor.ae_title).strip(), str(assoc.requestor.address)


class StoreService:
    """`handle` is bound to EVT_C_STORE; `gateway` gives the shared parts (server.Gateway)."""

    def __init__(self, gateway):
        self.gateway = gateway

    def refuse(self, status: int, calling: str, host: str, what: str, reason: str) -> int:
        gateway = self.gateway
        gateway.counters.add("refused")
        LOG.warning("refused C-STORE %s from %s@%s: 0x%04X %s", what, calling, host, status, reason)
        gateway.audit("gateway-refuse", file=f"dicom:{what}", calling_ae=calling, address=host,
                      service="store", status=f"0x{status:04X}", reason=reason)
        return status

    def handle(self, event) -> int:
        gateway = self.gateway
        calling, host = peer_of(event.assoc)
        request = event.request
        uid = str(request.AffectedSOPInstanceUID)
        gateway.counters.add("received")
        refusal = gateway.access.service_refusal("store", calling, host)
        if refusal:
            return self.refuse(NOT_AUTHORISED, calling, host, uid, refusal)
        if gateway.draining.is_set():
            return self.refuse(OUT_OF_RESOURCES, calling, host, uid, "gateway is shutting down")
        data = instance_file_bytes(event.encoded_dataset(include_meta=False), str(request.AffectedSOPClassUID),
                                   uid, str(event.context.transfer_syntax))
        used_for = f"dicom:{calling}@{host}/{uid}"
        try:
            gateway.spool.check_space(2 * len(data))  # before a key is made: a refusal costs no key
            encrypted = encrypt_dicom_bytes(data, gateway.keys, gateway.store, cipher=gateway.config.cipher,
                                            used_for=used_for, label=uid)
            path = gateway.spool.put(uid, encrypted.data)
        except SpoolFull as exc:
            return self.refuse(OUT_OF_RESOURCES, calling, host, uid, str(exc))
        except InputError as exc:
            return self.refuse(CANNOT_UNDERSTAND, calling, host, uid, str(exc))
        except (DkgError, OSError) as exc:  # key store locked or unwritable, disk full while writing
            return self.refuse(OUT_OF_RESOURCES, calling, host, uid, str(exc))
        gateway.counters.add("stored")
        gateway.forwarder.submit(path)
        LOG.info("stored %s from %s@%s (key %s…)", uid, calling, host, encrypted.fingerprint[:23])
        return SUCCESS
