"""Every API route and dashboard page driven with arbitrary path, query and form values, as a stranger, a reader,
an admin and a signed-in session (in-process, over the ASGI interface):

- never a 5xx, and never a configured secret (API tokens, the webhook's key and URL password) or a session id
  in a body or a header (a session id only in the Set-Cookie of its own sign-in);
- the security headers on every answer;
- a caller without valid credentials gets the same refusal on every non-public route whatever it asked for
  (401 under /api, 303 to /login for pages): nothing is looked up for a stranger.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from auditor.config import load_settings
from auditor.runtime import Runtime
from auditor.service.app import create_app
from auditor.service.worker import Worker
from tests.conftest import Tree
from tests.integration.test_audit_tree import PROFILES, WEB, build_defect_tree
from tests.integration.test_service import ADMIN, AS_OF, READ
from tests.integration.test_time_inputs import BAD

WEBHOOK_KEY = "webhook-signing-key-for-the-fuzz"
WEBHOOK_PASSWORD = "webhook-url-password-for-the-fuzz"
SECRETS = (READ, ADMIN, WEBHOOK_KEY, WEBHOOK_PASSWORD)
SAME, EVIL = "http://testserver", "https://evil.example"

# every route of the service and the query parameters it reads (test_the_fuzz_covers_every_route keeps this complete)
ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/healthz"): (),
    ("GET", "/metrics"): (),
    ("GET", "/api/compliance"): (),
    ("GET", "/api/destinations"): (),
    ("GET", "/api/exports"): (),
    ("GET", "/api/exports/{name}/windows"): ("start", "end", "dataset"),
    ("GET", "/api/exports/{name}/windows/{scheduled}/findings"): ("dataset",),
    ("GET", "/api/exports/{name}/windows/{scheduled}/history"): ("dataset",),
    ("GET", "/api/restore"): ("dataset", "at", "export"),
    ("GET", "/api/alerts"): ("state",),
    ("GET", "/api/audits"): (),
    ("GET", "/api/audits/{audit_id}/report"): (),
    ("POST", "/api/audits"): (),
    ("GET", "/openapi.json"): (),
    ("GET", "/docs"): (),
    ("GET", "/redoc"): (),
    ("GET", "/login"): (),
    ("POST", "/login"): (),
    ("POST", "/logout"): (),
    ("GET", "/"): (),
    ("GET", "/exports/{name}/windows/{scheduled}"): ("dataset",),
    ("GET", "/audits/{audit_id}"): (),
    ("GET", "/restore"): ("dataset", "at", "export"),
    ("GET", "/alerts"): (),
    ("GET", "/setup"): ("step", "type", "account", "name", "path", "q", "datasets", "file_type", "compression", "manifest", "frequency", "start", "end", "mode"),
    ("POST", "/setup"): (),
    ("POST", "/setup/create"): (),
    ("GET", "/setup/flows/{flow_id}"): ("audited",),
    ("POST", "/setup/flows/{flow_id}/audit"): (),
}
PUBLIC = {"/login", "/healthz"}  # [service] open_health = true (the default), open_metrics = false, no public_docs
STRANGERS = ("nobody", "wrong bearer", "token as cookie", "unknown session")
CREDENTIALS = (*STRANGERS, "read", "admin", "read session", "admin session")

REAL = ["web", "profiles", "snapshot", WEB, PROFILES, "2026-11-27T06:00:00Z", "2026-11-27T09:00:00Z", "2026-11-28T00:00:00Z", "1", "2", "0",
        "pending", "failed", "delivered"]
NASTY = ["", " ", ".", "..", "%", "%00", "\x00", "\x1b[2J", "\r\n", "\u2028", "\ufeff", "a/b", "a\\b", "<script>alert(1)</script>", "${env:HOME}",
         "'; DROP TABLE audits; --", "x" * 5000, "2026-11-27T06:00:00Z\x00", f"{WEB}\x00", "1e400", "-0", "0x10", "٣", "²"]
OFFSETS = ["Z", "z", "", "+00:00", "+01:00", "-01:00", "+23:59", "-23:59", "+24:00", "+99:99", "+0100", "-00:30:15", "+01:00:00.5"]


def odd_times() -> st.SearchStrategy[str]:
    """Timestamps with every field in and a little outside its range, odd offsets and fractions."""
    return st.builds(
        lambda y, mo, d, h, mi, s, frac, off, sep: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{off}",
        st.integers(0, 99999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
        st.sampled_from(["", ".5", ".123456", ".1234567890123", ",5"]), st.sampled_from(OFFSETS), st.sampled_from(["T", " ", "t", "_"]),
    )


def spliced(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value with a nasty one spliced in somewhere (a real name with a control character in it …)."""
    return st.builds(lambda text, nasty, at: text[: at % (len(text) + 1)] + nasty + text[at % (len(text) + 1) :], base, st.sampled_from(NASTY), st.integers(0, 40))


VALUES = st.one_of(
    st.sampled_from(REAL + NASTY + BAD),
    spliced(st.sampled_from(REAL)),
    st.text(max_size=30),  # any code point, control characters included
    st.text(st.characters(codec="ascii"), max_size=30),
    st.integers(-(10**40), 10**40).map(str),
    st.floats().map(str),  # nan, inf, -0.0, 1e+300 …
    odd_times(),
)
CALLERS = st.one_of(st.sampled_from(STRANGERS), st.sampled_from(CREDENTIALS[len(STRANGERS) :]), st.sampled_from(CREDENTIALS[len(STRANGERS) :]))


@dataclass
class Fuzzed:
    client: TestClient
    routes: list[tuple[str, str]]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The catalog on SQLite, then on PostgreSQL (which refuses NUL characters in text)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'c.db'}"
        return
    from sqlalchemy import create_engine, text

    server = request.getfixturevalue("postgres_server")
    name = f"auditor_fuzz_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def fuzzed(catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    (tmp_path / "exports").mkdir()
    config = build_defect_tree(Tree(tmp_path / "exports"), tmp_path, catalog)
    text = config.read_text().replace(
        "[catalog]",
        f"""[service]
tokens = [{{ name = "r", token = "{READ}", role = "read" }}, {{ name = "a", token = "{ADMIN}", role = "admin" }}]

[[channels]]
name = "oncall"
kind = "webhook"
url = "http://hook:{WEBHOOK_PASSWORD}@127.0.0.1:9/hook"
secret = "{WEBHOOK_KEY}"

[[alerts]]
name = "missed"
when = "missing"
channels = ["oncall"]

[catalog]""",
        1,
    )
    config.write_text(text)
    runtime = Runtime(load_settings(config, {}))
    worker = Worker(runtime, clock=lambda: AS_OF, wall_clock=lambda: AS_OF)
    app = create_app(runtime, worker, clock=lambda: AS_OF)
    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/api/audits", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 201  # realistic data: windows, findings, alerts
    routes = [(method, route.path) for route in app.routes if isinstance(route, APIRoute | Route) for method in sorted(route.methods or ()) if method != "HEAD"]
    try:
        yield Fuzzed(client, routes)
    finally:
        runtime.close()


def test_the_fuzz_covers_every_route(fuzzed: Fuzzed) -> None:
    assert sorted(fuzzed.routes) == sorted(ROUTES)


def sign_in(client: TestClient, token: str) -> tuple[str, str]:
    """A fresh session and its CSRF token."""
    client.cookies.clear()
    answer = client.post("/login", data={"token": token}, follow_redirects=False)
    session = answer.cookies["auditor_session"]
    client.cookies.clear()
    page = client.get("/", headers={"Cookie": f"auditor_session={session}"})
    client.cookies.clear()
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return session, csrf


@st.composite
def requests(draw: st.DrawFn, route: tuple[str, str]) -> dict[str, Any]:
    method, template = route
    path = template
    for name in ("name", "scheduled", "audit_id", "flow_id"):
        if "{" + name + "}" in path:
            path = path.replace("{" + name + "}", quote(draw(VALUES), safe=""))
    params = {key: draw(VALUES) for key in ROUTES[(method, template)] if draw(st.integers(0, 3))}  # mostly given
    params.update(draw(st.dictionaries(st.text(max_size=8), VALUES, max_size=2)))
    form: dict[str, str] | bytes | None = None
    if method == "POST":
        form = draw(st.one_of(
            st.fixed_dictionaries({"token": st.one_of(st.sampled_from([READ, ADMIN, "", READ + " "]), VALUES)}),
            st.fixed_dictionaries({"csrf": VALUES}),
            st.binary(max_size=200),
            st.none(),
        ))
    return {
        "method": method, "template": template, "path": path, "params": params, "form": form, "credentials": draw(CALLERS),
        "csrf": draw(st.sampled_from(["valid", "none", "wrong"])), "origin": draw(st.sampled_from([None, SAME, EVIL, "null"])),
    }


@pytest.mark.parametrize("route", sorted(ROUTES), ids=" ".join)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_route_answers_5xx_or_a_secret_and_strangers_are_refused_alike(fuzzed: Fuzzed, route: tuple[str, str], data: st.DataObject) -> None:
    """Each route gets examples of its own: none depends on the luck of a random pick of routes."""
    request = data.draw(requests(route))
    client = fuzzed.client
    headers: dict[str, str] = {}
    who = request["credentials"]
    sessions: list[str] = []
    if who in ("read", "admin"):
        headers["Authorization"] = f"Bearer {READ if who == 'read' else ADMIN}"
    elif who == "wrong bearer":
        headers["Authorization"] = f"Bearer {READ}x"
    elif who == "token as cookie":
        headers["Cookie"] = f"auditor_token={READ}; auditor_session={ADMIN}"
    elif who == "unknown session":
        headers["Cookie"] = "auditor_session=" + "A" * 43
    elif who.endswith("session"):
        session, csrf = sign_in(client, READ if who == "read session" else ADMIN)
        sessions.append(session)
        headers["Cookie"] = f"auditor_session={session}"
        if request["csrf"] != "none":
            headers["X-CSRF-Token"] = csrf if request["csrf"] == "valid" else hashlib.sha256(csrf.encode()).hexdigest()
    if request["origin"] is not None:
        headers["Origin"] = request["origin"]
    form = request["form"]
    client.cookies.clear()
    answer = client.request(
        request["method"], request["path"], params=request["params"], headers=headers, follow_redirects=False,
        data=form if isinstance(form, dict) else None, content=form if isinstance(form, bytes) else None,
    )
    client.cookies.clear()
    sessions += [c.split("=", 1)[1].split(";", 1)[0] for c in answer.headers.get_list("set-cookie") if c.startswith("auditor_session=")]

    event(f"{'stranger' if who in STRANGERS else 'caller'} {answer.status_code}")
    shown = f"{request['method']} {answer.request.url} as {who}: {answer.status_code} {answer.text[:300]!r}"
    assert answer.status_code < 500, shown
    assert_nothing_secret(answer, sessions, shown)
    assert answer.headers.get("x-frame-options") == "DENY" and answer.headers.get("x-content-type-options") == "nosniff", shown
    assert "frame-ancestors 'none'" in answer.headers.get("content-security-policy", ""), shown
    path = unquote(answer.request.url.raw_path.split(b"?", 1)[0].decode())
    if who in STRANGERS and path not in PUBLIC:
        refusal = (401, None) if path.startswith("/api/") or path in ("/api", "/openapi.json", "/metrics") else (303, "/login")
        assert (answer.status_code, answer.headers.get("location")) == refusal, shown
    if who not in STRANGERS and path != "/login":  # a failed sign-in is a 401 whoever tries it
        assert answer.status_code != 401, shown


def assert_nothing_secret(answer: httpx.Response, sessions: list[str], shown: str) -> None:
    body = answer.content.decode("utf-8", "replace")
    for secret in SECRETS:
        assert secret not in body, (secret, shown)
        assert all(secret not in value for _, value in answer.headers.multi_items()), (secret, shown)
    for session in sessions:
        assert session not in body, shown
        assert all(session not in value for name, value in answer.headers.multi_items() if name != "set-cookie"), shown


def test_the_fuzz_reaches_past_the_gate(fuzzed: Fuzzed) -> None:
    """A check on the strategy: signed-in requests with real values reach every lookup and answer 200."""
    client = fuzzed.client
    session, csrf = sign_in(client, ADMIN)
    cookie = {"Cookie": f"auditor_session={session}"}
    for path in (f"/exports/web/windows/2026-11-27T06:00:00Z?dataset={WEB}", "/audits/1", f"/api/exports/web/windows/2026-11-27T06:00:00Z/findings?dataset={WEB}",
                 f"/restore?dataset={WEB}&at=2026-11-28T00:00:00Z", "/api/alerts"):
        assert client.get(path, headers=cookie).status_code == 200, path
    assert "window.missing" in client.get("/api/alerts", headers=cookie).text  # the alert rule fired: notices carry the channel's payload
    assert client.post("/logout", headers={**cookie, "Origin": SAME}, data={"csrf": csrf}, follow_redirects=False).status_code == 303


GOOD = {"name": "web", "scheduled": "2026-11-27T06:00:00Z", "audit_id": "1", "dataset": WEB, "start": "2026-11-27T00:00:00Z", "end": "2026-11-28T00:00:00Z",
        "at": "2026-11-28T00:00:00Z", "export": "web", "state": "pending",
        # the set-up wizard's (auditor.service.wizard)
        "flow_id": "d9a3c1f2-7b4e-4c1a-9f0e-2b6d8e4a1c37", "step": "review", "type": "dlz", "account": "new", "path": "aep/web", "q": "web", "datasets": WEB,
        "file_type": "PARQUET", "compression": "GZIP", "manifest": "true", "frequency": "daily", "mode": "incremental", "audited": "ok"}


def test_every_value_slot_of_every_route_takes_each_nasty_value(fuzzed: Fuzzed) -> None:
    """The sweep beside the fuzz: each path or query value of each GET route in turn gets each nasty value (the rest real ones),
    with an admin token or an admin session in turn."""
    client = fuzzed.client
    session, _ = sign_in(client, ADMIN)
    callers = [{"Authorization": f"Bearer {ADMIN}"}, {"Cookie": f"auditor_session={session}"}]
    swept = 0
    for (method, template), query in ROUTES.items():
        slots = [name for name in ("name", "scheduled", "audit_id", "flow_id") if "{" + name + "}" in template] + list(query)
        if method != "GET" or not slots:
            continue
        for slot in slots:
            for value in NASTY + BAD:
                values = {**GOOD, slot: value}
                path = template
                for name in ("name", "scheduled", "audit_id", "flow_id"):
                    path = path.replace("{" + name + "}", quote(values[name], safe=""))
                client.cookies.clear()
                answer = client.get(path, params={key: values[key] for key in query}, headers=callers[swept % 2], follow_redirects=False)
                shown = f"GET {answer.request.url}: {answer.status_code} {answer.text[:300]!r}"
                assert answer.status_code < 500 and answer.status_code not in (401, 303), shown
                assert_nothing_secret(answer, [session], shown)
                swept += 1
    assert swept > 600
