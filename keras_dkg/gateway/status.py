"""Counts (received, stored, forwarded, retried, quarantined, refused, retrieved, queue depth) and
a small HTTP endpoint on loopback that serves them as JSON: `GET /status`."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAMES = ("received", "stored", "refused", "forwarded", "retried", "quarantined", "found", "retrieved", "moved")


class Counters:
    def __init__(self):
        self._lock = threading.Lock()
        self._values = dict.fromkeys(NAMES, 0)

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class StatusServer:
    """Serve `report()` as JSON on `address` (loopback; config.py refuses anything else)."""

    def __init__(self, address: tuple[str, int], report: Callable[[], dict]):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path.rstrip("/") not in ("", "/status"):
                    self.send_error(404)
                    return
                body = json.dumps(report(), sort_keys=True).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet: the gateway logs what matters
                pass

        self.server = ThreadingHTTPServer(address, Handler)
        self.server.daemon_threads = True
        self.address = self.server.server_address
        self._thread = threading.Thread(target=self.server.serve_forever, name="dkg-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
