"""Run the emulator: in a thread (tests, the demo) or in the foreground (`auditor emulator serve`)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from auditor.emulator.app import create_app
from auditor.emulator.state import World


def serve(world: World, *, host: str = "127.0.0.1", port: int = 0) -> None:
    uvicorn.run(create_app(world), host=host, port=port, log_level="warning")


@contextmanager
def running(world: World, *, host: str = "127.0.0.1") -> Iterator[str]:
    """The emulator on a free port in a background thread; yields its base URL."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(world), host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the emulator did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
