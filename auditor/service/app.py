"""The HTTP API of `auditor serve` (FastAPI), read from the catalog, and the access rules of the whole service.

Access, checked by one gate in front of every route before the route looks anything up:
- the API takes `Authorization: Bearer <token>` ([service].tokens, read or admin);
- the dashboard signs in with a token (POST /login) and gets a *session*: an opaque random id in an
  HttpOnly, SameSite=Strict cookie (`Secure` over HTTPS or when `[service] secure_cookies` says so),
  stored in the catalog only as its SHA-256, ending 12 h after its last use and 24 h after sign-in
  (`session_idle`, `session_lifetime`), or at POST /logout, or when its token leaves the config. A
  cookie is never the token;
- without a valid caller every route answers alike, whatever exists: 401 under /api (and
  /openapi.json), 303 to /login for pages (/docs and /redoc included unless `public_docs`);
- a state-changing request authenticated by the cookie needs the session's CSRF token (form field
  `csrf` or header `X-CSRF-Token`) and, when the browser says where it comes from (Origin, Referer,
  Sec-Fetch-Site), this very site; sign-in checks the origin too. Bearer requests are exempt;
- every response carries security headers (CSP without scripts, no framing, nosniff, referrer only
  to this site, no caching).

Behind a TLS-terminating proxy, uvicorn takes the scheme from X-Forwarded-Proto when the proxy is in
its `forwarded_allow_ips` (default 127.0.0.1), so cookies get `Secure`; the proxy must pass the Host
(or X-Forwarded-Host) the browser used, which sign-in and the Origin check compare against.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import hmac
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.datastructures import MutableHeaders

from auditor.catalog.aio import LoopReads
from auditor.config import TokenSettings
from auditor.errors import AuditorError, CatalogError, ScheduleError
from auditor.ledger import DatasetState, to_json
from auditor.reconcile import Status, overall_status
from auditor.report import iso
from auditor.restore import RestoreCatalog, RestoreLookupError, choose_export, plan_restore
from auditor.runtime import Runtime
from auditor.schedule import parse_time
from auditor.service.metrics import render_metrics
from auditor.service.worker import Worker
from auditor.storage.base import redact

ROLES = {"read": 1, "admin": 2}
SESSION_COOKIE = "auditor_session"
LEGACY_COOKIE = "auditor_token"  # the token itself, before sessions: never read, cleared at sign-in and sign-out
CSRF_FIELD, CSRF_HEADER = "csrf", "x-csrf-token"
SESSION_IDLE = timedelta(hours=12)  # defaults of [service] session_idle / session_lifetime
SESSION_LIFETIME = timedelta(hours=24)
TOUCH_EVERY = timedelta(minutes=1)  # a session's last use is written at most this often
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM = 64 * 1024  # a cookie-authenticated form body read for its CSRF field
MAX_AUDIT_ID = 2**31 - 1  # audits.id is a 32-bit integer on PostgreSQL
DOCS_PATHS = frozenset({"/docs", "/redoc", "/openapi.json"})
CDN = "https://cdn.jsdelivr.net"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: a token's holder, by bearer token or by a dashboard session."""

    role: str
    name: str
    via: str  # "bearer" | "session"
    session: str | None = None  # the session id (the cookie's value)

    @property
    def csrf(self) -> str | None:
        """The session's CSRF token (derived from its id, so nothing more is stored)."""
        return None if self.session is None else _mac(self.session, "auditor-csrf")


def dataset_json(state: DatasetState, now: datetime) -> dict[str, Any]:
    return {
        "name": state.export, "destination": state.destination, "dataset_id": state.dataset_id, "restorable_until": iso(state.restorable_until),
        "rpo_seconds": state.rpo_seconds(now), "chain_broken_at": iso(state.broken_at), "as_of": iso(state.as_of), "audit_id": state.audit_id,
        "windows": dict(state.windows),
    }


def destinations_json(runtime: Runtime, now: datetime) -> list[dict[str, Any]]:
    """Each configured destination with its last full sweep and when the next one is due."""
    swept = {d.name: d for d in runtime.catalog.destinations()}
    out = []
    for configured in runtime.settings.destinations:
        state = swept.get(configured.name)
        last = state.last_full_sweep if state is not None else None
        due = last + configured.full_sweep_every if last is not None else None
        out.append(
            {
                "name": configured.name,
                "url": redact(configured.url),
                "full_sweep_every_seconds": int(configured.full_sweep_every.total_seconds()),
                "last_full_sweep": to_json(last),
                "last_full_sweep_audit_id": state.last_full_sweep_audit_id if state is not None else None,
                "next_full_sweep_due": to_json(due),
                "full_sweep_overdue": due is not None and now > due + configured.audit_every,
            }
        )
    return out


def verdict(states: list[DatasetState]) -> tuple[str, dict[str, int]]:
    """The compliance verdict of what the catalog knows now (the same rule as an audit's)."""
    totals: Counter[str] = Counter()
    for state in states:
        totals.update(state.windows)
    return overall_status(Counter({Status(k): v for k, v in totals.items()}), errors=0)[0], dict(totals)


class Access:
    """Tokens, sessions and the rules of the gate (one per app)."""

    def __init__(self, runtime: Runtime, clock: Callable[[], datetime]) -> None:
        self.runtime, self.settings, self.clock = runtime, runtime.settings, clock
        service = self.settings.service
        # settings with safe defaults until [service] declares them
        self.idle: timedelta = getattr(service, "session_idle", SESSION_IDLE)
        self.lifetime: timedelta = getattr(service, "session_lifetime", SESSION_LIFETIME)
        self.secure_cookies: bool = bool(getattr(service, "secure_cookies", False))
        public = {"/login"}
        if service.open_health:
            public.add("/healthz")
        if service.open_metrics:
            public.add("/metrics")
        if getattr(service, "public_docs", False):
            public |= DOCS_PATHS
        self.public = frozenset(public)

    # -- who is calling --------------------------------------------------------------------

    def token(self, given: str) -> TokenSettings | None:
        """The configured token equal to `given`, compared in constant time; None for an unknown one."""
        raw = given.strip().encode("utf-8", "surrogateescape")
        found = None
        for known in self.settings.service.tokens:
            if raw and hmac.compare_digest(raw, known.token.encode()):
                found = known
        return found

    def identify(self, request: Request) -> Caller | None:
        """The bearer token's holder, else the session cookie's; the raw token as a cookie is nobody."""
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            found = self.token(header[7:])
            return Caller(found.role, found.name, "bearer") if found else None
        session = request.cookies.get(SESSION_COOKIE, "")
        return self.session(session) if 20 <= len(session) <= 200 else None

    def session(self, session: str) -> Caller | None:
        catalog = self.runtime.catalog
        digest = _digest(session)
        row = catalog.session(digest)
        if row is None:
            return None
        now = self.clock()
        token = next(
            (t for t in self.settings.service.tokens if t.name == row["token_name"] and hmac.compare_digest(_binding(session, t.token), row["token_binding"])), None
        )
        ended = now >= row["expires_at"] or now >= row["created_at"] + self.lifetime or now >= row["last_seen_at"] + self.idle
        if ended or token is None:  # expired, or its token was changed or removed
            catalog.delete_session(digest)
            return None
        if now - row["last_seen_at"] >= TOUCH_EVERY:
            catalog.touch_session(digest, now)
        return Caller(token.role, token.name, "session", session)

    # -- sessions --------------------------------------------------------------------------

    def sign_in(self, given: str, previous: Caller | None) -> Caller | None:
        """A new session for a valid token (the caller's previous session ends); None for a wrong token."""
        token = self.token(given)
        if token is None:
            return None
        catalog, now = self.runtime.catalog, self.clock()
        catalog.expire_sessions(now, idle=self.idle)
        if previous is not None and previous.session is not None:
            catalog.delete_session(_digest(previous.session))
        session = secrets.token_urlsafe(32)
        catalog.create_session(_digest(session), token_name=token.name, token_binding=_binding(session, token.token), role=token.role, now=now,
                               expires_at=now + self.lifetime)
        return Caller(token.role, token.name, "session", session)

    def sign_out(self, caller: Caller | None) -> None:
        if caller is not None and caller.session is not None:
            self.runtime.catalog.delete_session(_digest(caller.session))

    def set_cookie(self, request: Request, response: Response, caller: Caller) -> None:
        assert caller.session is not None
        response.set_cookie(SESSION_COOKIE, caller.session, max_age=int(self.lifetime.total_seconds()), path="/", httponly=True, samesite="strict",
                            secure=self.secure(request))
        response.delete_cookie(LEGACY_COOKIE, path="/")

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=self.secure(request))
        response.delete_cookie(LEGACY_COOKIE, path="/")

    def secure(self, request: Request) -> bool:
        return self.secure_cookies or request.url.scheme == "https"

    # -- the gate's rules ------------------------------------------------------------------

    def refusal(self, path: str) -> Response:
        """What a request without a valid caller gets, the same whatever it asked for."""
        if path.startswith("/api/") or path in ("/api", "/openapi.json", "/healthz", "/metrics"):
            return JSONResponse({"error": "a valid bearer token is required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return RedirectResponse("/login", status_code=303)


def foreign_origin(request: Request) -> str | None:
    """Why a browser request comes from another site (Sec-Fetch-Site, Origin, else Referer), or None."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"a {site[:20]} request"
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return None
    try:
        parts = urlsplit(source)
        host = _host(parts.netloc) if parts.scheme in ("http", "https") else ""
    except ValueError:
        host = ""
    ours = {_host(request.headers.get("host", "")), _host(request.headers.get("x-forwarded-host", "").split(",")[0])} - {""}
    return None if host and host in ours else "another origin"


class Gate:
    """Authenticates every request before routing (so nothing is looked up for a stranger), then checks CSRF."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = scope["path"]
        try:
            if request.headers.get("authorization", "")[:7].lower() == "bearer ":
                caller = self.access.identify(request)  # a token is compared in memory: no thread hop
            else:
                caller = await run_in_threadpool(self.access.identify, request)  # a session is read from the catalog
        except CatalogError as e:
            await JSONResponse({"error": str(e)}, status_code=503)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        if caller is None and path not in self.access.public:
            await self.access.refusal(path)(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if "\x00" in path or b"%00" in query or b"\x00" in query:  # no name holds one, and PostgreSQL cannot compare text with it
            await JSONResponse({"error": "a NUL character in the request: no name or time holds one"}, status_code=400)(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and (caller is None or caller.via == "session"):
            problem = foreign_origin(request)
            if problem is None and caller is not None and path != "/login":
                given, receive = await _csrf_of(request, receive)
                expected = caller.csrf or ""
                if given is None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
                    problem = "no valid CSRF token"
            if problem is not None:
                await JSONResponse({"error": f"refused: {problem} (sign-in cookies work only from this site's own forms)"}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Security headers on every response, errors included; an unhandled error becomes a bare 500."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = {
            "Content-Security-Policy": csp,
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",  # not no-referrer: browsers then send "Origin: null" on our own form posts
            "Cache-Control": "no-store",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name == "Cache-Control" or name not in headers:  # only the docs pages bring their own CSP
                        headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if started:
                raise
            await JSONResponse({"error": "internal error"}, status_code=500)(scope, receive, sending)
            raise  # logged by the server


def create_app(runtime: Runtime, worker: Worker | None = None, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FastAPI:
    """The service; `clock` is its now: RPOs, audits started through the API, and session expiry."""
    settings = runtime.settings
    # the catalog's reads on each loop serving the app (one under uvicorn), made at the first lookup there: an asyncio
    # engine's connections belong to the loop that opened them
    loops: dict[asyncio.AbstractEventLoop, LoopReads | None] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # the service's imports, app and catalog live as long as the process: out of the collector's sight, a full
        # collection scans the few objects made since (under 20 clients one took 54 ms and set the lookups' p99)
        gc.collect()
        gc.freeze()
        loop = asyncio.get_running_loop()
        loops[loop] = None
        try:
            yield
        finally:
            reads = loops.pop(loop, None)
            if reads is not None:
                await reads.close()

    app = FastAPI(title="export-auditor", version="1", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    access = Access(runtime, clock)

    def caller(request: Request) -> Caller | None:
        """The caller the gate identified."""
        found = request.state.caller if hasattr(request.state, "caller") else access.identify(request)
        return found if isinstance(found, Caller) else None

    def require(role: str) -> Callable[[Request], Caller]:
        def check(request: Request) -> Caller:
            found = caller(request)
            if found is None:
                raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
            if ROLES[found.role] < ROLES[role]:
                raise HTTPException(403, f"this token's role is {found.role}; {role} is required")
            return found

        return check

    reader = Depends(require("read"))  # a default, not an Annotated alias: annotations are strings here
    admin = Depends(require("admin"))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(AuditorError)
    async def auditor_error(_: Request, exc: AuditorError) -> JSONResponse:
        status = 503 if isinstance(exc, CatalogError) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.get("/healthz")
    def healthz(request: Request) -> JSONResponse:
        if not settings.service.open_health and caller(request) is None:
            raise HTTPException(401, "a valid bearer token is required")
        runtime.catalog.latest_audit_id()  # raises CatalogError (503) when the catalog is gone (an index lookup, not a count)
        ok, reason = worker.health() if worker else (True, "no worker in this process")
        last = max(worker.last_audit.values()) if worker and worker.last_audit else None
        body = {"status": "ok" if ok else "failing", "reason": reason, "last_audit": iso(last), "worker_errors": dict(worker.errors) if worker else {}}
        if worker is not None and caller(request) is not None:  # which process answered (replicas may share a port): not for anonymous probes
            body["worker"] = runtime.holder
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics(request: Request) -> PlainTextResponse:
        if not settings.service.open_metrics and caller(request) is None:
            raise HTTPException(401, "a valid bearer token is required")
        return PlainTextResponse(render_metrics(runtime.catalog, worker, now=clock()), media_type="text/plain; version=0.0.4")

    @app.get("/api/compliance")
    def compliance(_: Caller = reader) -> dict[str, Any]:
        states = runtime.catalog.datasets()
        status, totals = verdict(states)
        audits = runtime.catalog.audits(1)
        now = clock()
        return {
            "status": status,
            "windows": totals,
            "exports": [dataset_json(s, now) for s in states],
            "last_audit": to_json(audits[0]) if audits else None,
            "destinations": destinations_json(runtime, now),
        }

    @app.get("/api/destinations")
    def destinations(_: Caller = reader) -> list[dict[str, Any]]:
        return destinations_json(runtime, clock())

    @app.get("/api/exports")
    def exports(_: Caller = reader) -> list[dict[str, Any]]:
        now = clock()
        return [dataset_json(s, now) for s in runtime.catalog.datasets()]

    @app.get("/api/exports/{name}/windows")
    def windows(name: str, start: str | None = None, end: str | None = None, dataset: str | None = None, _: Caller = reader) -> list[dict[str, Any]]:
        _known_export(name)
        return list(to_json(runtime.catalog.windows(name, dataset, _time(start, "start"), _time(end, "end"))))

    @app.get("/api/exports/{name}/windows/{scheduled}/findings")
    def findings(name: str, scheduled: str, dataset: str, _: Caller = reader) -> list[dict[str, Any]]:
        _known_export(name)
        when = _time(scheduled, "scheduled")
        assert when is not None
        return list(to_json(runtime.catalog.window_findings(name, dataset, when)))

    @app.get("/api/exports/{name}/windows/{scheduled}/history")
    def history(name: str, scheduled: str, dataset: str, _: Caller = reader) -> list[dict[str, Any]]:
        """Every status audits recorded for one window, in as-of order (historical audits included)."""
        _known_export(name)
        when = _time(scheduled, "scheduled")
        assert when is not None
        return list(to_json(runtime.catalog.window_history(name, dataset, when)))

    read_check = require("read")

    async def restore_reader(request: Request) -> Caller:
        """/api/restore's read check, on the event loop: the gate has identified the caller, so a thread would only add a hop."""
        return read_check(request)

    restore_read = Depends(restore_reader)
    inline_lookups = runtime.settings.catalog.url.startswith("sqlite")

    def loop_reads() -> LoopReads | None:
        """PostgreSQL lookups' reads on the serving loop, made at the first lookup (the catalog may be unreachable at
        start); None off that loop (an app served without its lifespan: each request may have a loop of its own)."""
        loop = asyncio.get_running_loop()
        if loop not in loops:
            return None
        reads = loops[loop]
        if reads is None:
            reads = loops[loop] = LoopReads(runtime.catalog)
        return reads if reads.available else None

    @app.get("/api/restore")
    async def restore(dataset: str, at: str, export: str | None = None, _: Caller = restore_read) -> JSONResponse:
        when = _time(at, "at")
        assert when is not None

        try:
            name = choose_export(settings, dataset, export, option="export=")  # from the settings: no connection for a 404 or 409

            def lookup(catalog: RestoreCatalog) -> dict[str, Any]:
                return plan_restore(settings, catalog, dataset, when, export=name, option="export=").to_json()

            # SQLite answers from a local file in about a millisecond of CPU: handing that to a thread and back costs the
            # process more (measured under 20 clients: 7.2 against 2.2 ms of CPU a request); PostgreSQL waits on the network,
            # on the event loop where it can (LoopReads), else in a thread (which also opens the catalog on first use)
            if inline_lookups:
                body = lookup(runtime.catalog)
            elif (reads := loop_reads()) is not None:
                body = await reads.run(lookup)
            else:
                body = await run_in_threadpool(lambda: lookup(runtime.catalog))
        except RestoreLookupError as e:
            if e.candidates:
                raise HTTPException(409, {"message": str(e), "candidates": list(e.candidates)}) from None
            raise HTTPException(404, str(e)) from None
        return JSONResponse(body)  # the plan's JSON as it is: no response model to validate it against

    @app.get("/api/alerts")
    def alerts(state: str | None = None, _: Caller = reader) -> list[dict[str, Any]]:
        return list(to_json(runtime.catalog.notices(state=state)))

    @app.get("/api/audits")
    def audits(_: Caller = reader) -> list[dict[str, Any]]:
        return list(to_json(runtime.catalog.audits()))

    @app.get("/api/audits/{audit_id}/report")
    def audit_report(audit_id: int = Path(ge=0, le=MAX_AUDIT_ID), _: Caller = reader) -> dict[str, Any]:
        """The report an audit produced, exactly as recorded (historical audits too)."""
        report = runtime.catalog.audit_report(audit_id)
        if report is None:
            raise HTTPException(404, f"no audit {audit_id}")
        return report

    @app.post("/api/audits", status_code=201)
    def audit_now(_: Caller = admin) -> dict[str, Any]:
        """Audit now (admin). With a dashboard session instead of a bearer token: send the CSRF token as X-CSRF-Token."""
        if worker is None:
            raise HTTPException(503, "no worker runs in this process")
        if not settings.exports:
            raise HTTPException(400, "no exports are configured: nothing to audit")
        report = worker.audit_now(clock())
        if report is None:
            raise HTTPException(503, "the audit could not run")
        body = report.to_json()
        return {"status": report.status, "as_of": iso(report.as_of), "audit_id": report.audit_id, "summary": body["summary"], "errors": body["errors"]}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def swagger() -> Response:
        page = get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI")
        scripts = " ".join(_hashes(_inline(bytes(page.body).decode(), "script")))
        page.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src {CDN} {scripts}; style-src {CDN} 'unsafe-inline'; img-src 'self' data: {CDN} https://fastapi.tiangolo.com; "
            f"font-src {CDN} data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        )
        return page

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> Response:
        page = get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")
        page.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src {CDN}; style-src 'unsafe-inline' https://fonts.googleapis.com; font-src https://fonts.gstatic.com; "
            "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; form-action 'none'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        return page

    from auditor.service.dashboard import PAGE_STYLES, add_dashboard

    add_dashboard(app, runtime, access, caller, clock)
    __import__("auditor.service.wizard", fromlist=["add_wizard"]).add_wizard(app, runtime, caller, clock)  # /setup: set up and verify an export (admin)

    def _known_export(name: str) -> None:
        if name not in {e.name for e in settings.exports}:
            raise HTTPException(404, f"no export named {name!r}")

    csp = f"default-src 'none'; style-src {' '.join(_hashes(PAGE_STYLES))}; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    app.add_middleware(Gate, access=access)
    app.add_middleware(SecurityHeaders, csp=csp)  # outermost: the gate's answers get the headers too
    return app


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, key=name)
    except ScheduleError as e:
        raise HTTPException(400, str(e)) from None


def _digest(session: str) -> str:
    return hashlib.sha256(session.encode("utf-8", "surrogateescape")).hexdigest()


def _mac(session: str, message: str) -> str:
    return hmac.new(session.encode("utf-8", "surrogateescape"), message.encode(), hashlib.sha256).hexdigest()


def _binding(session: str, token: str) -> str:
    """Which token a session was opened with, keyed by the session id (the catalog alone cannot test guesses)."""
    return _mac(session, "auditor-session-token\0" + token)


def _host(netloc: str) -> str:
    """host[:port] as a browser's Origin spells it (lower case, no default port)."""
    host = netloc.strip().lower().rsplit("@", 1)[-1]
    for default in (":80", ":443"):
        host = host.removesuffix(default)
    return host


def _inline(page: str, element: str) -> list[str]:
    """The contents of the inline <script>/<style> elements of a page (those without src)."""
    return re.findall(rf"<{element}(?![^>]*\bsrc=)[^>]*>(.*?)</{element}>", page, flags=re.DOTALL)


def _hashes(contents: Iterable[str]) -> list[str]:
    """CSP source expressions allowing exactly these inline elements."""
    return sorted({f"'sha256-{base64.b64encode(hashlib.sha256(c.encode()).digest()).decode()}'" for c in contents})


async def _csrf_of(request: Request, receive: Receive) -> tuple[str | None, Receive]:
    """The CSRF token of a request (header, else a urlencoded form field) and a `receive` that replays the body read for it."""
    header = request.headers.get(CSRF_HEADER)
    if header is not None or not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return header, receive
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM:
            return None, receive
        chunks.append(chunk)
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        values = parse_qs(body.decode("latin-1"), max_num_fields=100).get(CSRF_FIELD)
    except ValueError:  # too many fields
        return None, replay
    return (values[0] if values else None), replay

