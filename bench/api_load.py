"""Load: restore lookups from 20 concurrent clients against `auditor serve`'s API on loopback.

Run: .venv/bin/python bench/api_load.py [--clients 20] [--requests 50]

Builds the demo's week of exports, audits it into a SQLite catalog, serves the API with uvicorn on
127.0.0.1 and prints requests per second and latency percentiles for /api/restore, against
/healthz (the cheapest route) measured the same way in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from auditor.audit import AuditOptions
from auditor.config import load_settings
from auditor.demo import CLIENT_SECRET, WEB_EVENTS, demo_world, webhook_receiver
from auditor.runtime import Runtime
from auditor.service.app import create_app

TOKEN = "bench-read-token"


def hammer(url: str, clients: int, requests: int, headers: dict[str, str]) -> tuple[list[float], int, float]:
    """(latencies in seconds, errors, wall time) for `clients` threads each sending `requests`."""

    def one_client(_: int) -> tuple[list[float], int]:
        latencies, errors = [], 0
        with httpx.Client(headers=headers, timeout=30) as client:
            for _ in range(requests):
                start = time.perf_counter()
                response = client.get(url)
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200
        return latencies, errors

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one_client, range(clients)))
    wall = time.perf_counter() - start
    return [x for lat, _ in results for x in lat], sum(e for _, e in results), wall


def report(label: str, latencies: list[float], errors: int, wall: float) -> float:
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    rps = len(latencies) / wall
    print(f"  {label:<34} {len(latencies)} requests, {errors} errors, {rps:7.1f} req/s, p50 {statistics.median(ordered) * 1000:6.1f} ms, p99 {p99 * 1000:6.1f} ms")
    return rps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, webhook_receiver() as (hook, _), demo_world(Path(tmp), datetime.now(UTC), hook) as world:
        environ = {**os.environ, "DEMO_FLOW_SERVICE_SECRET": CLIENT_SECRET}
        import tomli_w

        from auditor.flows.sync import fetch_and_sync

        with Runtime(load_settings(world.config, environ)) as rt:
            (Path(tmp) / "flows.toml").write_text(tomli_w.dumps({"exports": fetch_and_sync(rt.flows_client(), rt.settings).exports}))
        text = world.config.read_text().replace("[catalog]", f'[service]\ntokens = [{{ name = "bench", token = "{TOKEN}" }}]\n\n[catalog]', 1)
        world.config.write_text(text)
        runtime = Runtime(load_settings(world.config, environ))
        runtime.audit(now=world.as_of, options=AuditOptions())
        app = create_app(runtime, clock=lambda: world.as_of)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        print(f"{args.clients} clients x {args.requests} requests each, loopback, one uvicorn worker")
        health = report("GET /healthz (baseline)", *hammer(f"{base}/healthz", args.clients, args.requests, headers))
        at = (world.start + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")  # a complete chain of 9 windows, 27 files
        restore = report("GET /api/restore", *hammer(f"{base}/api/restore?dataset={WEB_EVENTS}&at={at}", args.clients, args.requests, headers))
        print(f"RATIO restore lookups / healthz throughput: {restore / health:.2f}")
        server.should_exit = True
        thread.join(5)
        runtime.close()


if __name__ == "__main__":
    main()
