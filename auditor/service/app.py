"""The HTTP API of `auditor serve` (FastAPI; OpenAPI at /openapi.json), read from the catalog."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from auditor.config import Settings
from auditor.errors import AuditorError, CatalogError, ScheduleError
from auditor.report import iso
from auditor.schedule import parse_time
from auditor.service.metrics import render_metrics
from auditor.service.worker import Worker

ROLES = {"read": 1, "admin": 2}


def create_app(settings: Settings, catalog: Any, worker: Worker | None = None, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FastAPI:
    app = FastAPI(title="export-auditor", version="1")

    def role_of(token: str) -> str | None:
        """The role a token grants, compared in constant time; None for an unknown token."""
        given = token.strip().encode()
        found = None
        for known in settings.service.tokens:
            if given and hmac.compare_digest(given, known.token.encode()):
                found = known.role
        return found

    def caller(request: Request) -> str | None:
        """The role of the token in the Authorization header (or the dashboard's cookie), if valid."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return role_of(header[7:])
        return role_of(request.cookies.get("auditor_token", ""))

    def require(role: str) -> Callable[[Request], str]:
        def check(request: Request) -> str:
            found = caller(request)
            if found is None:
                raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
            if ROLES[found] < ROLES[role]:
                raise HTTPException(403, f"this token's role is {found}; {role} is required")
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
    def healthz(request: Request) -> dict[str, Any]:
        if not settings.service.open_health and caller(request) is None:
            raise HTTPException(401, "a valid bearer token is required")
        catalog.audit_count()  # raises CatalogError (503) when the catalog is gone
        return {"status": "ok", "last_audit": iso(max(worker.last_audit.values())) if worker and worker.last_audit else None}

    @app.get("/metrics")
    def metrics(request: Request) -> PlainTextResponse:
        if not settings.service.open_metrics and caller(request) is None:
            raise HTTPException(401, "a valid bearer token is required")
        return PlainTextResponse(render_metrics(catalog, worker, now=clock()), media_type="text/plain; version=0.0.4")

    @app.get("/api/compliance")
    def compliance(_: str = reader) -> dict[str, Any]:
        rows = catalog.export_rows()
        totals: dict[str, int] = {}
        for row in rows:
            for status, count in row["windows"].items():
                totals[status] = totals.get(status, 0) + count
        if totals.get("missing") or totals.get("invalid"):
            verdict = "not_compliant"
        elif totals.get("unknown"):
            verdict = "incomplete"
        else:
            verdict = "compliant"
        audits = catalog.audits(1)
        return {"status": verdict, "windows": totals, "exports": rows, "last_audit": audits[0] if audits else None}

    @app.get("/api/exports")
    def exports(_: str = reader) -> list[dict[str, Any]]:
        return list(catalog.export_rows())

    @app.get("/api/exports/{name}/windows")
    def windows(name: str, start: str | None = None, end: str | None = None, _: str = reader) -> list[dict[str, Any]]:
        _known_export(name)
        return list(catalog.window_rows(name, _time(start, "start"), _time(end, "end")))

    @app.get("/api/exports/{name}/windows/{scheduled}/findings")
    def findings(name: str, scheduled: str, dataset: str, _: str = reader) -> list[dict[str, Any]]:
        _known_export(name)
        when = _time(scheduled, "scheduled")
        assert when is not None
        return list(catalog.window_findings(name, dataset, when))

    @app.get("/api/restore")
    def restore(dataset: str, at: str, _: str = reader) -> dict[str, Any]:
        from auditor.service.lookup import restore_from_catalog

        when = _time(at, "at")
        assert when is not None
        return restore_from_catalog(settings, catalog, dataset, when)

    @app.get("/api/alerts")
    def alerts(_: str = reader) -> list[dict[str, Any]]:
        return list(catalog.notices())

    @app.get("/api/audits")
    def audits(_: str = reader) -> list[dict[str, Any]]:
        return list(catalog.audits())

    @app.post("/api/audits", status_code=201)
    def audit_now(_: str = admin) -> dict[str, Any]:
        if worker is None:
            raise HTTPException(503, "no worker runs in this process")
        worker.audit_due(clock(), force=True)
        worker.deliver_pending(clock())
        report = worker.latest
        assert report is not None
        return {"status": report.status, "as_of": iso(report.as_of), "summary": report.to_json()["summary"], "errors": report.to_json()["errors"]}

    from auditor.service.dashboard import add_dashboard

    add_dashboard(app, settings, catalog, caller, role_of, clock)

    def _known_export(name: str) -> None:
        if name not in {e.name for e in settings.exports}:
            raise HTTPException(404, f"no export named {name!r}")

    return app


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, key=name)
    except ScheduleError as e:
        raise HTTPException(400, str(e)) from None
