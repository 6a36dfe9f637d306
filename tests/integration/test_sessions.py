"""Dashboard sessions and the service's gate: opaque session ids (hashed in the catalog) that expire and sign out,
CSRF and origin checks on cookie-authenticated changes, security headers on every answer, no lookup for strangers,
and API docs behind the same rule as the API."""

from __future__ import annotations

import base64
import hashlib
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from auditor.catalog.repository import Catalog
from auditor.config import Settings
from auditor.runtime import Runtime
from auditor.service.app import create_app
from auditor.service.worker import Worker
from tests.conftest import Tree
from tests.integration.test_audit_tree import WEB, build_defect_tree
from tests.integration.test_service import ADMIN, AS_OF, READ, with_service

COOKIE = "auditor_session"
SAME = "http://testserver"  # the TestClient's own origin
EVIL = "https://evil.example"


@dataclass
class Served:
    client: TestClient
    runtime: Runtime
    settings: Settings
    database: Path
    clock: dict[str, datetime] = field(default_factory=lambda: {"now": AS_OF})

    def request(self, method: str, path: str, *, session: str | None = None, token: str | None = None, cookie: str | None = None, **kwargs: Any) -> httpx.Response:
        """One request with exactly these credentials (the client keeps no cookie between requests)."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if session is not None:
            headers["Cookie"] = f"{COOKIE}={session}"
        if cookie is not None:
            headers["Cookie"] = cookie
        self.client.cookies.clear()
        try:
            return self.client.request(method, path, headers=headers, follow_redirects=False, **kwargs)
        finally:
            self.client.cookies.clear()

    def sign_in(self, token: str = READ) -> str:
        answer = self.request("POST", "/login", data={"token": token})
        assert answer.status_code == 303, answer.text
        return set_cookie(answer)[COOKIE].value

    def csrf(self, session: str) -> str:
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', self.request("GET", "/", session=session).text)
        assert found is not None
        return found.group(1)

    def sessions(self) -> list[tuple[Any, ...]]:
        self.runtime.catalog  # noqa: B018 - opened (and upgraded) by now
        with sqlite3.connect(self.database) as db:
            return db.execute("SELECT * FROM sessions").fetchall()


def set_cookie(answer: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in answer.headers.get_list("set-cookie"):
        jar.load(header)
    return jar


def served_app(settings: Settings, runtime: Runtime, clock: dict[str, datetime], *, https: bool = False) -> TestClient:
    worker = Worker(runtime, clock=lambda: clock["now"])
    app = create_app(runtime, worker, clock=lambda: clock["now"])
    return TestClient(app, base_url="https://testserver" if https else SAME, raise_server_exceptions=False)


@pytest.fixture
def served(tree: Tree, tmp_path: Path) -> Iterator[Served]:
    database = tmp_path / "c.db"
    settings = with_service(build_defect_tree(tree, tmp_path, f"sqlite:///{database}"))
    runtime = Runtime(settings)
    clock = {"now": AS_OF}
    client = served_app(settings, runtime, clock)
    try:
        yield Served(client, runtime, settings, database, clock)
    finally:
        runtime.close()


@pytest.fixture
def audited(served: Served) -> Served:
    assert served.request("POST", "/api/audits", token=ADMIN).status_code == 201
    return served


def test_the_session_cookie_is_an_opaque_id_hashed_in_the_catalog_never_the_token(served: Served) -> None:
    answer = served.request("POST", "/login", data={"token": READ})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert all(READ not in value for _, value in answer.headers.multi_items())
    cookie = set_cookie(answer)[COOKIE]
    session = cookie.value
    assert len(session) >= 43 and session != READ
    assert cookie["httponly"] is True and cookie["samesite"].lower() == "strict" and cookie["path"] == "/" and not cookie["secure"]
    assert int(cookie["max-age"]) == 24 * 3600

    rows = served.sessions()
    assert len(rows) == 1
    assert rows[0][0] == hashlib.sha256(session.encode()).hexdigest()
    assert not any(session in str(value) or READ in str(value) for value in rows[0])  # neither the id nor the token is stored

    assert served.request("GET", "/", session=session).status_code == 200
    assert served.request("GET", "/api/compliance", session=session).status_code == 200
    # the token itself in a cookie (what the cookie used to be) is nobody
    for cookie_header in (f"auditor_token={READ}", f"{COOKIE}={READ}", f"{COOKIE}={session[:-1]}x"):
        assert served.request("GET", "/", cookie=cookie_header).status_code == 303
        assert served.request("GET", "/api/compliance", cookie=cookie_header).status_code == 401


def test_over_https_the_cookie_is_secure(served: Served) -> None:
    client = served_app(served.settings, served.runtime, served.clock, https=True)
    answer = client.post("/login", data={"token": READ}, follow_redirects=False)
    assert set_cookie(answer)[COOKIE]["secure"] is True


def test_a_session_ends_after_12_hours_idle_and_24_hours_after_sign_in(served: Served) -> None:
    session = served.sign_in()
    for hours in (11.9, 23.8):  # each use starts the idle time again
        served.clock["now"] = AS_OF + timedelta(hours=hours)
        assert served.request("GET", "/", session=session).status_code == 200
    served.clock["now"] = AS_OF + timedelta(hours=24)
    assert served.request("GET", "/", session=session).status_code == 303  # the absolute end
    assert served.sessions() == []

    idle = served.sign_in()
    served.clock["now"] += timedelta(hours=12)
    assert served.request("GET", "/api/compliance", session=idle).status_code == 401
    assert served.sessions() == []


def test_signing_out_ends_the_session_and_needs_its_csrf_token(served: Served) -> None:
    session = served.sign_in()
    csrf = served.csrf(session)
    assert served.request("POST", "/logout", session=session).status_code == 403  # a forged sign-out form
    assert served.request("POST", "/logout", session=session, data={"csrf": "0" * 64}).status_code == 403
    assert served.request("GET", "/", session=session).status_code == 200

    answer = served.request("POST", "/logout", session=session, data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    cleared = set_cookie(answer)[COOKIE]
    assert cleared.value in ("", '""') and int(cleared["max-age"]) == 0
    assert served.sessions() == []
    assert served.request("GET", "/", session=session).status_code == 303
    assert served.request("GET", "/api/exports", session=session).status_code == 401


def test_a_session_ends_when_its_token_is_changed_or_removed(served: Served) -> None:
    session = served.sign_in(READ)
    tokens = [t.model_copy(update={"token": "a-rotated-read-token"}) if t.token == READ else t for t in served.settings.service.tokens]
    rotated = served.settings.model_copy(update={"service": served.settings.service.model_copy(update={"tokens": tokens})})
    with Runtime(rotated) as runtime:
        client = served_app(rotated, runtime, served.clock)
        assert client.get("/", headers={"Cookie": f"{COOKIE}={session}"}, follow_redirects=False).status_code == 303


def test_a_cookie_post_from_another_origin_or_without_csrf_token_is_refused_a_bearer_post_is_not(audited: Served) -> None:
    served = audited
    session = served.sign_in(ADMIN)
    csrf = served.csrf(session)
    forged = [
        {"Origin": EVIL},  # what a cross-site form or fetch sends
        {"Origin": EVIL, "X-CSRF-Token": csrf},
        {"Origin": "null", "X-CSRF-Token": csrf},
        {"Referer": f"{EVIL}/page", "X-CSRF-Token": csrf},
        {"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": csrf},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.testserver", "X-CSRF-Token": csrf},
        {"Origin": SAME},  # same origin, but no token
        {"Origin": SAME, "X-CSRF-Token": "0" * 64},
        {},
    ]
    for headers in forged:
        answer = served.request("POST", "/api/audits", session=session, headers=headers)
        assert answer.status_code == 403, (headers, answer.text)
    assert served.runtime.catalog.audit_count() == 1

    assert served.request("POST", "/api/audits", session=session, headers={"Origin": SAME, "X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin"}).status_code == 201
    assert served.request("POST", "/api/audits", session=session, headers={"X-CSRF-Token": csrf}).status_code == 201  # no Origin: the token decides
    assert served.request("POST", "/api/audits", token=ADMIN, headers={"Origin": EVIL}).status_code == 201  # bearer requests carry no ambient credential
    reader = served.sign_in(READ)
    assert served.request("POST", "/api/audits", session=reader, headers={"X-CSRF-Token": served.csrf(reader)}).status_code == 403  # the role still counts
    assert served.runtime.catalog.audit_count() == 4


def test_sign_in_from_another_origin_is_refused(served: Served) -> None:
    for origin in (EVIL, "null", "http://testserver.evil.example"):
        answer = served.request("POST", "/login", data={"token": READ}, headers={"Origin": origin})
        assert answer.status_code == 403 and "set-cookie" not in answer.headers
    assert served.request("POST", "/login", data={"token": READ}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert served.sessions() == []
    assert served.request("POST", "/login", data={"token": READ}, headers={"Origin": SAME}).status_code == 303
    assert served.request("POST", "/login", data={"token": READ}, headers={"Origin": "https://auditor.example", "X-Forwarded-Host": "auditor.example"}).status_code == 303
    assert len(served.sessions()) == 2


HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "same-origin", "cache-control": "no-store"}


def assert_security_headers(answer: httpx.Response) -> None:
    for name, value in HEADERS.items():
        assert answer.headers.get(name) == value, (answer.request.url, name, answer.headers.get(name))
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "base-uri 'none'" in csp
    assert "'unsafe-inline'" not in csp or answer.request.url.path in ("/docs", "/redoc")


def test_every_answer_carries_the_security_headers(audited: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    served = audited
    session = served.sign_in()
    answers = [
        served.request("GET", path, session=session)
        for path in ("/", "/alerts", "/restore", f"/restore?dataset={WEB}&at=2026-11-28T00:00:00Z", f"/exports/web/windows/2026-11-27T06:00:00Z?dataset={WEB}", "/audits/1",
                     "/docs", "/redoc", "/openapi.json", "/api/compliance", "/api/exports/nope/windows", "/api/restore?dataset=x&at=bad", "/audits/x", "/nowhere")
    ]
    answers += [served.request("GET", "/login"), served.request("GET", "/"), served.request("GET", "/api/exports"), served.request("GET", "/healthz")]
    answers += [served.request("POST", "/api/audits", session=session), served.request("POST", "/api/audits", token=READ)]
    assert {a.status_code for a in answers} == {200, 303, 400, 401, 403, 404, 422}

    monkeypatch.setattr(Catalog, "audits", lambda *_, **__: 1 / 0)
    failed = served.request("GET", "/api/audits", token=READ)
    assert failed.status_code == 500 and failed.json() == {"error": "internal error"}  # no traceback either
    for answer in [*answers, failed]:
        assert_security_headers(answer)


def test_pages_have_no_script_and_the_csp_allows_exactly_their_inline_styles(audited: Served) -> None:
    served = audited
    session = served.sign_in()
    for path in ("/", "/alerts", "/login", f"/restore?dataset={WEB}&at=2026-11-28T00:00:00Z", f"/exports/web/windows/2026-11-27T06:00:00Z?dataset={WEB}", "/audits/1"):
        answer = served.request("GET", path, session=session)
        assert answer.status_code == 200, path
        page = answer.text
        styles = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
        assert styles, path
        for style in styles:
            digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in answer.headers["content-security-policy"], path
        assert re.findall(r"<script(?![^>]*type=\"application/json\")", page) == [], path  # the evidence page's JSON is data, not executed
        assert not re.search(r"\son[a-z]+=|\sstyle=|javascript:", page), path


PROBES = [  # (path that exists, path that does not): a stranger must not tell them apart
    (f"/exports/web/windows/2026-11-27T06:00:00Z?dataset={WEB}", "/exports/nope/windows/2026-11-27T06:00:00Z?dataset=nope"),
    (f"/exports/web/windows/2026-11-27T06:00:00Z?dataset={WEB}", f"/exports/web/windows/2026-11-27T07:00:00Z?dataset={WEB}"),
    ("/audits/1", "/audits/999"),
    (f"/restore?dataset={WEB}&at=2026-11-28T00:00:00Z", "/restore?dataset=nope&at=2026-11-28T00:00:00Z"),
    ("/restore?dataset=x&at=2026-11-28T00:00:00Z", "/restore?dataset=x&at=0001-01-01T00:00:00%2B01:00"),
    ("/api/exports/web/windows", "/api/exports/nope/windows"),
    (f"/api/exports/web/windows/2026-11-27T06:00:00Z/findings?dataset={WEB}", "/api/exports/nope/windows/bad/findings"),
    (f"/api/exports/web/windows/2026-11-27T06:00:00Z/history?dataset={WEB}", "/api/exports/nope/windows/2026-11-27T06:00:00Z/history"),
    (f"/api/restore?dataset={WEB}&at=2026-11-28T00:00:00Z", "/api/restore?dataset=nope&at=2026-11-28T00:00:00Z"),
    ("/api/audits/1/report", "/api/audits/999/report"),
    ("/api/audits/1/report", "/api/audits/x/report"),
]


def test_strangers_learn_nothing_about_what_exists(audited: Served) -> None:
    served = audited
    expired = served.sign_in()
    served.clock["now"] = AS_OF + timedelta(hours=13)
    strangers: list[dict[str, Any]] = [{}, {"token": "not-a-token"}, {"cookie": f"auditor_token={READ}"}, {"session": expired}, {"session": "x" * 43}]
    for there, absent in PROBES:
        for credentials in strangers:
            seen = [served.request("GET", path, **credentials) for path in (there, absent)]
            assert seen[0].status_code in (303, 401), (there, credentials)
            assert [(a.status_code, a.headers.get("location"), a.content) for a in seen].count(
                (seen[0].status_code, seen[0].headers.get("location"), seen[0].content)
            ) == 2, (there, absent, credentials)
    session = served.sign_in()  # signed in, the difference is there
    assert served.request("GET", PROBES[0][0], session=session).status_code == 200
    assert served.request("GET", PROBES[0][1], session=session).status_code == 404


def test_api_docs_need_a_token_or_a_session_unless_public_docs(served: Served) -> None:
    assert served.request("GET", "/openapi.json").status_code == 401
    assert served.request("GET", "/docs").headers["location"] == "/login"
    assert served.request("GET", "/redoc").headers["location"] == "/login"
    assert served.request("GET", "/docs/oauth2-redirect").status_code == 303
    assert served.request("GET", "/openapi.json", token=READ).json()["info"]["title"] == "export-auditor"
    session = served.sign_in()
    docs = served.request("GET", "/docs", session=session)
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    inline = re.search(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    assert inline is not None and base64.b64encode(hashlib.sha256(inline.group(1).encode()).digest()).decode() in docs.headers["content-security-policy"]
    assert served.request("GET", "/redoc", session=session).status_code == 200

    public = served.settings.model_copy(update={"service": served.settings.service.model_copy(update={"public_docs": True})})
    with Runtime(public) as runtime:
        client = served_app(public, runtime, served.clock)
        assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200
        assert client.get("/api/exports").status_code == 401  # the API itself stays closed


def test_a_bad_time_on_the_restore_page_is_a_message_not_a_500(audited: Served) -> None:
    served = audited
    session = served.sign_in()
    for at in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "²", "9" * 5000):
        answer = served.request("GET", "/restore", session=session, params={"dataset": WEB, "at": at})
        assert answer.status_code == 200 and ("is out of range" in answer.text or "not epoch seconds or ISO-8601" in answer.text), at
        assert served.request("GET", "/restore", params={"dataset": WEB, "at": at}).status_code == 303


def test_the_dashboard_in_a_browser_keeps_its_styles_under_the_csp_and_signs_out(browser: Any, service: tuple[str, Any]) -> None:  # noqa: F811
    base, _ = service
    httpx.post(f"{base}/api/audits", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60).raise_for_status()
    context = browser.new_context()
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None)
    page.goto(f"{base}/login")
    page.fill("#token", READ)
    page.click("#sign-in")
    assert page.inner_text("#verdict") == "not_compliant"
    cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
    assert cookie["value"] != READ and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    ok = page.locator(".heatmap[data-export='web'] .cell.ok").first
    assert ok.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(46, 125, 50)"  # the inline style applied: its hash is in the CSP
    page.goto(f"{base}/audits/1")
    assert page.locator(".calendar .cell.ok").first.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(46, 125, 50)"
    assert refused == []

    page.goto(f"{base}/")
    page.click("#sign-out")
    assert page.url.endswith("/login")
    assert all(c["name"] != COOKIE for c in context.cookies())
    page.goto(f"{base}/alerts")
    assert page.url.endswith("/login")
    context.close()


from tests.integration.test_dashboard import browser  # noqa: F401 - the fixtures
from tests.integration.test_service import service  # noqa: F401
