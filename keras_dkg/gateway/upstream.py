"""The PACS as the gateway sees it: associations, C-ECHO, C-STORE of spooled files, C-FIND, C-GET.

Ciphertexts are always Explicit VR Little Endian (runtime.formats.dicom), so every storage context
offered to the PACS is that one syntax. Instances fetched with C-GET come back as Part-10
bytes with the gateway's fixed file meta (runtime.instances.instance_file_bytes), exactly
what was encrypted, so their tags verify.
"""

from __future__ import annotations

from collections.abc import Iterator

from keras_dkg.errors import DkgError
from keras_dkg.gateway.config import Peer
from keras_dkg.gateway.net import nodelay_handlers
from keras_dkg.runtime.instances import instance_file_bytes

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
SUCCESS_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}
MAX_CONTEXTS = 128


class PacsUnavailable(DkgError):
    """The PACS could not be reached or refused the association."""


def storage_classes() -> list[str]:
    from pynetdicom import StoragePresentationContexts

    return [str(context.abstract_syntax) for context in StoragePresentationContexts]


class Pacs:
    def __init__(self, peer: Peer, calling_aet: str, timeout: float = 30.0, tls=None, max_pdu: int = 65536):
        self.peer = peer
        self.calling_aet = calling_aet
        self.timeout = timeout
        self.tls = tls  # an ssl.SSLContext for DICOM TLS to the PACS, or None
        self.max_pdu = max_pdu

    def _ae(self):
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = min(self.timeout, 5.0)
        ae.maximum_pdu_size = self.max_pdu
        return ae

    def associate(self, contexts: list[tuple[str, list[str]]], ext_neg=None, handlers=()):
        """An established association offering `contexts` [(abstract syntax, [transfer syntaxes])]."""
        ae = self._ae()
        for abstract, syntaxes in contexts[:MAX_CONTEXTS]:
            ae.add_requested_context(abstract, syntaxes)
        kwargs = {"tls_args": (self.tls, None)} if self.tls is not None else {}
        assoc = ae.associate(self.peer.host, self.peer.port, ae_title=self.peer.aet, ext_neg=ext_neg,
                             evt_handlers=[*nodelay_handlers(), *handlers], **kwargs)
        if not assoc.is_established:
            why = "rejected the association" if assoc.is_rejected else "did not answer"
            raise PacsUnavailable(f"PACS {self.peer}: {why}")
        return assoc

    def storage_association(self, classes: list[str]):
        return self.associate([(uid, [EXPLICIT_LE]) for uid in classes])

    def echo(self) -> int:
        from pynetdicom.sop_class import Verification

        assoc = self.associate([(Verification, [EXPLICIT_LE, IMPLICIT_LE])])
        try:
            status = assoc.send_c_echo()
            return int(status.Status) if "Status" in status else -1
        finally:
            assoc.release()

    def find(self, identifier, model: str) -> Iterator[tuple[int, object]]:
        """Relay a C-FIND: (status, identifier) per response, as the PACS gives them."""
        assoc = self.associate([(model, [EXPLICIT_LE, IMPLICIT_LE])])
        try:
            for status, found in assoc.send_c_find(identifier, model):
                if "Status" not in status:
                    raise PacsUnavailable(f"PACS {self.peer}: C-FIND ended without a status (connection lost)")
                yield int(status.Status), found
        finally:
            assoc.release()

    def fetch(self, identifier, model: str) -> tuple[list[bytes], int]:
        """C-GET from the PACS: (each instance's Part-10 bytes, the final status)."""
        from pynetdicom import build_role, evt

        received: list[bytes] = []

        def on_store(event) -> int:
            request = event.request
            received.append(instance_file_bytes(event.encoded_dataset(include_meta=False),
                                                str(request.AffectedSOPClassUID),
                                                str(request.AffectedSOPInstanceUID),
                                                str(event.context.transfer_syntax)))
            return 0x0000

        classes = storage_classes()[:MAX_CONTEXTS - 1]
        contexts = [(model, [EXPLICIT_LE, IMPLICIT_LE])] + [(uid, [EXPLICIT_LE]) for uid in classes]
        roles = [build_role(uid, scp_role=True) for uid in classes]
        assoc = self.associate(contexts, ext_neg=roles, handlers=[(evt.EVT_C_STORE, on_store)])
        final = -1
        try:
            for status, _ in assoc.send_c_get(identifier, model):
                if "Status" not in status:
                    raise PacsUnavailable(f"PACS {self.peer}: C-GET ended without a status (connection lost)")
                final = int(status.Status)
        finally:
            assoc.release()
        return received, final
