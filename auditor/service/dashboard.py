"""Server-rendered dashboard pages (Jinja2; no front-end build step)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from auditor.config import Settings
from auditor.errors import ScheduleError
from auditor.schedule import parse_time

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
COOKIE = "auditor_token"


def add_dashboard(
    app: FastAPI, settings: Settings, catalog: Any, caller: Callable[[Request], str | None], role_of: Callable[[str], str | None], clock: Callable[[], datetime]
) -> None:
    def page(request: Request, template: str, **context: Any) -> Response:
        if caller(request) is None:
            return RedirectResponse("/login", status_code=303)
        return TEMPLATES.TemplateResponse(request, template, context)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": None})

    @app.post("/login")
    def login(request: Request, token: str = Form("")) -> Response:
        if role_of(token) is None:
            return TEMPLATES.TemplateResponse(request, "login.html", {"error": "That token is not valid."}, status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        now = clock()
        exports = []
        for row in catalog.export_rows():
            until = row["restorable_until"]
            rpo = "-"
            if until:
                seconds = int((now - datetime.fromisoformat(until)).total_seconds())
                rpo = f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
            cells = [w for w in catalog.window_rows(row["name"]) if w["dataset_id"] == row["dataset_id"]]
            exports.append({**row, "rpo": rpo, "cells": cells})
        totals: dict[str, int] = {}
        for row in exports:
            for status, count in row["windows"].items():
                totals[status] = totals.get(status, 0) + count
        verdict = "not_compliant" if totals.get("missing") or totals.get("invalid") else ("incomplete" if totals.get("unknown") else "compliant")
        audits = catalog.audits(1)
        return page(request, "overview.html", verdict=verdict, exports=exports, alerts=catalog.notices(20), last_audit=audits[0]["finished_at"] if audits else None)

    @app.get("/exports/{name}/windows/{scheduled}", response_class=HTMLResponse)
    def window(request: Request, name: str, scheduled: str, dataset: str) -> Response:
        export = next((e for e in settings.exports if e.name == name), None)
        if export is None:
            raise HTTPException(404, f"no export named {name!r}")
        when = _time(scheduled)
        rows = [w for w in catalog.window_rows(name, when, when) if w["dataset_id"] == dataset]
        if not rows:
            raise HTTPException(404, "no such window in the catalog")
        row = rows[0]
        files = catalog.folder_files(export.destination, [row["folder_key"]])[row["folder_key"]] if row["folder_key"] else []
        return page(request, "window.html", export=name, dataset=dataset, scheduled=row["scheduled"], window=row, findings=catalog.window_findings(name, dataset, when), files=files)

    @app.get("/restore", response_class=HTMLResponse)
    def restore_page(request: Request, dataset: str | None = None, at: str | None = None) -> Response:
        from auditor.service.lookup import restore_from_catalog

        plan, error = None, None
        if dataset and at:
            try:
                plan = restore_from_catalog(settings, catalog, dataset, _time(at))
            except HTTPException as e:
                error = e.detail
        return page(request, "restore.html", dataset=dataset, at=at, plan=plan, error=error)

    @app.get("/alerts", response_class=HTMLResponse)
    def alerts_page(request: Request) -> Response:
        return page(request, "alerts.html", alerts=catalog.notices())


def _time(text: str) -> datetime:
    try:
        return parse_time(text, key="time")
    except ScheduleError as e:
        raise HTTPException(400, str(e)) from None
