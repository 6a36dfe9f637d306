"""A small fault-injecting HTTP proxy of our own, put in front of a storage emulator.

Each request is answered by the next step of a plan, or passed through when the plan is empty:
a status with a body (throttling, access denied), or "drop" (the connection is closed without an
answer). The proxy counts what it saw, by method and query, so tests can assert request counts.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (503, b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>')
ACCESS_DENIED = (403, b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>')
SERVER_BUSY = (503, b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>')


@dataclass
class FaultPlan:
    """What to do with the next requests: a list of steps; `forever` repeats the last one."""

    steps: list[tuple[int, bytes] | str] = field(default_factory=list)
    forever: tuple[int, bytes] | str | None = None
    only: Callable[[str, str], bool] | None = None  # which requests the plan applies to (default: all)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path?query)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, method: str, path: str) -> tuple[int, bytes] | str | None:
        with self.lock:
            self.seen.append((method, path))
            if self.only is not None and not self.only(method, path):
                return None
            if self.steps:
                return self.steps.pop(0)
            return self.forever

    def clear(self) -> None:
        with self.lock:
            self.steps, self.forever, self.only = [], None, None
            self.seen.clear()


@contextmanager
def fault_proxy(upstream: str) -> Iterator[tuple[str, FaultPlan]]:
    target = urlsplit(upstream)
    plan = FaultPlan()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            step = plan.next(self.command, self.path)
            if step == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if isinstance(step, tuple):
                status, payload = step
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{target.path}", plan
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def tcp_cutter(port: int, *, cut_after: int) -> Iterator[tuple[int, list[int]]]:
    """A TCP relay to 127.0.0.1:`port` that closes each connection once the server sent `cut_after` bytes."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    cuts: list[int] = []
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while not stop.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) > limit:
                    sink.sendall(data[: limit - sent])
                    cuts.append(limit)
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", port))
            threading.Thread(target=pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, cut_after), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], cuts
    finally:
        stop.set()
        listener.close()
