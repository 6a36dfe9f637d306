"""The HTTP API of `auditor serve` (FastAPI; OpenAPI at /openapi.json), read from the catalog."""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from auditor.errors import AuditorError, CatalogError, ScheduleError
from auditor.ledger import DatasetState, to_json
from auditor.reconcile import Status, overall_status
from auditor.report import iso
from auditor.restore import RestoreLookupError, plan_restore
from auditor.runtime import Runtime
from auditor.schedule import parse_time
from auditor.service.metrics import render_metrics
from auditor.service.worker import Worker

ROLES = {"read": 1, "admin": 2}


def dataset_json(state: DatasetState, now: datetime) -> dict[str, Any]:
    return {
        "name": state.export, "destination": state.destination, "dataset_id": state.dataset_id, "restorable_until": iso(state.restorable_until),
        "rpo_seconds": state.rpo_seconds(now), "chain_broken_at": iso(state.broken_at), "as_of": iso(state.as_of), "audit_id": state.audit_id,
        "windows": dict(state.windows),
    }


def verdict(states: list[DatasetState]) -> tuple[str, dict[str, int]]:
    """The compliance verdict of what the catalog knows now (the same rule as an audit's)."""
    totals: Counter[str] = Counter()
    for state in states:
        totals.update(state.windows)
    return overall_status(Counter({Status(k): v for k, v in totals.items()}), errors=0)[0], dict(totals)


def create_app(runtime: Runtime, worker: Worker | None = None, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FastAPI:
    settings = runtime.settings
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
    def healthz(request: Request) -> JSONResponse:
        if not settings.service.open_health and caller(request) is None:
            raise HTTPException(401, "a valid bearer token is required")
        runtime.catalog.audit_count()  # raises CatalogError (503) when the catalog is gone
        ok, reason = worker.health() if worker else (True, "no worker in this process")
        last = max(worker.last_audit.values()) if worker and worker.last_audit else None
        body = {"status": "ok" if ok else "failing", "reason": reason, "last_audit": iso(last), "worker_errors": dict(worker.errors) if worker else {}}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics(request: Request) -> PlainTextResponse:
        if not settings.service.open_metrics and caller(request) is None:
            raise HTTPException(401, "a valid bearer token is required")
        return PlainTextResponse(render_metrics(runtime.catalog, worker, now=clock()), media_type="text/plain; version=0.0.4")

    @app.get("/api/compliance")
    def compliance(_: str = reader) -> dict[str, Any]:
        states = runtime.catalog.datasets()
        status, totals = verdict(states)
        audits = runtime.catalog.audits(1)
        now = clock()
        return {"status": status, "windows": totals, "exports": [dataset_json(s, now) for s in states], "last_audit": to_json(audits[0]) if audits else None}

    @app.get("/api/exports")
    def exports(_: str = reader) -> list[dict[str, Any]]:
        now = clock()
        return [dataset_json(s, now) for s in runtime.catalog.datasets()]

    @app.get("/api/exports/{name}/windows")
    def windows(name: str, start: str | None = None, end: str | None = None, dataset: str | None = None, _: str = reader) -> list[dict[str, Any]]:
        _known_export(name)
        return list(to_json(runtime.catalog.windows(name, dataset, _time(start, "start"), _time(end, "end"))))

    @app.get("/api/exports/{name}/windows/{scheduled}/findings")
    def findings(name: str, scheduled: str, dataset: str, _: str = reader) -> list[dict[str, Any]]:
        _known_export(name)
        when = _time(scheduled, "scheduled")
        assert when is not None
        return list(to_json(runtime.catalog.window_findings(name, dataset, when)))

    @app.get("/api/exports/{name}/windows/{scheduled}/history")
    def history(name: str, scheduled: str, dataset: str, _: str = reader) -> list[dict[str, Any]]:
        """Every status audits recorded for one window, in as-of order (historical audits included)."""
        _known_export(name)
        when = _time(scheduled, "scheduled")
        assert when is not None
        return list(to_json(runtime.catalog.window_history(name, dataset, when)))

    @app.get("/api/restore")
    def restore(dataset: str, at: str, export: str | None = None, _: str = reader) -> dict[str, Any]:
        when = _time(at, "at")
        assert when is not None
        try:
            return plan_restore(settings, runtime.catalog, dataset, when, export=export, option="export=").to_json()
        except RestoreLookupError as e:
            if e.candidates:
                raise HTTPException(409, {"message": str(e), "candidates": list(e.candidates)}) from None
            raise HTTPException(404, str(e)) from None

    @app.get("/api/alerts")
    def alerts(state: str | None = None, _: str = reader) -> list[dict[str, Any]]:
        return list(to_json(runtime.catalog.notices(state=state)))

    @app.get("/api/audits")
    def audits(_: str = reader) -> list[dict[str, Any]]:
        return list(to_json(runtime.catalog.audits()))

    @app.get("/api/audits/{audit_id}/report")
    def audit_report(audit_id: int, _: str = reader) -> dict[str, Any]:
        """The report an audit produced, exactly as recorded (historical audits too)."""
        report = runtime.catalog.audit_report(audit_id)
        if report is None:
            raise HTTPException(404, f"no audit {audit_id}")
        return report

    @app.post("/api/audits", status_code=201)
    def audit_now(_: str = admin) -> dict[str, Any]:
        if worker is None:
            raise HTTPException(503, "no worker runs in this process")
        if not settings.exports:
            raise HTTPException(400, "no exports are configured: nothing to audit")
        report = worker.audit_now(clock())
        if report is None:
            raise HTTPException(503, "the audit could not run")
        body = report.to_json()
        return {"status": report.status, "as_of": iso(report.as_of), "audit_id": report.audit_id, "summary": body["summary"], "errors": body["errors"]}

    from auditor.service.dashboard import add_dashboard

    add_dashboard(app, runtime, caller, role_of, clock)

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
