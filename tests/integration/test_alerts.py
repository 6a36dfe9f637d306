"""Alerts over a simulated clock: one alert per missed window (also after a restart), one recovery
when it lands late, HMAC-signed webhooks, a flaky channel retried, a broken one reported."""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from auditor.audit import AuditOptions
from auditor.catalog.repository import open_catalog
from auditor.cli import execute_audit
from auditor.config import Settings, load_settings
from auditor.report import AuditReport
from auditor.service.worker import Worker
from tests.conftest import Tree, t

KEY = "webhook-hmac-key-for-tests"


class Receiver:
    """A webhook endpoint on 127.0.0.1 that checks signatures and answers from a script."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.script = list(script or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(KEY.encode(), body, sha256).hexdigest()
                if not hmac.compare_digest(self.headers.get("X-Auditor-Signature", ""), expected):
                    receiver.bad_signatures += 1
                status = receiver.script.pop(0) if receiver.script else 200
                if status == 200:
                    receiver.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    flaky, broken = Receiver(script=[500, 503]), Receiver(script=[400] * 10)
    yield flaky, broken
    for r in (flaky, broken):
        r.server.shutdown()


def config_for(tree: Tree, tmp_path: Path, flaky: Receiver, broken: Receiver, catalog_url: str | None = None) -> Settings:
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "{catalog_url or f"sqlite:///{tmp_path / 'c.db'}"}"

[[channels]]
name = "oncall"
kind = "webhook"
url = "{flaky.url}"
secret = "{KEY}"
retries = 3

[[channels]]
name = "broken"
kind = "webhook"
url = "{broken.url}"
secret = "{KEY}"

[[alerts]]
name = "missed"
when = "missing"
channels = ["oncall", "broken"]

[[destinations]]
name = "d"
url = "{tree.url}"
audit_every = "15m"

[[exports]]
name = "web"
destination = "d"
datasets = ["ds"]
format = "parquet"
manifest = true
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }}
"""
    )
    return load_settings(config, {})


def audit_fn(settings: Settings, now: datetime, exports: frozenset[str]) -> AuditReport:
    return execute_audit(settings, now=now, options=AuditOptions(only_exports=exports), progress=False)


def test_a_missed_window_alerts_once_and_recovers_once_when_it_lands_late(tree: Tree, tmp_path: Path, receivers: tuple[Receiver, Receiver], catalog_url: str) -> None:
    flaky, broken = receivers
    settings = config_for(tree, tmp_path, flaky, broken, catalog_url)
    if catalog_url.startswith("postgresql"):
        from auditor.catalog.engine import make_engine, upgrade

        upgrade(make_engine(catalog_url))
    tree.export("ds", t("2026-11-27T00:00"))
    catalog = open_catalog(settings.catalog.url)
    clock = {"now": t("2026-11-27T05:00")}
    sleeps: list[float] = []

    def worker() -> Worker:
        return Worker(settings, catalog, audit_fn, clock=lambda: clock["now"], sleep=sleeps.append)

    first = worker()
    assert first.run_once() is True
    assert len(flaky.received) == 1 and flaky.received[0]["rule"] == "missed" and flaky.received[0]["scheduled"] == "2026-11-27T03:00:00Z"
    assert "missing" in flaky.received[0]["text"] and flaky.bad_signatures == 0
    assert len(sleeps) == 2  # two transient failures (500, 503), retried with backoff, then delivered

    clock["now"] = t("2026-11-27T05:10")
    assert first.run_once() is False  # not due yet (15 min), nothing pending
    clock["now"] = t("2026-11-27T05:20")
    assert first.run_once() is True  # audited again: still missing, no second alert
    restarted = worker()  # a new process: the alert state lives in the catalog
    clock["now"] = t("2026-11-27T05:40")
    restarted.run_once()
    assert len(flaky.received) == 1

    tree.export("ds", t("2026-11-27T03:00"), landed=t("2026-11-27T05:50"))  # it lands, late
    clock["now"] = t("2026-11-27T06:00")
    restarted.run_once()
    assert len(flaky.received) == 2
    recovery = flaky.received[1]
    assert recovery["rule"] == "missed" and "landed late" in recovery["text"] and recovery["scheduled"] == "2026-11-27T03:00:00Z"

    clock["now"] = t("2026-11-27T06:30")
    restarted.run_once()
    assert len(flaky.received) == 2  # nothing more: one alert, one recovery

    notices = catalog.notices()
    on_broken = [n for n in notices if n["channel"] == "broken"]
    assert {n["state"] for n in on_broken} == {"failed"} and all("400" in n["last_error"] for n in on_broken)
    assert all(n["attempts"] == 1 for n in on_broken)  # a permanent failure is not retried
    assert {(n["kind"], n["state"]) for n in notices if n["channel"] == "oncall"} == {("alert", "delivered"), ("recovery", "delivered")}
    assert broken.received == [] and broken.bad_signatures == 0


def test_an_apprise_url_delivers_through_apprise() -> None:
    from auditor.alerts import notifier_for
    from auditor.alerts.base import AlertError, deliver

    receiver = Receiver()
    try:
        port = receiver.server.server_address[1]
        attempts, error = deliver(notifier_for("apprise", url=f"json://127.0.0.1:{port}/hook"), "web: missing", {"title": "export-auditor: missed"}, retries=0)
        assert (attempts, error) == (1, None)
        assert receiver.received and receiver.received[0]["message"] == "web: missing" and receiver.received[0]["title"] == "export-auditor: missed"
        with pytest.raises(AlertError) as raised:
            notifier_for("apprise", url="not a url at all")
        assert raised.value.permanent
    finally:
        receiver.server.shutdown()


def test_auditor_serve_runs_as_a_process(tree: Tree, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    import httpx

    from tests.servers import free_port

    tree.export("ds", t("2026-11-27T00:00"))
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[service]
tokens = [{{ name = "ops", token = "${{env:OPS_TOKEN}}", role = "admin" }}]
[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[[destinations]]
name = "d"
url = "{tree.url}"
[[exports]]
name = "web"
destination = "d"
datasets = ["ds"]
format = "parquet"
schedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-28T00:00:00Z" }}
"""
    )
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "auditor", "serve", "--config", str(config), "--port", str(port)], env={"OPS_TOKEN": "ops-token", "PATH": "/usr/bin:/bin"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                if health.json().get("last_audit"):
                    break  # the worker has audited once
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
        compliance = httpx.get(f"http://127.0.0.1:{port}/api/compliance", headers={"Authorization": "Bearer ops-token"}, timeout=10).json()
        assert compliance["status"] == "compliant" and compliance["windows"] == {"ok": 1}
    finally:
        process.terminate()
        process.wait(15)


def test_a_channel_that_keeps_failing_is_given_up_and_reported(tree: Tree, tmp_path: Path) -> None:
    down = Receiver(script=[503] * 100)
    try:
        settings = config_for(tree, tmp_path, down, down)
        catalog = open_catalog(settings.catalog.url)
        clock = {"now": t("2026-11-27T05:00")}
        worker = Worker(settings, catalog, audit_fn, clock=lambda: clock["now"], sleep=lambda _: None)
        for minute in range(0, 60, 5):  # the worker loop keeps trying, a bounded number of times
            clock["now"] = t("2026-11-27T05:00") + timedelta(minutes=minute)
            worker.run_once()
        notices = catalog.notices()
        assert notices and {n["state"] for n in notices} == {"failed"}
        assert all(n["attempts"] == 20 and "503" in n["last_error"] for n in notices if n["channel"] == "oncall")
        assert worker.deliver_pending(clock["now"]) is False  # nothing left to try
    finally:
        down.server.shutdown()
