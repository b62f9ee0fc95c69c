"""The gateway as one object: its parts built from a GatewayConfig, started, drained, stopped.

    gateway = Gateway(load_config("gateway.toml"))
    gateway.start()          # DICOM server, forwarder workers, status endpoint
    ...
    gateway.stop(drain=30)   # stop accepting, finish open associations, empty the spool, stop
"""

from __future__ import annotations

import logging
import threading
import time

from keras_dkg.errors import InputError
from keras_dkg.gateway.access import AccessPolicy
from keras_dkg.gateway.config import GatewayConfig
from keras_dkg.gateway.forwarder import Forwarder
from keras_dkg.gateway.net import client_tls, nodelay_handlers, server_tls
from keras_dkg.gateway.retrieve_scp import RetrieveService
from keras_dkg.gateway.spool import Spool
from keras_dkg.gateway.status import Counters, StatusServer
from keras_dkg.gateway.store_scp import StoreService, peer_of
from keras_dkg.gateway.upstream import EXPLICIT_LE, IMPLICIT_LE, Pacs

LOG = logging.getLogger("keras_dkg.gateway")

DEFLATED_LE = "1.2.840.10008.1.2.1.99"
QR_MODELS = (
    "1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.1.2", "1.2.840.10008.5.1.4.1.2.1.3",  # Patient Root
    "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.2", "1.2.840.10008.5.1.4.1.2.2.3",  # Study Root
)


def open_key_store(config: GatewayConfig):
    """The config's key store, unlocked the way every command does; a plain store is refused."""
    from keras_dkg.runtime.keystore.custody import Credentials
    from keras_dkg.runtime.keystore.store import KeyStore

    store = KeyStore(config.keys, credentials=Credentials.from_environment(config.key_file))
    if not store.protected:
        raise InputError(f"{config.keys}: the gateway needs a protected key store (dkg-keys init {config.keys}, "
                         "or dkg-keys protect for an existing one)")
    return store


def accepted_syntaxes() -> list[str]:
    """Transfer syntaxes a modality may send: uncompressed, plus every compressed one this
    install can decode (others are refused at association time, never after Success)."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID, AllTransferSyntaxes

    found = [IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE]
    for uid in AllTransferSyntaxes:
        uid = UID(uid)
        if uid.is_encapsulated and uid not in found:
            try:
                if get_decoder(uid).is_available:
                    found.append(str(uid))
            except (NotImplementedError, ValueError):
                continue
    return found


class Gateway:
    def __init__(self, config: GatewayConfig):
        from keras_dkg.runtime.instances import KeySource
        from keras_dkg.runtime.keys.generator import KeyGenerator, load_seed

        self.config = config
        self.store = open_key_store(config)
        generator = KeyGenerator(config.model, backend=config.backend, precision=config.precision)
        self.keys = KeySource(generator, load_seed(config.seed)[0])
        self.spool = Spool(config.spool, config.min_free_bytes)
        self.counters = Counters()
        self.access = AccessPolicy(config.aet, config.allow)
        tls = client_tls(config.tls) if config.tls and config.tls.pacs else None
        self.pacs = Pacs(config.pacs, config.aet, config.timeout, tls=tls, max_pdu=config.max_pdu)
        self.forwarder = Forwarder(self.spool, self.pacs, self.counters, config.forwarders, config.retries,
                                   config.backoff)
        self.draining = threading.Event()
        self.server = None
        self.status_server = None

    def audit(self, action: str, **fields) -> None:
        self.store.record_use(action, **fields)

    def report(self) -> dict:
        return {**self.counters.snapshot(), "queue_depth": self.spool.depth(),
                "quarantine": self.spool.quarantined(), "draining": self.draining.is_set(),
                "associations": len(self.server.active_associations) if self.server is not None else 0}

    def _on_requested(self, event) -> None:
        """EVT_REQUESTED: refuse an association whose called AE, calling AE or address is not allowed."""
        calling, host = peer_of(event.assoc)
        primitive = event.assoc.requestor.primitive
        called = str(primitive.called_ae_title).strip()
        calling = str(primitive.calling_ae_title).strip()
        reason = self.access.association_refusal(called, calling, host)
        if reason is None:
            return
        self.counters.add("refused")
        LOG.warning("refused association from %s@%s: %s", calling, host, reason)
        self.audit("gateway-refuse", calling_ae=calling, address=host, service="associate", reason=reason)
        diagnostic = 0x07 if reason.startswith("called") else 0x03
        event.assoc.acse.send_reject(0x01, 0x01, diagnostic)

    def _application_entity(self):
        from pynetdicom import AE, AllStoragePresentationContexts
        from pynetdicom.sop_class import Verification

        config = self.config
        ae = AE(ae_title=config.aet)
        ae.maximum_associations = config.max_associations
        ae.maximum_pdu_size = config.max_pdu
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = config.timeout
        ae.add_supported_context(Verification, [EXPLICIT_LE, IMPLICIT_LE])
        syntaxes = accepted_syntaxes()
        for context in AllStoragePresentationContexts:
            # scp_role: a workstation's C-GET makes it the storage SCP for the instances sent back
            ae.add_supported_context(context.abstract_syntax, syntaxes, scp_role=True, scu_role=False)
        for model in QR_MODELS:
            ae.add_supported_context(model, [EXPLICIT_LE, IMPLICIT_LE])
        return ae

    def start(self) -> None:
        from pynetdicom import evt

        config = self.config
        store, retrieve = StoreService(self), RetrieveService(self)
        handlers = [*nodelay_handlers(), (evt.EVT_REQUESTED, self._on_requested),
                    (evt.EVT_C_ECHO, lambda event: 0x0000), (evt.EVT_C_STORE, store.handle),
                    (evt.EVT_C_FIND, retrieve.find), (evt.EVT_C_GET, retrieve.get), (evt.EVT_C_MOVE, retrieve.move)]
        self.ae = self._application_entity()
        tls = server_tls(config.tls) if config.tls else None
        if config.status:  # up before the DICOM port: once that listens, everything does
            self.status_server = StatusServer(config.status, self.report)
            self.status_server.start()
        self.forwarder.start()
        self.server = self.ae.start_server(config.listen, block=False, evt_handlers=handlers, ssl_context=tls)
        LOG.info("gateway %s listening on %s:%d, forwarding to %s", config.aet, *config.listen, config.pacs)

    def stop(self, drain: float = 30.0) -> bool:
        """Stop accepting, let open associations finish, forward what is spooled (up to `drain`
        seconds); return True when the spool was emptied. What is left stays spooled."""
        self.draining.set()
        deadline = time.monotonic() + drain
        if self.server is not None:
            active = self.server.active_associations
            self.server.shutdown()
            # established associations finish; half-open ones (never associated) are not waited for
            while any(a.is_alive() and a.is_established for a in active) and time.monotonic() < deadline:
                time.sleep(0.05)
        emptied = self.forwarder.drain(max(deadline - time.monotonic(), 0.0))
        self.forwarder.stop()
        if self.server is not None:
            self.ae.shutdown()
        if self.status_server is not None:
            self.status_server.stop()
        LOG.info("gateway stopped; %d instance(s) left in the spool", self.spool.depth())
        return emptied
