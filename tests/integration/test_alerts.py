"""Alerts as episodes over a simulated clock: one alert per episode and channel (also across
restarts), one recovery when the condition clears, a new episode when it comes back; delivery that
is claimed, backed off, recorded attempt by attempt and given up by age; signed webhooks."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from auditor.alerts.webhook import verify
from auditor.config import Settings, load_settings
from auditor.runtime import Runtime
from auditor.service.worker import Worker
from tests.conftest import HTTP, Tree, t

KEY = "webhook-hmac-key-for-tests"


class Receiver:
    """A webhook endpoint on 127.0.0.1: checks signatures, answers from a script or `down`."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.hits = 0
        self.script = list(script or [])
        self.down = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.hits += 1
                if not verify(KEY, body, self.headers.get("X-Auditor-Signature", ""), now=time.time()):
                    receiver.bad_signatures += 1
                status = 503 if receiver.down else (receiver.script.pop(0) if receiver.script else 200)
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


def config_for(tree: Tree, tmp_path: Path, oncall: Receiver, broken: Receiver, catalog_url: str | None = None, *, give_up_after: str = "24h") -> Settings:
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "{catalog_url or f"sqlite:///{tmp_path / 'c.db'}"}"

[validation]
isolate = false

[[channels]]
name = "oncall"
kind = "webhook"
url = "{oncall.url}"
secret = "{KEY}"
give_up_after = "{give_up_after}"

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


class Service:
    """One `auditor serve` process's worker over a simulated clock; `restart()` is a new process."""

    def __init__(self, settings: Settings, start: datetime) -> None:
        self.settings, self.now = settings, start
        self.runtime = Runtime(settings)
        self.worker = Worker(self.runtime, clock=lambda: self.now)

    def at(self, when: datetime) -> bool:
        self.now = when
        return self.worker.run_once()

    def restart(self) -> None:
        self.runtime.close()
        self.runtime = Runtime(self.settings)
        self.worker = Worker(self.runtime, clock=lambda: self.now)

    def close(self) -> None:
        self.runtime.close()


def upgraded(url: str) -> str:
    if url.startswith("postgresql"):
        from auditor.catalog.engine import make_engine, upgrade

        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    return url


def test_an_episode_alerts_once_recovers_once_and_a_new_episode_alerts_again(tree: Tree, tmp_path: Path, receivers: tuple[Receiver, Receiver], catalog_url: str) -> None:
    flaky, broken = receivers
    settings = config_for(tree, tmp_path, flaky, broken, upgraded(catalog_url))
    tree.export("ds", t("2026-11-27T00:00"))
    tree.export("ds", t("2026-11-27T06:00"))  # on time (modified 06:10: not there yet for earlier as-of times)
    service = Service(settings, t("2026-11-27T05:00"))
    try:
        assert service.at(t("2026-11-27T05:00")) is True  # audited: 03:00 is missing; the first delivery answers 500
        assert flaky.received == []
        service.at(t("2026-11-27T05:01"))  # retried with backoff: 503
        service.at(t("2026-11-27T05:03"))  # delivered
        assert len(flaky.received) == 1 and flaky.received[0]["rule"] == "missed" and flaky.received[0]["scheduled"] == "2026-11-27T03:00:00Z"
        assert "missing" in flaky.received[0]["text"] and flaky.bad_signatures == 0

        assert service.at(t("2026-11-27T05:10")) is False  # not due yet (15 min), nothing due to deliver
        service.at(t("2026-11-27T05:20"))  # audited again: still missing, the same episode
        service.restart()  # a new process: the episode lives in the catalog
        service.at(t("2026-11-27T05:40"))
        assert len(flaky.received) == 1

        landed = tree.export("ds", t("2026-11-27T03:00"), landed=t("2026-11-27T05:50"))  # it lands, late
        service.at(t("2026-11-27T06:00"))
        assert len(flaky.received) == 2
        recovery = flaky.received[1]
        assert recovery["kind"] == "recovery" and "landed late" in recovery["text"] and recovery["scheduled"] == "2026-11-27T03:00:00Z"
        service.at(t("2026-11-27T06:30"))
        assert len(flaky.received) == 2  # nothing more for that episode

        shutil.rmtree(landed[0].parent)  # later the backup is deleted: the same window is missing again
        service.at(t("2026-11-27T07:00"))
        assert len(flaky.received) == 3
        again = flaky.received[2]
        assert again["kind"] == "alert" and again["scheduled"] == "2026-11-27T03:00:00Z"
        assert len({r["notice_id"] for r in flaky.received}) == 3

        catalog = service.runtime.catalog
        episodes = [e for e in catalog.episodes() if e.key == "missed|web|ds|2026-11-27T03:00:00Z"]
        assert len(episodes) == 2 and sum(e.closed_at is None for e in episodes) == 1
        on_broken = [n for n in catalog.notices() if n.channel == "broken"]
        assert {n.state for n in on_broken} == {"failed"} and all("400" in (n.last_error or "") for n in on_broken)
        assert all(n.attempts == 1 for n in on_broken)  # a permanent failure is not retried
        first_alert = next(n for n in catalog.notices() if n.channel == "oncall" and n.kind == "alert" and n.episode_id == min(e.id for e in episodes))
        assert [outcome for _, outcome, _ in catalog.attempts(first_alert.id)] == ["retry", "retry", "delivered"]
        assert broken.received == [] and broken.bad_signatures == 0
    finally:
        service.close()


def test_a_webhook_down_for_ten_minutes_gets_the_notice_once_when_it_returns(tree: Tree, tmp_path: Path) -> None:
    pager, other = Receiver(), Receiver()
    try:
        settings = config_for(tree, tmp_path, pager, other)
        tree.export("ds", t("2026-11-27T00:00"))
        pager.down = True
        service = Service(settings, t("2026-11-27T05:00"))
        start = t("2026-11-27T05:00")
        for minute in range(11):  # down from 05:00 to 05:10
            service.at(start + timedelta(minutes=minute))
        assert pager.received == [] and pager.hits >= 3
        attempts_while_down = pager.hits
        pager.down = False
        for minute in range(11, 40):
            service.at(start + timedelta(minutes=minute))
        assert len(pager.received) == 1 and pager.received[0]["scheduled"] == "2026-11-27T03:00:00Z"
        assert attempts_while_down < 11  # backed off, not hammered once a minute
        notice = next(n for n in service.runtime.catalog.notices() if n.channel == "oncall")
        assert notice.state == "delivered" and notice.attempts == pager.hits
        service.close()
    finally:
        pager.server.shutdown()
        other.server.shutdown()


def test_a_notice_is_given_up_by_age_and_shown_as_failed(tree: Tree, tmp_path: Path) -> None:
    down, refusing = Receiver(), Receiver(script=[400] * 10)
    down.down = True
    try:
        settings = config_for(tree, tmp_path, down, refusing, give_up_after="30m")
        tree.export("ds", t("2026-11-27T00:00"))
        service = Service(settings, t("2026-11-27T05:00"))
        for minute in range(0, 120, 2):
            service.at(t("2026-11-27T05:00") + timedelta(minutes=minute))
        failed = service.runtime.catalog.notices(state="failed")
        assert {n.channel for n in failed} == {"oncall", "broken"}
        oncall = next(n for n in failed if n.channel == "oncall")
        assert "503" in (oncall.last_error or "") and oncall.attempts >= 4
        last_try = service.runtime.catalog.attempts(oncall.id)[-1][0]
        assert last_try - oncall.created_at <= timedelta(minutes=30)
        hits = down.hits
        service.at(t("2026-11-27T06:59"))  # (the 06:00 window's deadline is 07:00)
        assert down.hits == hits  # nothing left to try
        service.close()
    finally:
        down.server.shutdown()
        refusing.server.shutdown()


def test_a_captured_notice_cannot_be_replayed_or_altered() -> None:
    from auditor.alerts.webhook import signature

    body = b'{"notice_id": 7, "text": "web / ds: missing"}'
    header = signature(KEY, body, 1_700_000_000)
    assert verify(KEY, body, header, now=1_700_000_010)
    assert not verify(KEY, body, header, now=1_700_000_000 + 3600)  # replayed an hour later
    assert not verify(KEY, body.replace(b"7", b"8"), header, now=1_700_000_010)  # another notice id
    assert not verify("another key", body, header, now=1_700_000_010)
    assert not verify(KEY, body, "sha256=abc", now=1_700_000_010)


def test_an_apprise_url_delivers_through_apprise() -> None:
    from auditor.alerts import notifier_for
    from auditor.alerts.base import AlertError

    receiver = Receiver()
    try:
        port = receiver.server.server_address[1]
        notifier_for("apprise", url=f"json://127.0.0.1:{port}/hook").notify("web: missing", {"title": "export-auditor: missed"}, notice_id=1, sent_at=t("2026-11-27T05:00"))
        assert receiver.received and receiver.received[0]["message"] == "web: missing" and receiver.received[0]["title"] == "export-auditor: missed"
        with pytest.raises(AlertError) as raised:
            notifier_for("apprise", url="not a url at all")
        assert raised.value.permanent
    finally:
        receiver.server.shutdown()


def test_auditor_serve_runs_as_a_process(tree: Tree, tmp_path: Path) -> None:
    import subprocess
    import sys

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
        deadline = time.monotonic() + 90  # a process start-up and one audit; generous for a loaded machine, it ends as soon as the audit is seen
        while True:
            try:
                health = HTTP.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                if health.json().get("last_audit"):
                    break  # the worker has audited once
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
        compliance = HTTP.get(f"http://127.0.0.1:{port}/api/compliance", headers={"Authorization": "Bearer ops-token"}, timeout=10).json()
        assert compliance["status"] == "compliant" and compliance["windows"] == {"ok": 1}
        process.terminate()  # SIGTERM, as systemd, Kubernetes and `docker stop` send it: a clean stop, not death by the signal
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(15)


def test_a_claim_is_exclusive_whatever_the_claimer_clock_and_a_lost_lease_is_recorded(catalog_url: str) -> None:
    from sqlalchemy import update

    from auditor.catalog.repository import NOTICES, open_catalog

    catalog = open_catalog(upgraded(catalog_url))
    now = t("2026-11-27T05:00")
    assert catalog.open_episode("k", rule="r", export="e", dataset="d", scheduled=None, message="m", payload={}, channels=["c1", "c2"], now=now, audit_id=None)
    first = catalog.claim_notices(now, holder="a", lease=timedelta(minutes=2))
    assert len(first) == 2
    assert catalog.claim_notices(now + timedelta(minutes=10), holder="b", lease=timedelta(minutes=2)) == []  # a later clock cannot take them

    with catalog.engine.begin() as conn:  # a's process stalls: its lease runs out
        conn.execute(update(NOTICES).values(lease_until=t("2000-01-01T00:00")))
    assert not catalog.renew_lease(first[0].id, holder="a", lease=timedelta(minutes=2))  # a would skip the send
    second = catalog.claim_notices(now, holder="b", lease=timedelta(minutes=2))
    assert [n.id for n in second] == [n.id for n in first]
    assert catalog.record_attempt(first[0].id, holder="a", now=now, error=None, permanent=False, retry_at=None) == "lost"
    assert catalog.record_attempt(first[0].id, holder="b", now=now, error=None, permanent=False, retry_at=None) == "delivered"
    assert [outcome for _, outcome, _ in catalog.attempts(first[0].id)] == ["lost-lease", "delivered"]
    assert next(n for n in catalog.notices() if n.id == first[0].id).attempts == 1
    catalog.close()
