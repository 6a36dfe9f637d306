"""The dashboard in headless Chromium: sign in, read the heatmap, open a window, look up a restore."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tree, missing_server
from tests.integration.test_audit_tree import WEB
from tests.integration.test_service import ADMIN, READ, service  # noqa: F401 - the fixture

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        missing_server("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield chromium
        chromium.close()


def test_sign_in_heatmap_window_detail_and_restore_lookup(browser: Any, service: tuple[str, Any], tree: Tree) -> None:  # noqa: F811
    base, _ = service
    httpx.post(f"{base}/api/audits", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60).raise_for_status()
    page = browser.new_page()

    page.goto(f"{base}/")
    assert page.url.endswith("/login")  # no token, no dashboard
    page.fill("#token", "wrong")
    page.click("#sign-in")
    assert "not valid" in page.inner_text("#error")
    page.fill("#token", READ)
    page.click("#sign-in")

    assert page.inner_text("#verdict") == "not_compliant"
    web = page.locator(".heatmap[data-export='web'] .cell")
    assert web.count() == 13
    statuses = [web.nth(i).get_attribute("data-status") for i in range(13)]
    assert statuses.count("invalid") == 5 and statuses.count("missing") == 1 and statuses.count("pending") == 1
    assert "web" in page.inner_text("#rpo") and "2026-11-27T03:00:00Z" in page.inner_text("#rpo")

    page.click(".heatmap[data-export='web'] .cell.missing")
    assert page.inner_text("#status") == "missing"
    assert "window.missing" in page.inner_text("#findings") and "nothing landed" in page.inner_text("#files")
    page.go_back()
    page.click(".heatmap[data-export='web'] .cell.late")
    assert page.inner_text("#status") == "late"
    from playwright.sync_api import expect

    expect(page.locator("#files tr")).to_have_count(3)  # header and two files (count() does not wait for the page)

    page.goto(f"{base}/restore")
    page.fill("#dataset", WEB)
    page.fill("#at", "2026-11-28T00:00:00Z")
    page.click("#look-up")
    assert page.inner_text("#verdict") == "BROKEN"
    assert "2026-11-27T06:00:00Z is missing" in page.inner_text("#broken")
    assert page.locator("#chain tr").count() == 3  # header and the two good windows before the break

    page.goto(f"{base}/alerts")
    assert page.locator("#alerts").count() == 1
    page.close()
