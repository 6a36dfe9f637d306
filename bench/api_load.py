"""Load: restore lookups from 20 concurrent clients against `auditor serve`'s API on loopback.

Run: .venv/bin/python bench/api_load.py [--clients 20] [--requests 250] [--processes 1]

Builds the demo's week of exports, audits it into a SQLite catalog, serves the API with uvicorn on
127.0.0.1 in a process of its own (so the clients do not share its interpreter lock), or in
`--processes` processes sharing one port as `auditor serve --reuse-port` does, and prints
requests per second, latency percentiles and the server processes' CPU time per request for
/api/restore, against /healthz (the cheapest route) measured the same way in the same run. The
clients are autocannon's (Node, `npm ci` installs it: 20 keep-alive connections in one process that
costs the machine little); without it, Python threads, which share one interpreter lock and so time
their own queueing as much as the server's (the report says which client measured).
Each client sends 250 requests by default (5,000 in all), so that the p99 is the server's steady
state: in a run of 1,000, the tenth-slowest request falls in autocannon's start of run (measured on
a million-file catalog, same server, one after the other: 20 × 50 requests p99 80-121 ms, max in the
first requests; 20 × 250 p99 31-36 ms; a plain Node keep-alive client, 20 × 50, p99 30-31 ms).
bench/catalog_bench.py uses `serve_app`, `hammer` and `server_cpu` for its million-file catalog.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import uvicorn

from auditor.audit import AuditOptions
from auditor.config import load_settings
from auditor.demo import CLIENT_SECRET, WEB_EVENTS, demo_world, webhook_receiver
from auditor.runtime import Runtime
from auditor.service.app import create_app

TOKEN = "bench-read-token"
CANNON = Path(__file__).resolve().parent / "cannon.js"
NODE_MODULES = Path(__file__).resolve().parents[1] / "node_modules"


@dataclass(frozen=True)
class Load:
    """What one load run measured."""

    requests: int
    errors: int  # not 200, or no answer
    seconds: float
    p50_ms: float
    p99_ms: float
    client: str
    max_ms: float | None = None  # the slowest request (autocannon's)


def hammer(url: str | Callable[[int, int], str], clients: int, requests: int, headers: dict[str, str]) -> Load:
    """`clients` concurrent clients each sending `requests` GETs (`url`: one URL, or the URL of client c's i-th
    request): autocannon when `npm ci` installed it, else Python threads."""
    urls = [url if isinstance(url, str) else url(c, i) for i in range(requests) for c in range(clients)]
    if (NODE_MODULES / "autocannon").is_dir() and shutil.which("node"):
        return _cannon(urls, clients, headers)
    latencies, errors, wall = _threads(url, clients, requests, headers)
    p50, p99 = percentiles(latencies)
    return Load(len(latencies), errors, wall, p50 * 1000, p99 * 1000, "Python threads")


def _cannon(urls: Sequence[str], clients: int, headers: dict[str, str]) -> Load:
    parts = urlsplit(urls[0])
    paths = [urlsplit(u)._replace(scheme="", netloc="").geturl() for u in urls]
    if len(set(paths)) == 1:
        paths = paths[:1]
    config = {"url": f"{parts.scheme}://{parts.netloc}", "connections": clients, "amount": len(urls), "headers": headers, "paths": paths}
    done = subprocess.run(["node", str(CANNON)], input=json.dumps(config), capture_output=True, text=True, check=False, env={**os.environ, "NODE_PATH": str(NODE_MODULES)})
    if done.returncode != 0:
        raise SystemExit(f"autocannon failed: {done.stderr[-2000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return Load(found["requests"], found["non2xx"] + found["errors"], found["seconds"], found["p50"], found["p99"], "autocannon", found["max"])


def _threads(url: str | Callable[[int, int], str], clients: int, requests: int, headers: dict[str, str]) -> tuple[list[float], int, float]:
    """(latencies in seconds, errors, wall time) for `clients` threads each sending `requests`."""

    def one_client(c: int) -> tuple[list[float], int]:
        latencies, errors = [], 0
        with httpx.Client(headers=headers, timeout=30) as client:
            client.get(url if isinstance(url, str) else url(c, 0))  # connected before the clock starts
            for i in range(requests):
                target = url if isinstance(url, str) else url(c, i)
                start = time.perf_counter()
                response = client.get(target)
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200
        return latencies, errors

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one_client, range(clients)))
    wall = time.perf_counter() - start
    return [x for lat, _ in results for x in lat], sum(e for _, e in results), wall


def percentiles(latencies: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) of the latencies."""
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


def report(label: str, load: Load, cpu: float) -> float:
    rps = load.requests / load.seconds
    print(
        f"  {label:<34} {load.requests} requests, {load.errors} errors, {rps:7.1f} req/s, p50 {load.p50_ms:6.1f} ms, p99 {load.p99_ms:6.1f} ms, "
        f"server CPU {cpu:.2f} ms/request ({load.client})"
    )
    return rps


_SERVERS: dict[str, list[subprocess.Popen[str]]] = {}


def server_cpu(base: str) -> float:
    """CPU seconds (user + system, all threads) the server processes behind `base` (from serve_app) have used so far."""
    total = 0.0
    for server in _SERVERS[base]:
        assert server.stdout is not None
        server.send_signal(signal.SIGUSR1)
        line = server.stdout.readline()
        if not line.startswith("CPU "):
            raise SystemExit(f"the API server did not say its CPU time ({line!r})")
        total += float(line.split()[1])
    return total


def hammer_cpu(base: str, url: str | Callable[[int, int], str], clients: int, requests: int, headers: dict[str, str]) -> tuple[Load, float]:
    """hammer(), and the server's CPU milliseconds per request meanwhile."""
    before = server_cpu(base)
    load = hammer(url, clients, requests, headers)
    return load, (server_cpu(base) - before) * 1000 / max(load.requests, 1)


@contextmanager
def serve_app(config: Path, token: str, *, clock: datetime, environ: dict[str, str] | None = None, processes: int = 1) -> Iterator[str]:
    """The service's app (`create_app`, as `auditor serve` builds it, without its audit worker) in uvicorn
    on a free loopback port, in `processes` processes of its own sharing that port (as `auditor serve
    --reuse-port` does); yields its base URL."""
    servers: list[subprocess.Popen[str]] = []
    base, port = "", 0
    try:
        for _ in range(processes):
            command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(config), "--clock", clock.isoformat(), "--port", str(port)]
            server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environ)
            servers.append(server)
            assert server.stdout is not None
            line = server.stdout.readline()
            if not line.startswith("PORT "):
                raise SystemExit(f"the API server did not start (exit {server.wait()})")
            port = int(line.split()[1])
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as client:
            client.get(f"{base}/healthz").raise_for_status()
        _SERVERS[base] = servers
        yield base
    finally:
        _SERVERS.pop(base, None)
        for server in servers:
            server.terminate()
            server.wait(10)


def _serve(config: Path, clock: datetime, port: int) -> None:
    """The server side of serve_app: listens on `port` (0: a free one) shared with other processes, prints
    "PORT n" once listening, then serves until terminated; on SIGUSR1 prints "CPU s", the CPU seconds this
    process has used."""
    from auditor.cli import shared_socket

    signal.signal(signal.SIGUSR1, lambda _signal, _frame: print(f"CPU {time.process_time()}", flush=True))
    runtime = Runtime(load_settings(config, dict(os.environ)))
    runtime.catalog  # noqa: B018 - refuse to start without a catalog
    listening = shared_socket("127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(create_app(runtime, clock=lambda: clock), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    print(f"PORT {listening.getsockname()[1]}", flush=True)
    thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=250, help="requests per client (the p99 of 5,000 in all is the steady state's)")
    parser.add_argument("--processes", type=int, default=1, help="API server processes sharing the port (as `auditor serve --reuse-port`)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # serve_app's server process
    parser.add_argument("--clock", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, datetime.fromisoformat(args.clock), args.port)
        return
    with tempfile.TemporaryDirectory() as tmp, webhook_receiver() as (hook, _), demo_world(Path(tmp), datetime.now(UTC), hook) as world:
        environ = {**os.environ, "DEMO_FLOW_SERVICE_SECRET": CLIENT_SECRET}
        import tomli_w

        from auditor.flows.sync import fetch_and_sync

        with Runtime(load_settings(world.config, environ)) as rt:
            (Path(tmp) / "flows.toml").write_text(tomli_w.dumps({"exports": fetch_and_sync(rt.flows_client(), rt.settings).exports}))
        text = world.config.read_text().replace("[catalog]", f'[service]\ntokens = [{{ name = "bench", token = "{TOKEN}" }}]\n\n[catalog]', 1)
        world.config.write_text(text)
        with Runtime(load_settings(world.config, environ)) as runtime:
            runtime.audit(now=world.as_of, options=AuditOptions())
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with serve_app(world.config, TOKEN, clock=world.as_of, environ=environ, processes=args.processes) as base:
            print(f"{args.clients} clients x {args.requests} requests each, loopback, {args.processes} uvicorn process(es) of their own on one port")
            health = report("GET /healthz (baseline)", *hammer_cpu(base, f"{base}/healthz", args.clients, args.requests, headers))
            at = (world.start + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")  # a complete chain of 9 windows, 27 files
            restore = report("GET /api/restore", *hammer_cpu(base, f"{base}/api/restore?dataset={WEB_EVENTS}&at={at}", args.clients, args.requests, headers))
            print(f"RATIO restore lookups / healthz throughput: {restore / health:.2f}")


if __name__ == "__main__":
    main()
