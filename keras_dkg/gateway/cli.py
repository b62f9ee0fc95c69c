"""`dkg gateway --config FILE` (also `dkg-gateway`): serve; `dkg gateway check --config FILE`: verify first.

Serving logs one JSON object a line on stderr, prints `dkg-gateway: ready ...` on stdout once
it listens, and on SIGTERM or Ctrl-C drains (no new associations, open ones finish, the
spool is forwarded for up to --drain seconds; what is left stays spooled for the next start).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

from keras_dkg.errors import DkgError, run_cli

PROG = "dkg-gateway"


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                           "level": record.levelname.lower(), "logger": record.name,
                           "message": record.getMessage()})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="An encrypting DICOM node in front of a PACS (docs/gateway.md): "
                                "C-STORE in -> encrypt -> spool -> C-STORE to the PACS; C-FIND/C-GET/C-MOVE -> "
                                "fetch from the PACS -> decrypt -> workstation.")
    p.add_argument("action", nargs="?", choices=("serve", "check"), default="serve",
                   help="serve (default) or check: verify the PACS, the key store, model, seed, spool and ports")
    p.add_argument("--config", required=True, help="the gateway's TOML config file")
    p.add_argument("--drain", type=float, default=30.0, help="seconds to forward the spool on SIGTERM (default 30)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def _port_free(address: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)


def checks(config) -> list[tuple[str, Callable[[], str]]]:
    """(what, check) pairs; a check returns a detail or raises."""
    from keras_dkg.gateway.server import open_key_store
    from keras_dkg.gateway.spool import Spool
    from keras_dkg.gateway.upstream import Pacs
    from keras_dkg.runtime.keys.generator import KeyGenerator, load_seed

    def store() -> str:
        opened = open_key_store(config)
        return f"{config.keys}: protected, {len(opened.entries())} key(s)"

    def spool() -> str:
        folder = Spool(config.spool, config.min_free_bytes)
        probe = folder.queue / ".check"
        probe.write_bytes(b"x")
        probe.unlink()
        folder.check_space(0)
        return f"{config.spool}: writable, {folder.free_bytes() >> 20} MiB free, {folder.depth()} queued"

    def pacs() -> str:
        from keras_dkg.gateway.net import client_tls

        tls = client_tls(config.tls) if config.tls and config.tls.pacs else None
        status = Pacs(config.pacs, config.aet, min(config.timeout, 10.0), tls=tls).echo()
        if status != 0:
            raise DkgError(f"C-ECHO answered 0x{status:04X}")
        return f"{config.pacs}: C-ECHO ok"

    def model() -> str:
        generator = KeyGenerator(config.model, backend=config.backend, precision=config.precision)
        return f"{generator.model_path}: loads; {generator.engine_choice}"

    items = [("key store", store), ("model", model),
             ("seed", lambda: f"{config.seed}: {load_seed(config.seed)[0].shape}"), ("spool", spool),
             ("listen", lambda: (_port_free(config.listen), f"{config.listen[0]}:{config.listen[1]} free")[1])]
    if config.status:
        items.append(("status", lambda: (_port_free(config.status), f"{config.status[0]}:{config.status[1]} free")[1]))
    if config.tls:
        from keras_dkg.gateway.net import server_tls

        items.append(("tls", lambda: (server_tls(config.tls), f"{config.tls.cert}: loads")[1]))
    items.append(("pacs", pacs))
    return items


def check(config) -> int:
    failed = 0
    for what, action in checks(config):
        try:
            print(f"ok    {what}: {action()}")
        except (DkgError, OSError, ValueError, RuntimeError) as exc:
            failed += 1
            print(f"FAIL  {what}: {exc}")
    print(f"{PROG} check: {'all ok' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0


def serve(config, drain: float) -> int:
    from keras_dkg.gateway.server import Gateway

    gateway = Gateway(config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    gateway.start()
    print(f"{PROG}: ready on {config.listen[0]}:{config.listen[1]} as {config.aet}, PACS {config.pacs}", flush=True)
    while not stop.wait(0.5):
        pass
    emptied = gateway.stop(drain)
    print(f"{PROG}: stopped ({'spool empty' if emptied else f'{gateway.spool.depth()} instance(s) left in the spool'})",
          flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    for name, level in (("keras_dkg", args.log_level.upper()), ("pynetdicom", "WARNING")):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(level)

    def action() -> int:
        from keras_dkg.gateway.config import load_config

        config = load_config(args.config)
        return check(config) if args.action == "check" else serve(config, args.drain)

    return run_cli(PROG, action)


if __name__ == "__main__":
    sys.exit(main())
