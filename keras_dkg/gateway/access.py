"""Who may talk to the gateway: calling AE titles tied to their addresses, per service.

An association is accepted only when the called AE is the gateway's and the calling AE is on
the allow list *at the address it connects from*; each service (store, find, get, move) is
then checked per request, so a modality allowed to store cannot retrieve. Every refusal is
a reason string the caller logs and audits.
"""

from __future__ import annotations

from keras_dkg.gateway.config import Allowed, Peer


class AccessPolicy:
    def __init__(self, aet: str, allow: list[Allowed]):
        self.aet = aet
        self.allow = list(allow)

    def association_refusal(self, called: str, calling: str, host: str) -> str | None:
        """Why an association request is refused (None: accepted)."""
        if called.strip() != self.aet:
            return f"called AE {called.strip()!r} is not this gateway ({self.aet!r})"
        entries = [entry for entry in self.allow if entry.peer.aet == calling.strip()]
        if not entries:
            return f"calling AE {calling.strip()!r} is not on the allow list"
        if not any(entry.peer.host == host for entry in entries):
            return f"calling AE {calling.strip()!r} is not allowed from {host}"
        return None

    def service_refusal(self, service: str, calling: str, host: str) -> str | None:
        """Why `calling`@`host` may not use `service` (None: it may)."""
        for entry in self.allow:
            if entry.peer.aet == calling.strip() and entry.peer.host == host and service in entry.services:
                return None
        return f"{calling.strip()}@{host} may not use {service}"

    def move_destination(self, aet: str) -> Peer | None:
        """The allow-listed node a C-MOVE may deliver to (an entry with a port)."""
        for entry in self.allow:
            if entry.peer.aet == aet.strip() and entry.peer.port:
                return entry.peer
        return None
