"""`auditor demo`: the whole product on an embedded default, in a temporary workspace.

The Flow Service emulator runs three dataset-export flows for a simulated week into a local Data
Landing Zone folder, with a few faults injected; then `flows sync`, an audit with its verdict, the
alerts that fired (to a webhook on 127.0.0.1), a restore lookup and the HTML evidence report.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from auditor.emulator.server import running
from auditor.emulator.state import World
from auditor.flows.client import FlowsClient
from auditor.flows.setup import create_dataset_export

DLZ = "10440537-2a7b-4583-ac39-ed38d4b848e8"
WEB_EVENTS = "5ef3e3259ad2a1191ab7dd7d"
PROFILES = "6a1b2c3d4e5f60718293a4b5"
ORDERS = "77aa88bb99cc00dd11ee22ff"
LOYALTY = "0a1b2c3d4e5f60718293a4b6"  # eligible, not exported: for a flow set up in the dashboard
CLIENT_ID = "auditor-demo"
CLIENT_SECRET = "demo-only-secret"  # the emulator's own credential, valid nowhere else


@dataclass
class DemoWorld:
    workspace: Path
    config: Path
    start: datetime
    as_of: datetime
    base_url: str
    flows: dict[str, str] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook endpoint on 127.0.0.1 that keeps what it receives (the demo's on-call pager)."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pager", received
    finally:
        server.shutdown()


@contextmanager
def demo_world(workspace: Path, now: datetime, webhook: str) -> Iterator[DemoWorld]:
    """The emulator with three flows run over the week before `now`, and a config that audits them."""
    as_of = now.replace(minute=30 if now.minute >= 30 else 0, second=0, microsecond=0)  # the last half hour, never ahead of now
    start = (as_of - timedelta(days=7)).replace(hour=0, minute=0)
    dlz = workspace / "landing-zone"
    world = World(CLIENT_ID, CLIENT_SECRET, dlz_url=dlz.as_uri(), now=start)
    world.datasets = [{"id": d, "name": n} for d, n in ((WEB_EVENTS, "Web events"), (PROFILES, "Profile snapshots"), (ORDERS, "Orders"), (LOYALTY, "Loyalty points"))]  # eligible for export
    with running(world) as base:
        client = FlowsClient(f"{base}/data/foundation/flowservice", ims_url=f"{base}/ims/token/v3", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, org_id="DEMO@AdobeOrg")
        demo = DemoWorld(workspace, workspace / "auditor.toml", start, as_of, base)
        specs = [
            ("web-events", WEB_EVENTS, "PARQUET", True, {"timeUnit": "hour", "interval": 6}),
            ("profiles", PROFILES, "JSON", False, {"timeUnit": "day", "interval": 1}),
            ("orders", ORDERS, "PARQUET", True, {"timeUnit": "hour", "interval": 12}),
        ]
        for name, dataset, fmt, manifest, every in specs:
            demo.flows[name] = create_dataset_export(
                client, name=name, connection_spec=DLZ, datasets=[dataset],
                target_params={"path": f"aep/{name}", "datasetFileType": fmt, "compression": "GZIP", "includeFileManifest": manifest},
                schedule={"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "startTime": int(start.timestamp()), **every},
            )
        injected = [
            ("web-events", start + timedelta(days=2, hours=6), "nothing_written", "web-events: the run reports success, but no file arrives (silent loss)"),
            ("web-events", start + timedelta(days=4, hours=12), "corrupt_file", "web-events: one Parquet file is cut short"),
            ("profiles", start + timedelta(days=3), "late_write", "profiles: the export lands 3 hours late"),
            ("profiles", start + timedelta(days=5), "zero_records", "profiles: no new data that day (a compliant empty window)"),
            ("orders", start + timedelta(days=1, hours=12), "failed", "orders: the run fails (ACTIVATION_BATCH-0000-FAILED)"),
        ]
        for flow, slot, kind, description in injected:
            httpx.post(f"{base}/emulator/faults", auth=(CLIENT_ID, CLIENT_SECRET), json={"flowId": demo.flows[flow], "slot": slot.isoformat(), "kind": kind}).raise_for_status()
            demo.faults.append(f"{slot:%Y-%m-%dT%H:%MZ} {description}")
        httpx.post(f"{base}/emulator/clock", auth=(CLIENT_ID, CLIENT_SECRET), json={"now": as_of.isoformat()}, timeout=120).raise_for_status()
        client.close()
        demo.config.write_text(
            f"""# written by `auditor demo`
include = ["flows.toml"]

[catalog]
url = "sqlite:///{workspace / 'catalog.db'}"

[flow_service]
base_url = "{base}/data/foundation/flowservice"
ims_url = "{base}/ims/token/v3"
client_id = "{CLIENT_ID}"
client_secret = "${{env:DEMO_FLOW_SERVICE_SECRET}}"
org_id = "DEMO@AdobeOrg"
dlz_destination = "landing-zone"

[[destinations]]
name = "landing-zone"
url = "{dlz.as_uri()}"

[[channels]]
name = "pager"
kind = "webhook"
url = "{webhook}"

[[alerts]]
name = "missed-or-broken"
when = "missing"
channels = ["pager"]

[[alerts]]
name = "corrupt"
when = "invalid"
channels = ["pager"]
""",
            encoding="utf-8",
        )
        (workspace / "flows.toml").write_text("", encoding="utf-8")
        yield demo


def tell(workspace: str | None, echo: Callable[[str], None], *, serve: bool = False) -> None:
    """The demo's story: emulated flows with faults, `flows sync`, an audit, the alerts, a restore lookup;
    with `serve`, then the dashboard on loopback until Ctrl-C (see `serve_dashboard`)."""
    import os
    import tempfile

    import tomli_w

    from auditor.audit import AuditOptions
    from auditor.config import load_settings
    from auditor.flows.sync import fetch_and_sync
    from auditor.render import render_plan, render_report
    from auditor.report import iso
    from auditor.restore import plan_restore
    from auditor.runtime import Runtime

    folder = Path(workspace) if workspace else Path(tempfile.mkdtemp(prefix="auditor-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, "DEMO_FLOW_SERVICE_SECRET": CLIENT_SECRET}
    with webhook_receiver() as (hook, pages), demo_world(folder, datetime.now(UTC), hook) as world:
        echo(f"Demo workspace: {folder}")
        echo(f"Flow Service emulator at {world.base_url}: 3 dataset-export flows ran from {iso(world.start)} to {iso(world.as_of)}.")
        echo("Injected faults:")
        for fault in world.faults:
            echo(f"  - {fault}")
        with Runtime(load_settings(world.config, environ)) as rt:
            synced = fetch_and_sync(rt.flows_client(), rt.settings)
        (folder / "flows.toml").write_text(tomli_w.dumps({"exports": synced.exports}), encoding="utf-8")
        echo(f"\n$ auditor flows sync  ->  {len(synced.exports)} exports written to {folder / 'flows.toml'}\n")
        with Runtime(load_settings(world.config, environ)) as rt:
            report = rt.audit(now=world.as_of, options=AuditOptions())
            assert report is not None
            echo(render_report(report, "table"))
            rt.deliver(world.as_of)
            echo(f"Alerts that fired ({len(pages)}, delivered to the webhook at {hook}):")
            for page in pages:
                echo(f"  - [{page['rule']}] {page['text']}")
            echo(f"\n$ auditor restore {WEB_EVENTS} --at {iso(world.as_of)}")
            echo(render_plan(plan_restore(rt.settings, rt.catalog, WEB_EVENTS, world.as_of), "table"))
        html = folder / "evidence.html"
        html.write_text(render_report(report, "html"), encoding="utf-8")
        echo(f"Evidence report: {html}")
        if serve:
            serve_dashboard(world, environ, echo)
            return
        echo(f"Next: auditor audit --config {world.config} --as-of {iso(world.as_of)}  (with DEMO_FLOW_SERVICE_SECRET set; the emulator stops with the demo)")


def serve_dashboard(world: DemoWorld, environ: dict[str, str], echo: Callable[[str], None], *, clock_every: float = 30.0) -> None:
    """Keep the emulator and serve the dashboard on 127.0.0.1 until Ctrl-C (SIGINT) or SIGTERM.

    Sign-in is by a random admin token made for this run only (given to the config by reference,
    never written to it); the emulator's clock follows the wall clock, so a flow set up in the
    dashboard runs at its slots."""
    import secrets
    import socket

    import uvicorn

    from auditor.config import load_settings
    from auditor.runtime import Runtime
    from auditor.service.app import create_app
    from auditor.service.worker import Worker

    token = secrets.token_urlsafe(24)
    with world.config.open("a", encoding="utf-8") as config:
        config.write('\n[service]\ntokens = [{ name = "demo", token = "${env:DEMO_SIGN_IN_TOKEN}", role = "admin" }]\n')
    environ = {**environ, "DEMO_SIGN_IN_TOKEN": token}
    stop = threading.Event()

    def follow_wall_clock() -> None:
        while not stop.wait(clock_every):
            try:
                now = datetime.now(UTC).replace(microsecond=0)
                httpx.post(f"{world.base_url}/emulator/clock", auth=(CLIENT_ID, CLIENT_SECRET), json={"now": now.isoformat()}, timeout=120)
            except httpx.HTTPError:
                pass  # the next turn tries again

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Runtime(load_settings(world.config, environ)) as rt:
        worker = Worker(rt)
        worker.start()
        ticker = threading.Thread(target=follow_wall_clock, daemon=True, name="demo-clock")
        ticker.start()
        server = uvicorn.Server(uvicorn.Config(create_app(rt, worker), host="127.0.0.1", port=port, log_level="warning"))
        echo(f"\nDashboard: http://127.0.0.1:{port}/   (set up an export: http://127.0.0.1:{port}/setup)")
        echo(f"Sign-in token (admin, valid for this run only): {token}")
        echo("The emulator keeps running and follows the wall clock. Ctrl-C stops everything.")
        try:
            server.run()  # returns on SIGINT / SIGTERM
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the Ctrl-C it handled
        finally:
            stop.set()
            worker.stop()
            ticker.join(5)
        echo("Stopped: the dashboard, the worker and the emulator.")
