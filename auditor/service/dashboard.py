"""Server-rendered dashboard pages (Jinja2; no front-end build step, no script), read from the catalog.

Every page is behind the service's gate (auditor.service.app): a request without a valid session
or token is sent to /login before anything is looked up. Forms that change state carry the
session's CSRF token in a hidden `csrf` field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from auditor.errors import ScheduleError
from auditor.evidence_html import CALENDAR_FILTERS
from auditor.ledger import to_json
from auditor.report import hours_minutes
from auditor.restore import RestoreLookupError, plan_restore
from auditor.runtime import Runtime
from auditor.schedule import parse_time
from auditor.service.app import MAX_AUDIT_ID, Access, Caller, dataset_json, destinations_json, verdict

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=[HERE / "templates", HERE.parent / "templates"])  # the second: the evidence calendar
TEMPLATES.env.filters.update(CALENDAR_FILTERS)
# the inline <style> elements of the dashboard and the evidence page: the only inline content the CSP allows (by hash)
PAGE_STYLES = [s for p in (HERE / "templates" / "base.html", HERE.parent / "templates" / "evidence.html") for s in re.findall(r"<style>(.*?)</style>", p.read_text(), re.DOTALL)]


def add_dashboard(app: FastAPI, runtime: Runtime, access: Access, caller: Callable[[Request], Caller | None], clock: Callable[[], datetime]) -> None:
    settings = runtime.settings

    def page(request: Request, template: str, **context: Any) -> Response:
        who = caller(request)
        if who is None:  # the gate already sent strangers to /login; never render for one
            return RedirectResponse("/login", status_code=303)
        return TEMPLATES.TemplateResponse(request, template, {**context, "csrf": who.csrf})

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": None, "csrf": None})

    @app.post("/login")
    def login(request: Request, token: str = Form("")) -> Response:
        """Sign in with a token: a new session (the gate has checked that the form is this site's own)."""
        who = access.sign_in(token, caller(request))
        if who is None:
            return TEMPLATES.TemplateResponse(request, "login.html", {"error": "That token is not valid.", "csrf": None}, status_code=401)
        response = RedirectResponse("/", status_code=303)
        access.set_cookie(request, response, who)
        return response

    @app.post("/logout")
    def logout(request: Request) -> Response:
        """Sign out: the session ends in the catalog, the cookie is cleared (the gate has checked the CSRF token)."""
        access.sign_out(caller(request))
        response = RedirectResponse("/login", status_code=303)
        access.clear_cookie(request, response)
        return response

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        now = clock()
        catalog = runtime.catalog
        states = catalog.datasets()
        exports = []
        for state in states:
            row = dataset_json(state, now)
            seconds = row["rpo_seconds"]
            rpo = hours_minutes(seconds)
            trend = catalog.rpo_trend(state.export, state.dataset_id)
            exports.append({**row, "rpo": rpo, "cells": to_json(catalog.windows(state.export, state.dataset_id)), "trend": _sparkline(trend)})
        status, _ = verdict(states)
        audits = catalog.audits(1)
        last = to_json(audits[0].finished_at) if audits else None
        sweeps = destinations_json(runtime, now)
        return page(request, "overview.html", verdict=status, exports=exports, alerts=to_json(catalog.notices(20)), last_audit=last, sweeps=sweeps, window_link=_window_link)

    @app.get("/exports/{name}/windows/{scheduled}", response_class=HTMLResponse)
    def window(request: Request, name: str, scheduled: str, dataset: str) -> Response:
        export = next((e for e in settings.exports if e.name == name), None)
        if export is None:
            raise HTTPException(404, f"no export named {name!r}")
        when = _time(scheduled)
        catalog = runtime.catalog
        rows = catalog.windows(name, dataset, when, when)
        if not rows:
            raise HTTPException(404, "no such window in the catalog")
        row = rows[0]
        files = catalog.folder_files(export.destination, [row.folder_key])[row.folder_key] if row.folder_key else []
        return page(
            request, "window.html", export=name, dataset=dataset, scheduled=to_json(row.scheduled), window=to_json(row),
            findings=to_json(catalog.window_findings(name, dataset, when)), files=to_json(files), history=to_json(catalog.window_history(name, dataset, when)),
        )

    @app.get("/audits/{audit_id}", response_class=HTMLResponse)
    def audit_page(request: Request, audit_id: int = PathParam(ge=0, le=MAX_AUDIT_ID)) -> Response:
        """The evidence page of one recorded audit (live or historical), as `auditor evidence verify` expects it."""
        if caller(request) is None:
            return RedirectResponse("/login", status_code=303)
        report = runtime.catalog.audit_report(audit_id)
        if report is None:
            raise HTTPException(404, f"no audit {audit_id}")
        from auditor.evidence_html import render_evidence

        return HTMLResponse(render_evidence(report, audit_id=audit_id))

    @app.get("/restore", response_class=HTMLResponse)
    def restore_page(request: Request, dataset: str | None = None, at: str | None = None, export: str | None = None) -> Response:
        plan, error = None, None
        if dataset and at:
            try:
                plan = plan_restore(settings, runtime.catalog, dataset, _time(at), export=export or None, option="export=").to_json()
            except RestoreLookupError as e:
                error = str(e)
            except HTTPException as e:
                error = e.detail
        names = [e.name for e in settings.exports if not dataset or dataset in e.datasets]  # a dataset several exports carry: choose one
        return page(request, "restore.html", dataset=dataset, at=at, export=export, export_names=names, plan=plan, error=error)

    @app.get("/alerts", response_class=HTMLResponse)
    def alerts_page(request: Request) -> Response:
        return page(request, "alerts.html", alerts=to_json(runtime.catalog.notices()))


def _window_link(window: dict[str, Any]) -> str:
    return f"/exports/{quote(window['export'])}/windows/{window['scheduled']}?dataset={quote(window['dataset_id'])}"


def _sparkline(points: list[tuple[datetime, int | None]], width: int = 160, height: int = 28) -> dict[str, Any]:
    """An SVG polyline of RPO hours over the newest live audits (None: nothing restorable yet)."""
    values = [(at, seconds / 3600) for at, seconds in points if seconds is not None]
    if len(values) < 2:
        return {"points": "", "latest": values[-1][1] if values else None, "max": values[-1][1] if values else None, "count": len(values)}
    top = max(v for _, v in values) or 1.0
    step = width / (len(values) - 1)
    coords = " ".join(f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, (_, v) in enumerate(values))
    return {"points": coords, "latest": values[-1][1], "max": top, "count": len(values), "first": values[0][0].strftime("%Y-%m-%dT%H:%MZ")}


def _time(text: str) -> datetime:
    try:
        return parse_time(text, key="time")
    except ScheduleError as e:
        raise HTTPException(400, str(e)) from None
