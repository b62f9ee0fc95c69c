"""The Query/Retrieve SCP for workstations: C-FIND relayed, C-GET / C-MOVE decrypted on the way back.

C-FIND goes to the PACS as it came (the header is in clear there, so queries work as
usual). C-GET and C-MOVE fetch the ciphertexts from the PACS with C-GET, verify and decrypt
each with its key from the store (runtime.instances), and deliver the plaintext instances:
on the same association for C-GET, to an allow-listed destination for C-MOVE. A ciphertext
that fails verification is never delivered (logged and audited instead).
"""

from __future__ import annotations

import io
import logging

from keras_dkg.errors import DkgError
from keras_dkg.gateway.net import nodelay_handlers
from keras_dkg.gateway.store_scp import NOT_AUTHORISED, peer_of
from keras_dkg.gateway.upstream import EXPLICIT_LE, IMPLICIT_LE, PacsUnavailable
from keras_dkg.runtime.instances import decrypt_dicom_bytes

LOG = logging.getLogger("keras_dkg.gateway.retrieve")

PENDING = 0xFF00
UNABLE_TO_PROCESS = 0xC001  # C-FIND/C-GET/C-MOVE "unable to process"
# the C-GET query model that fetches what a C-MOVE model names
GET_FOR_MOVE = {
    "1.2.840.10008.5.1.4.1.2.1.2": "1.2.840.10008.5.1.4.1.2.1.3",  # Patient Root
    "1.2.840.10008.5.1.4.1.2.2.2": "1.2.840.10008.5.1.4.1.2.2.3",  # Study Root
}


class RetrieveService:
    def __init__(self, gateway):
        self.gateway = gateway

    def _refused(self, event, service: str) -> str | None:
        calling, host = peer_of(event.assoc)
        refusal = self.gateway.access.service_refusal(service, calling, host)
        if refusal:
            self.gateway.counters.add("refused")
            LOG.warning("refused C-%s from %s@%s: %s", service.upper(), calling, host, refusal)
            self.gateway.audit("gateway-refuse", calling_ae=calling, address=host, service=service, reason=refusal)
        return refusal

    def find(self, event):
        if self._refused(event, "find"):
            yield NOT_AUTHORISED, None
            return
        try:
            for status, identifier in self.gateway.pacs.find(event.identifier, str(event.request.AffectedSOPClassUID)):
                if event.is_cancelled:
                    yield 0xFE00, None
                    return
                if status in (PENDING, 0xFF01):
                    self.gateway.counters.add("found")
                    yield status, identifier
                elif status != 0x0000:
                    yield status, None
                    return
        except PacsUnavailable as exc:
            LOG.error("C-FIND: %s", exc)
            yield UNABLE_TO_PROCESS, None

    def _plaintexts(self, event, service: str, model: str) -> list:
        """Fetch from the PACS, verify and decrypt: the plaintext datasets (audited one by one)."""
        from pydicom import dcmread

        calling, host = peer_of(event.assoc)
        ciphertexts, _ = self.gateway.pacs.fetch(event.identifier, model)
        datasets = []
        for data in ciphertexts:
            try:
                plain, fingerprint = decrypt_dicom_bytes(data, self.gateway.store, label="instance from the PACS")
            except DkgError as exc:
                LOG.error("C-%s for %s@%s: not delivered: %s", service.upper(), calling, host, exc)
                self.gateway.audit("gateway-retrieve-failed", calling_ae=calling, address=host, service=service,
                                   reason=str(exc))
                continue
            dataset = dcmread(io.BytesIO(plain))
            self.gateway.audit("gateway-retrieve", fingerprint=fingerprint, file=f"dicom:{dataset.SOPInstanceUID}",
                               calling_ae=calling, address=host, service=service)
            datasets.append(dataset)
        return datasets

    def _fetch(self, event, service: str, model: str | None) -> list | None:
        """The decrypted datasets, or None when the PACS could not be asked."""
        try:
            if model is None:
                raise PacsUnavailable(f"no C-GET query model for {event.request.AffectedSOPClassUID}")
            return self._plaintexts(event, service, model)
        except PacsUnavailable as exc:
            LOG.error("C-%s: %s", service.upper(), exc)
            return None

    def _deliver(self, event, datasets: list | None, counter: str):
        """The sub-operation count, then each decrypted instance (pynetdicom C-STOREs them)."""
        if datasets is None:
            yield 0
            yield UNABLE_TO_PROCESS, None
            return
        yield len(datasets)
        for dataset in datasets:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            self.gateway.counters.add(counter)
            yield PENDING, dataset

    def get(self, event):
        if self._refused(event, "get"):
            yield 0
            yield NOT_AUTHORISED, None
            return
        yield from self._deliver(event, self._fetch(event, "get", str(event.request.AffectedSOPClassUID)), "retrieved")

    def move(self, event):
        destination = self.gateway.access.move_destination(event.move_destination or "")
        if self._refused(event, "move") or destination is None:
            if destination is None:
                LOG.warning("C-MOVE: destination %r is not allow-listed with a port", event.move_destination)
            yield None, None  # pynetdicom answers 0xA801 (move destination unknown)
            return
        datasets = self._fetch(event, "move", GET_FOR_MOVE.get(str(event.request.AffectedSOPClassUID)))
        yield destination.host, destination.port, {"evt_handlers": nodelay_handlers(),
                                                   "contexts": storage_contexts(datasets or [])}
        yield from self._deliver(event, datasets, "moved")


def storage_contexts(datasets: list) -> list:
    """Presentation contexts to offer a C-MOVE destination: each SOP class in its syntax and the uncompressed ones."""
    from pynetdicom import build_context
    from pynetdicom.sop_class import Verification

    syntaxes: dict[str, list[str]] = {}
    for dataset in datasets:
        found = syntaxes.setdefault(str(dataset.SOPClassUID), [EXPLICIT_LE, IMPLICIT_LE])
        uid = str(dataset.file_meta.TransferSyntaxUID)
        if uid not in found:
            found.insert(0, uid)
    contexts = [build_context(uid, found) for uid, found in syntaxes.items()]
    return contexts[:127] or [build_context(Verification)]
