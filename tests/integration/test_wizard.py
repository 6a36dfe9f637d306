"""Set up an export from the dashboard and verify it, in headless Chromium against the Flow Service
emulator (a Data Landing Zone destination in a temporary folder), driving the emulator's clock; and
`auditor demo --serve` starting, answering and stopping on SIGINT."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from auditor.config import load_settings
from auditor.emulator.server import running
from auditor.emulator.state import World
from auditor.runtime import Runtime
from auditor.service.app import create_app
from tests.integration.test_dashboard import browser  # noqa: F401 - the fixture
from tests.servers import free_port

ADMIN, READ = "wizard-admin-token", "wizard-read-token"
CLIENT, SECRET = "auditor-test", "emulator-client-secret-value"
WEB, ORDERS = "5ef3e3259ad2a1191ab7dd7d", "77aa88bb99cc00dd11ee22ff"
START = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def wizard(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The emulator (with eligible datasets) and the service configured against it, its clock settable."""
    dlz = tmp_path / "dlz"
    world = World(CLIENT, SECRET, dlz_url=dlz.as_uri(), now=START)
    world.datasets = [{"id": WEB, "name": "Web events"}, {"id": ORDERS, "name": "Orders"}]
    now = [datetime(2026, 11, 20, 22, tzinfo=UTC)]  # the service's clock (sessions last 12 h idle); the emulator's starts at START
    with running(world) as emulator:
        config = tmp_path / "auditor.toml"
        config.write_text(f"""
[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"

[service]
tokens = [{{ name = "a", token = "{ADMIN}", role = "admin" }}, {{ name = "r", token = "{READ}", role = "read" }}]

[validation]
isolate = false

[flow_service]
base_url = "{emulator}/data/foundation/flowservice"
ims_url = "{emulator}/ims/token/v3"
client_id = "{CLIENT}"
client_secret = "{SECRET}"
org_id = "TEST@AdobeOrg"
dlz_destination = "landing-zone"

[[destinations]]
name = "landing-zone"
url = "{dlz.as_uri()}"
""")
        runtime = Runtime(load_settings(config, {}))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(runtime, None, clock=lambda: now[0]), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        try:
            yield {"base": f"http://127.0.0.1:{port}", "emulator": emulator, "now": now, "dlz": dlz}
        finally:
            server.should_exit = True
            thread.join(5)
            runtime.close()


def control(emulator: str, route: str, body: dict[str, Any]) -> None:
    httpx.post(f"{emulator}/emulator/{route}", auth=(CLIENT, SECRET), json=body, timeout=60).raise_for_status()


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#token", token)
    page.click("#sign-in")


def test_set_up_a_dlz_export_review_its_calls_create_it_and_verify_its_first_windows(browser: Any, wizard: dict[str, Any]) -> None:  # noqa: F811
    base, emulator = wizard["base"], wizard["emulator"]

    reader = browser.new_page()
    sign_in(reader, base, READ)
    assert reader.goto(f"{base}/setup").status == 403
    assert reader.goto(f"{base}/setup/flows/abc").status == 403
    reader.close()

    page = browser.new_page()
    sign_in(page, base, ADMIN)
    page.goto(f"{base}/setup")
    assert page.locator("#types input[type=radio]").count() == 6  # all six destination types
    page.check("#type-s3")
    page.click("#choose-type")
    page.fill("#auth-s3AccessKey", "${env:AEP_S3_ACCESS_KEY}")
    page.fill("#auth-s3SecretKey", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")  # a secret typed in: refused
    page.fill("#target-bucketName", "acme-exports")
    page.fill("#path", "aep/web")
    page.fill("#name", "web")
    page.click("#next")
    assert "never the secret itself" in page.inner_text("#errors")
    assert "wJalrXUtnFEMI" not in page.url
    page.fill("#auth-s3SecretKey", "${file:/run/secrets/aep-s3}")
    page.click("#next")
    page.click("#next")
    assert "at least one dataset" in page.inner_text("#errors")  # none chosen yet
    page.fill("#q", "web")
    page.click("#search")
    from playwright.sync_api import expect

    expect(page.locator("#datasets input[type=checkbox]")).to_have_count(1)  # the name filter (waits for the page: count() does not)
    page.check(f"#ds-{WEB}")
    page.click("#next")
    page.select_option("#file_type", "PARQUET")
    page.select_option("#manifest", "true")
    page.click("#next")
    page.select_option("#frequency", "every-6h")
    page.fill("#start", "2026-11-20T00:00:00Z")
    page.check("#mode-incremental")
    page.click("#next")
    calls = page.inner_text("#calls")
    assert [c for c in re.findall(r"\d\. (POST /\w+)", calls)] == ["POST /sourceConnections", "POST /connections", "POST /targetConnections", "POST /flows"]
    assert "${env:AEP_S3_ACCESS_KEY}" in calls and "${file:/run/secrets/aep-s3}" in calls and '"bucketName": "acme-exports"' in calls

    # the same journey for the Data Landing Zone, which the emulator writes to a folder here
    page.goto(f"{base}/setup")
    page.check("#type-dlz")
    page.click("#choose-type")
    page.fill("#path", "aep/wizard")
    page.fill("#name", "wizard")
    page.click("#next")
    page.check(f"#ds-{WEB}")
    page.click("#next")
    page.select_option("#file_type", "PARQUET")
    page.select_option("#compression", "GZIP")
    page.select_option("#manifest", "true")
    page.click("#next")
    page.select_option("#frequency", "every-6h")
    page.fill("#start", "2026-11-20T00:00:00Z")
    page.click("#next")
    calls = page.inner_text("#calls")
    assert "POST /flows" in calls and '"startTime": 1795132800' in calls and '"interval": 6' in calls and "FIRST_FULL_THEN_INCREMENTAL" in calls
    assert '"path": "aep/wizard"' in calls and WEB in calls
    page.click("#create")
    assert "/setup/flows/" in page.url
    flow = page.inner_text("#flow-id")
    assert "no run yet" in page.inner_text("#runs")
    page.go_back()
    page.click("#create")  # the same form sent again (it made a second complete dataflow)
    assert f"a dataflow named 'wizard' already exists ({flow}): nothing was created" in page.inner_text("#errors")
    page.goto(f"{base}/setup?type=dlz&step=destination")
    assert page.locator("#account option").count() == 2  # a new account, or the one just made
    account = page.locator("#account option").nth(1).get_attribute("value")
    page.goto(f"{base}/setup?type=dlz&account={account}&name=again&path=aep/again&datasets={ORDERS}&file_type=JSON&compression=NONE&manifest=false"
              "&frequency=daily&start=2026-11-21T00:00:00Z&mode=full&step=review")
    again = page.inner_text("#calls")
    assert re.findall(r"\d\. (POST /\w+)", again) == ["POST /sourceConnections", "POST /targetConnections", "POST /flows"]  # the account is reused
    assert f'"baseConnectionId": "{account}"' in again and "DAILY_FULL_EXPORT" in again and account in page.inner_text("#reuse")
    page.goto(f"{base}/setup/flows/{flow}")

    control(emulator, "faults", {"flowId": flow, "slot": "2026-11-20T12:00:00Z", "kind": "nothing_written"})
    control(emulator, "faults", {"flowId": flow, "slot": "2026-11-20T18:00:00Z", "kind": "corrupt_file"})
    control(emulator, "clock", {"now": "2026-11-20T23:00:00Z"})
    wizard["now"][0] = datetime(2026, 11, 20, 23, tzinfo=UTC)
    page.reload()
    assert page.locator("#runs tr").count() == 5  # header and a run per slot
    page.click("#audit")
    assert page.inner_text("#audited .verdict") == "not_compliant"
    rows = page.locator("#windows tr.window")
    seen = {rows.nth(i).locator(".scheduled").inner_text(): rows.nth(i).get_attribute("data-status") for i in range(rows.count())}
    assert seen == {"2026-11-20T00:00:00Z": "ok", "2026-11-20T06:00:00Z": "ok", "2026-11-20T12:00:00Z": "missing", "2026-11-20T18:00:00Z": "invalid"}
    evidence = page.inner_text("#windows")
    assert "window.missing" in evidence and "run.silent_loss" in evidence
    page.close()


def test_demo_serve_prints_a_url_and_a_token_that_signs_in_and_stops_on_sigint(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "auditor", "demo", "--serve", "--workspace", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    try:
        url = token = None
        deadline = time.monotonic() + 60
        for line in process.stdout:
            if found := re.search(r"Dashboard: (http://127\.0\.0\.1:\d+/)", line):
                url = found.group(1)
            if found := re.search(r"Sign-in token \(admin, valid for this run only\): (\S+)", line):
                token = found.group(1)
                break
            assert time.monotonic() < deadline, "the demo did not start serving in time"
        assert url and token
        health = None
        for _ in range(100):
            try:
                health = httpx.get(f"{url}healthz", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert health is not None and health.status_code == 200
        signed = httpx.post(f"{url}login", data={"token": token}, headers={"Origin": url.rstrip("/")}, follow_redirects=False, timeout=10)
        assert signed.status_code == 303 and "auditor_session" in signed.cookies
        assert httpx.post(f"{url}login", data={"token": "not-it"}, headers={"Origin": url.rstrip("/")}, timeout=10).status_code == 401
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
        assert process.returncode == 0 and "Stopped" in rest
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}healthz", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
