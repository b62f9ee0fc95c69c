"""The gateway's one config file (TOML), read into a GatewayConfig and checked before anything starts.

    listen = "127.0.0.1:11112"          # host:port the gateway serves DICOM on
    aet = "DKG_GATEWAY"                  # its AE title (the called AE every peer must use)
    pacs = "ORTHANC@127.0.0.1:4242"      # the archive: AET@host:port
    keys = "/var/lib/dkg/keys"           # a protected key store (dkg-keys init)
    key_file = "/etc/dkg/master.key"     # optional; else DKG_KEYSTORE_PASSPHRASE / DKG_KEYSTORE_KEY_FILE
    model = "generator.onnx"
    seed = "seed.png"
    spool = "/var/lib/dkg/spool"
    cipher = "hardened"                  # or "xor"
    backend = "auto"                     # key engine: auto, onnxruntime or openvino (docs/keys.md)
    precision = "auto"                   # generator arithmetic: auto, fp32 or bf16
    status = "127.0.0.1:8088"            # optional HTTP status endpoint (loopback only)

    [[allow]]                            # who may use what; each AE tied to its address
    ae = "CT1@10.0.0.5"
    services = ["store"]
    [[allow]]
    ae = "WS1@10.0.0.7"
    services = ["find", "get", "move"]
    port = 11113                         # where C-MOVE delivers when WS1 is the destination

    [tls]                                # optional: DICOM TLS with client certificates
    cert = "gateway.crt"
    key = "gateway.key"
    ca = "clients-ca.crt"                # clients must present a certificate this CA signed
    pacs = false                         # true: TLS to the PACS too (same cert; ca checks the PACS)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser as a package (the [gateway] extra installs it)
    import tomli as tomllib

from keras_dkg.errors import InputError

SERVICES = ("echo", "store", "find", "get", "move")
CIPHERS = ("hardened", "xor")
MAX_AE_TITLE = 16


@dataclass(frozen=True)
class Peer:
    """A DICOM node: AE title, host, port (port 0 when only the address matters)."""

    aet: str
    host: str
    port: int = 0

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class Allowed:
    """One allow-list entry: a calling AE at its address, the services it may use."""

    peer: Peer
    services: frozenset[str]


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path
    pacs: bool = False  # TLS on the gateway's own associations to the PACS too


@dataclass
class GatewayConfig:
    listen: tuple[str, int]
    aet: str
    pacs: Peer
    keys: Path
    model: Path
    seed: Path
    spool: Path
    cipher: str = "hardened"
    backend: str = "auto"  # key engine (keras_dkg.runtime.keys.engines.registry), as dkg-encrypt's --backend
    precision: str = "auto"
    key_file: Path | None = None
    allow: list[Allowed] = field(default_factory=list)
    tls: TlsFiles | None = None
    status: tuple[str, int] | None = None
    max_associations: int = 16
    max_pdu: int = 65536
    forwarders: int = 2
    retries: int = 8  # refusals by the PACS before an instance is quarantined
    backoff: tuple[float, float] = (0.5, 30.0)  # first and largest wait while the PACS is unreachable
    min_free_bytes: int = 64 << 20  # spool space kept free: below it stores are refused (0xA700)
    timeout: float = 30.0  # ACSE/DIMSE/network timeouts, seconds
    source: Path | None = None


def _text(raw: dict, name: str, where: str, required: bool = True) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise InputError(f"{where}: the key {name!r} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: {name} must be a non-empty string, got {value!r}")
    return value.strip()


def parse_address(text: str, what: str) -> tuple[str, int]:
    """'host:port' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{what}: expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


def check_aet(aet: str, what: str) -> str:
    if not aet or len(aet) > MAX_AE_TITLE or not aet.isascii() or "\\" in aet or not aet.isprintable():
        raise InputError(f"{what}: {aet!r} is not an AE title (1-16 printable ASCII characters, no backslash)")
    return aet


def parse_peer(text: str, what: str, port_required: bool) -> Peer:
    """'AET@host:port' (or 'AET@host' when no port is needed) -> Peer."""
    aet, sep, rest = text.partition("@")
    if not sep or not rest or (port_required and not rest.rpartition(":")[2].isdigit()):
        raise InputError(f"{what}: expected AET@host{':port' if port_required else ''}, got {text!r}")
    check_aet(aet, what)
    if port_required or (":" in rest and rest.rsplit(":", 1)[1].isdigit()):
        host, port = parse_address(rest, what)
        return Peer(aet, host, port)
    return Peer(aet, rest, 0)


def _allow(raw: list, where: str) -> list[Allowed]:
    entries = []
    for number, item in enumerate(raw, 1):
        label = f"{where}: allow entry {number}"
        if isinstance(item, str):  # "AET@host" alone: store only
            item = {"ae": item, "services": ["store"]}
        if not isinstance(item, dict):
            raise InputError(f"{label}: expected a table with ae and services, got {item!r}")
        peer = parse_peer(_text(item, "ae", label), label, port_required=False)
        port = item.get("port", 0)
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise InputError(f"{label}: port must be a port number, got {port!r}")
        services = item.get("services", ["store"])
        unknown = sorted(set(services) - set(SERVICES)) if isinstance(services, list) else [services]
        if unknown:
            raise InputError(f"{label}: unknown service(s) {unknown}; choose from {', '.join(SERVICES)}")
        entries.append(Allowed(Peer(peer.aet, peer.host, port or peer.port), frozenset(services) | {"echo"}))
    return entries


def _number(raw: dict, name: str, default, where: str, kind=int):
    value = raw.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or (kind is int and value != int(value)):
        raise InputError(f"{where}: {name} must be a non-negative {kind.__name__}, got {value!r}")
    return kind(value)


def _path(base: Path, text: str | None) -> Path | None:
    return None if text is None else (base / os.path.expanduser(text))


def load_config(path: str | os.PathLike) -> GatewayConfig:
    """Read and check a gateway config file; relative paths are relative to the file's folder."""
    source = Path(path)
    where = str(source)
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{where}: no such config file") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{where}: not a readable TOML file ({exc})") from exc
    return config_from_dict(raw, where, source.parent)


def config_from_dict(raw: dict, where: str = "config", base: Path = Path(".")) -> GatewayConfig:
    known = {"listen", "aet", "pacs", "keys", "key_file", "model", "seed", "spool", "cipher", "backend", "precision",
             "allow", "tls",
             "status", "max_associations", "max_pdu", "forwarders", "retries", "backoff", "min_free_bytes", "timeout"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    cipher = _text(raw, "cipher", where, required=False) or "hardened"
    if cipher not in CIPHERS:
        raise InputError(f"{where}: cipher must be one of {', '.join(CIPHERS)}, got {cipher!r}")
    from keras_dkg.runtime.keys.engines.registry import BACKEND_CHOICES, PRECISION_CHOICES

    engine = {}
    for name, choices in (("backend", BACKEND_CHOICES), ("precision", PRECISION_CHOICES)):
        engine[name] = _text(raw, name, where, required=False) or "auto"
        if engine[name] not in choices:
            raise InputError(f"{where}: {name} must be one of {', '.join(choices)}, got {engine[name]!r}")
    tls = raw.get("tls")
    if tls is not None:
        if not isinstance(tls, dict):
            raise InputError(f"{where}: [tls] must be a table with cert, key and ca")
        unknown_tls = sorted(set(tls) - {"cert", "key", "ca", "pacs"})
        if unknown_tls or not isinstance(tls.get("pacs", False), bool):
            raise InputError(f"{where}: [tls] takes cert, key, ca and pacs (true/false); got {sorted(tls)}")
        tls = TlsFiles(*(_path(base, _text(tls, name, f"{where} [tls]")) for name in ("cert", "key", "ca")),
                       pacs=tls.get("pacs", False))
    status = _text(raw, "status", where, required=False)
    backoff = raw.get("backoff", [0.5, 30.0])
    if not (isinstance(backoff, list) and len(backoff) == 2 and all(isinstance(v, int | float) and v > 0 for v in backoff)):
        raise InputError(f"{where}: backoff must be [first, largest] seconds, got {backoff!r}")
    allow = raw.get("allow", [])
    if not isinstance(allow, list):
        raise InputError(f"{where}: allow must be a list of [[allow]] tables")
    config = GatewayConfig(
        listen=parse_address(_text(raw, "listen", where), f"{where}: listen"),
        aet=check_aet(_text(raw, "aet", where), f"{where}: aet"),
        pacs=parse_peer(_text(raw, "pacs", where), f"{where}: pacs", port_required=True),
        keys=_path(base, _text(raw, "keys", where)),
        key_file=_path(base, _text(raw, "key_file", where, required=False)),
        model=_path(base, _text(raw, "model", where)),
        seed=_path(base, _text(raw, "seed", where)),
        spool=_path(base, _text(raw, "spool", where)),
        cipher=cipher,
        backend=engine["backend"],
        precision=engine["precision"],
        allow=_allow(allow, where),
        tls=tls,
        status=parse_address(status, f"{where}: status") if status else None,
        max_associations=max(1, _number(raw, "max_associations", 16, where)),
        max_pdu=_number(raw, "max_pdu", 65536, where),
        forwarders=max(1, _number(raw, "forwarders", 2, where)),
        retries=max(1, _number(raw, "retries", 8, where)),
        backoff=(float(backoff[0]), float(backoff[1])),
        min_free_bytes=_number(raw, "min_free_bytes", 64 << 20, where),
        timeout=_number(raw, "timeout", 30.0, where, float) or 30.0,
        source=Path(where) if where != "config" else None,
    )
    if config.status and config.status[0] not in ("127.0.0.1", "::1", "localhost"):
        raise InputError(f"{where}: status must listen on loopback (127.0.0.1:PORT), got {status!r}")
    return config
