"""Set up a dataset export from the dashboard, then verify it (admin only; no script).

The guided page follows the product page's steps (destination, datasets, file options, schedule,
review): each step is a GET form that carries what was chosen so far in its query, so nothing is
stored until the review's POST creates the flow through `create_dataset_export`. Secrets are never
typed in: a new account's secret fields take `${env:NAME}` or `${file:/path}` references, which are
shown as such in the review and resolved in this process only when the flow is created.

The verification view of a flow follows its first windows: the runs the Flow Service reports, and
the windows the catalog has judged for the export built from the flow (`export_for_flow`), each
with its verdict and evidence; an admin POST audits that export now.

Every route checks the caller's role before it reads anything else.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from auditor.errors import AuditorError, FlowsError, ScheduleError
from auditor.flows.client import FlowsClient
from auditor.flows.models import Connection, Flow, Run
from auditor.ledger import to_json
from auditor.runtime import Runtime
from auditor.schedule import parse_time
from auditor.service.app import ROLES, Caller

FLOW_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}")
REFERENCE = re.compile(r"\$\{(env|file):([^}]{1,500})\}")
STEPS = ("destination", "datasets", "files", "schedule", "review")


@dataclass(frozen=True)
class Field:
    key: str  # the auth or target parameter's name in the Flow Service API
    label: str
    secret: bool = False  # given only as a ${env:…} / ${file:…} reference


@dataclass(frozen=True)
class Kind:
    label: str
    spec: str  # connection spec id
    auth: tuple[Field, ...]
    target: tuple[Field, ...]  # target parameters besides path and the file options


KINDS: dict[str, Kind] = {
    "s3": Kind("Amazon S3", "4fce964d-3f37-408f-9778-e597338a21ee", (Field("s3AccessKey", "access key ID", True), Field("s3SecretKey", "secret access key", True)),
               (Field("bucketName", "bucket"),)),
    "gcs": Kind("Google Cloud Storage", "c5d93acb-ea8b-4b14-8f53-02138444ae99",
                (Field("accessKeyId", "HMAC access key ID", True), Field("secretAccessKey", "HMAC secret", True)), (Field("bucketName", "bucket"),)),
    "azure-blob": Kind("Azure Blob Storage", "6d6b59bf-fb58-4107-9064-4d246c0e5bb2", (Field("connectionString", "connection string", True),),
                       (Field("container", "container"),)),
    "adls": Kind("Azure Data Lake Gen2", "be2c3209-53bc-47e7-ab25-145db8b873e1",
                 (Field("url", "ADLS URL"), Field("servicePrincipalId", "service principal ID"), Field("servicePrincipalKey", "service principal key", True),
                  Field("tenant", "tenant")), ()),
    "dlz": Kind("Data Landing Zone", "10440537-2a7b-4583-ac39-ed38d4b848e8", (), ()),
    "sftp": Kind("SFTP", "36965a81-b1c6-401b-99f8-22508f1e6a26",
                 (Field("domain", "host"), Field("username", "user"), Field("password", "password", True)), ()),
}
FREQUENCIES = {"once": ("day", 0), "daily": ("day", 1), **{f"every-{h}h": ("hour", h) for h in (3, 6, 8, 12)}}
MODES = {"incremental": "FIRST_FULL_THEN_INCREMENTAL", "full": "DAILY_FULL_EXPORT"}


class _Planned(FlowsClient):
    """A stand-in client for `create_dataset_export`: records every create call and sends it through
    `inner`, or (for the review, `inner` None) answers a placeholder id; reads go to `reads`. With
    `reuse`, the base connection is that existing account instead of a new one."""

    def __init__(self, inner: FlowsClient | None, reads: FlowsClient, reuse: str | None) -> None:  # no HTTP client of its own
        self.inner, self.reads, self.reuse = inner, reads, reuse
        self.calls: list[dict[str, Any]] = []

    def create(self, kind: str, body: Mapping[str, Any]) -> tuple[str, str]:
        if kind == "connections" and self.reuse:  # a create_dataset_export that cannot reuse an account itself
            return self.reuse, ""
        self.calls.append({"method": "POST", "path": f"/{kind}", "body": dict(body)})
        if self.inner is None:
            return f"<id of the new {kind[:-1]}>", ""
        return self.inner.create(kind, body)

    def base_connection(self, connection_id: str) -> Connection:
        return self.reads.base_connection(connection_id)

    def named(self, kind: str, name: str) -> list[dict[str, Any]]:
        return self.reads.named(kind, name)

    def close(self) -> None:
        pass


def add_wizard(app: FastAPI, runtime: Runtime, caller: Callable[[Request], Caller | None], clock: Callable[[], datetime]) -> None:
    from auditor.service.dashboard import TEMPLATES

    settings = runtime.settings

    def admin(request: Request) -> Caller:
        who = caller(request)
        if who is None:
            raise HTTPException(401, "a valid bearer token is required")
        if ROLES[who.role] < ROLES["admin"]:
            raise HTTPException(403, f"this token's role is {who.role}; admin is required")
        return who

    def render(request: Request, who: Caller, template: str, status: int = 200, **context: Any) -> Response:
        return TEMPLATES.TemplateResponse(request, template, {**context, "csrf": who.csrf}, status_code=status)

    def client() -> FlowsClient:
        return runtime.flows_client()  # FlowsError without a [flow_service] section

    @app.get("/setup", response_class=HTMLResponse)
    def setup(request: Request) -> Response:
        who = admin(request)
        state = _state(request.query_params.multi_items())
        step = request.query_params.get("step", "destination")
        step = step if step in STEPS else "destination"
        problems = _problems(state, upto=STEPS.index(step))
        if problems:  # back to the first step with a problem
            step = problems[0][0]
        errors = [text for _, text in problems]
        _forget_typed_secrets(state)
        context: dict[str, Any] = {"step": step, "state": state, "kinds": KINDS, "kind": KINDS.get(state.get("type", "")), "frequencies": FREQUENCIES,
                                   "modes": MODES, "errors": errors, "carry": _carry(state, step), "steps": STEPS}
        try:
            if step == "destination" and state.get("type") in KINDS:
                context["accounts"] = _accounts(client(), KINDS[state["type"]].spec)
            if step == "datasets":
                query = state.get("q", "").strip().lower()
                eligible = client().eligible_datasets()
                context["datasets"] = [d for d in eligible if not query or query in str(d.get("name", "")).lower() or query in str(d.get("id", "")).lower()]
                context["total"] = len(eligible)
            if step == "review":
                planned = _Planned(None, client(), _reuse(state))
                _create(planned, state, resolve=False)
                context["calls"] = _shown_calls(planned.calls)
        except FlowsError as e:
            context["errors"] = [*errors, f"The Flow Service could not be asked: {e}"]
        return render(request, who, "wizard.html", **context)

    @app.post("/setup")
    async def destination(request: Request) -> Response:
        """The destination step's form: POSTed, so that a secret typed in by mistake never lands in a URL."""
        who = admin(request)
        form = await request.form()
        state = _state([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
        wanted = str(form.get("step", "destination"))
        wanted = wanted if wanted in STEPS else "destination"
        problems = _problems(state, upto=1) if wanted != "destination" else []
        _forget_typed_secrets(state)
        if problems:
            return render(request, who, "wizard.html", step="destination", state=state, kinds=KINDS, kind=KINDS.get(state.get("type", "")), frequencies=FREQUENCIES,
                          modes=MODES, errors=[text for _, text in problems], carry=_carry(state, "destination"), steps=STEPS, accounts=_accounts_or_none(state))
        return RedirectResponse(f"/setup?{urlencode(_pairs(state, wanted))}", status_code=303)

    def _accounts_or_none(state: Mapping[str, Any]) -> list[dict[str, str]]:
        try:
            return _accounts(client(), KINDS[state["type"]].spec) if state.get("type") in KINDS else []
        except FlowsError:
            return []

    @app.post("/setup/create")
    async def create(request: Request) -> Response:
        who = admin(request)
        form = await request.form()
        state = _state([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
        problems = _problems(state, upto=STEPS.index("review"))
        if problems:
            return RedirectResponse(f"/setup?{urlencode(_pairs(state, 'review'))}", status_code=303)
        try:
            planned = _Planned(client(), client(), _reuse(state))
            flow = _create(planned, state, resolve=True)
        except (AuditorError, ValueError) as e:
            return render(request, who, "wizard.html", status=400, step="review", state=state, kinds=KINDS, kind=KINDS[state["type"]], frequencies=FREQUENCIES,
                          modes=MODES, errors=[f"The flow was not created: {e}"], carry=_carry(state, "review"), steps=STEPS, calls=[])
        return RedirectResponse(f"/setup/flows/{flow}", status_code=303)

    @app.get("/setup/flows/{flow_id}", response_class=HTMLResponse)
    def verify(request: Request, flow_id: str) -> Response:
        who = admin(request)
        if not FLOW_ID.fullmatch(flow_id):
            raise HTTPException(404, "no such flow")
        flow, export, problem = _export_of(flow_id)
        runs = sorted(client().runs(flow_id), key=lambda r: r.when or datetime.min.replace(tzinfo=clock().tzinfo))
        windows: list[dict[str, Any]] = []
        if export is not None:
            catalog = runtime.catalog
            for dataset in export["datasets"]:
                for row in catalog.windows(export["name"], dataset)[:12]:
                    shown = to_json(row)
                    shown["findings"] = to_json(catalog.window_findings(export["name"], dataset, row.scheduled)) if row.status != "ok" else []
                    windows.append(shown)
        windows.sort(key=lambda w: (w["scheduled"], w["dataset_id"]))
        return render(request, who, "verify.html", flow=flow, export=export, problem=problem, runs=[_run(r) for r in runs[:24]], windows=windows,
                      audited=request.query_params.get("audited"))

    @app.post("/setup/flows/{flow_id}/audit")
    def audit(request: Request, flow_id: str) -> Response:
        admin(request)
        if not FLOW_ID.fullmatch(flow_id):
            raise HTTPException(404, "no such flow")
        _, export, problem = _export_of(flow_id)
        if export is None:
            raise HTTPException(409, f"this flow cannot be audited: {problem}")
        from auditor.audit import AuditOptions
        from auditor.config import ExportSettings

        expected = ExportSettings.model_validate(export)
        scoped = settings.model_copy(update={"exports": [*(e for e in settings.exports if e.name != expected.name), expected]})
        with Runtime(scoped, checker=runtime.checker()) as rt:  # the process's validation workers; its own catalog connection
            report = rt.audit(now=clock(), options=AuditOptions(only_exports=frozenset({expected.name}), present=True))
        status = report.status if report is not None else "not run"
        return RedirectResponse(f"/setup/flows/{flow_id}?{urlencode({'audited': status})}", status_code=303)

    def _export_of(flow_id: str) -> tuple[Flow, dict[str, Any] | None, str]:
        """The flow, the export expectation built from it (or None), and why not."""
        from auditor.flows.sync import export_for_flow

        api = client()
        try:
            flow = api.flow(flow_id)
        except FlowsError as e:
            if e.status_code == 404:
                raise HTTPException(404, "no such flow") from None
            raise
        if not flow.source_connection_ids or not flow.target_connection_ids:
            return flow, None, "the flow has no source or target connection"
        source = api.source_connection(flow.source_connection_ids[0])
        target = api.target_connection(flow.target_connection_ids[0])
        service = settings.flow_service
        export, problem = export_for_flow(flow, source, target, settings.destinations, dlz_destination=service.dlz_destination if service else None)
        if export is None:
            return flow, None, f"{problem} (add a [[destinations]] entry that covers it, with the credentials the auditor reads with)"
        configured = next((e for e in settings.exports if e.flow_id == flow_id), None)
        if configured is not None:
            export["name"] = configured.name
        elif export["name"] in {e.name for e in settings.exports}:
            export["name"] = f"{export['name']}-{flow_id[:8]}"
        return flow, export, ""


# -- the wizard's state ------------------------------------------------------------------------

KEYS = {"type", "account", "name", "path", "q", "file_type", "compression", "manifest", "frequency", "start", "end", "mode"}


def _state(items: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What was chosen so far, from a query or a form (unknown keys dropped, values bounded)."""
    state: dict[str, Any] = {"datasets": [], "auth": {}, "target": {}}
    for key, value in items:
        value = value[:1000]
        if key == "datasets":
            if value and value not in state["datasets"] and len(state["datasets"]) < 100:
                state["datasets"].append(value)
        elif key.startswith("auth.") and len(key) < 60:
            state["auth"][key[5:]] = value
        elif key.startswith("target.") and len(key) < 60:
            state["target"][key[7:]] = value
        elif key in KEYS:
            state[key] = value
    return state


def _pairs(state: Mapping[str, Any], step: str) -> list[tuple[str, str]]:
    pairs = [(k, str(v)) for k, v in state.items() if k in KEYS and k != "q"]
    pairs += [("datasets", d) for d in state["datasets"]]
    pairs += [(f"auth.{k}", v) for k, v in state["auth"].items()]
    pairs += [(f"target.{k}", v) for k, v in state["target"].items()]
    return [*pairs, ("step", step)]


def _carry(state: Mapping[str, Any], step: str) -> list[tuple[str, str]]:
    """Hidden fields: everything chosen in the steps other than this one."""
    own = {
        "destination": {"type", "account", "name", "path"},
        "datasets": {"datasets"},
        "files": {"file_type", "compression", "manifest"},
        "schedule": {"frequency", "start", "end", "mode"},
        "review": set(),
    }[step]
    pairs = [(k, v) for k, v in _pairs(state, step) if k != "step"]
    if step == "destination":
        return [(k, v) for k, v in pairs if k not in own and not k.startswith(("auth.", "target."))]
    return [(k, v) for k, v in pairs if k not in own]


def _problems(state: Mapping[str, Any], *, upto: int) -> list[tuple[str, str]]:
    """(step, problem) for every step before `upto` that is not complete."""
    problems: list[tuple[str, str]] = []
    kind = KINDS.get(state.get("type", ""))
    if upto > 0:
        if kind is None:
            problems.append(("destination", "Choose a destination type."))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}", state.get("name", "")):
            problems.append(("destination", "Give the export a name (letters, digits, spaces, . _ -)."))
        path = state.get("path", "")
        if not path or "${" in path or any(seg in ("", ".", "..") for seg in path.strip("/").split("/")):
            problems.append(("destination", "Give the folder path the files go to (no empty, . or .. segments)."))
        account = state.get("account", "new")
        if kind is not None and account == "new":
            for field in kind.auth:
                value = state["auth"].get(field.key, "")
                if field.secret and not REFERENCE.fullmatch(value):
                    problems.append(("destination", f"{field.label}: give a reference, ${{env:NAME}} or ${{file:/path}}, never the secret itself."))
                elif not value:
                    problems.append(("destination", f"{field.label}: required."))
        elif kind is not None and not FLOW_ID.fullmatch(account):
            problems.append(("destination", "Choose an existing account or a new one."))
        if kind is not None:
            for field in kind.target:
                if not re.fullmatch(r"[0-9a-z][0-9a-z._-]{0,62}", state["target"].get(field.key, "")):
                    problems.append(("destination", f"{field.label}: required (lower-case letters, digits, . _ -)."))
    if upto > 1 and not state["datasets"]:
        problems.append(("datasets", "Choose at least one dataset."))
    if upto > 1 and any(not re.fullmatch(r"[0-9A-Za-z]{1,64}", d) for d in state["datasets"]):
        problems.append(("datasets", "A dataset ID is not valid."))
    files = (state.get("file_type"), state.get("compression"), state.get("manifest"))
    if upto > 2 and (files[0] not in ("JSON", "PARQUET") or files[1] not in ("GZIP", "NONE") or files[2] not in ("true", "false")):
        problems.append(("files", "Choose a file type, a compression and whether to write a manifest."))
    if upto > 3:
        if state.get("frequency") not in FREQUENCIES or state.get("mode") not in MODES:
            problems.append(("schedule", "Choose a frequency and incremental or full."))
        try:
            start = _when(state.get("start", ""))
            end = _when(state["end"]) if state.get("end") else None
            if start is None or (end is not None and end <= start):
                problems.append(("schedule", "Give a start time, and an end time after it (or none)."))
        except ScheduleError as e:
            problems.append(("schedule", str(e)))
    return problems


def _shown_calls(calls: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{**c, "body": c["body"] if isinstance(c["body"], str) else json.dumps(c["body"], indent=2, ensure_ascii=False)} for c in calls]


def _forget_typed_secrets(state: dict[str, Any]) -> None:
    """Drop every secret field's value that is not a reference: never echoed, never carried on."""
    kind = KINDS.get(state.get("type", ""))
    for field in kind.auth if kind else ():
        if field.secret and not REFERENCE.fullmatch(state["auth"].get(field.key, "")):
            state["auth"].pop(field.key, None)


def _when(text: str) -> datetime | None:
    return parse_time(text, key="time") if text else None


def _reuse(state: Mapping[str, Any]) -> str | None:
    account = state.get("account", "new")
    return None if account == "new" else str(account)


def _schedule(state: Mapping[str, Any]) -> dict[str, Any]:
    unit, interval = FREQUENCIES[state["frequency"]]
    start = _when(state["start"])
    assert start is not None
    schedule: dict[str, Any] = {"exportMode": MODES[state["mode"]], "timeUnit": unit, "interval": interval, "startTime": int(start.timestamp())}
    if state.get("end"):
        end = _when(state["end"])
        assert end is not None
        schedule["endTime"] = int(end.timestamp())
    return schedule


def _create(client: _Planned, state: Mapping[str, Any], *, resolve: bool) -> str:
    """Run `create_dataset_export` through the stand-in client (secrets resolved only when `resolve`)."""
    from auditor.flows.setup import create_dataset_export

    kind = KINDS[state["type"]]
    auth = None
    if client.reuse is None and kind.auth:
        auth = {f.key: (_resolve(state["auth"][f.key], f.label) if resolve and f.secret else state["auth"][f.key]) for f in kind.auth}
    target: dict[str, Any] = {f.key: state["target"][f.key] for f in kind.target}
    target |= {"path": state["path"], "datasetFileType": state["file_type"], "compression": state["compression"], "includeFileManifest": state["manifest"] == "true"}
    reuse: dict[str, Any] = {"base_connection": client.reuse} if client.reuse and "base_connection" in inspect.signature(create_dataset_export).parameters else {}
    return create_dataset_export(client, name=state["name"], connection_spec=kind.spec, datasets=list(state["datasets"]), target_params=target,
                                 schedule=_schedule(state), auth=auth, **reuse)


def _resolve(reference: str, label: str) -> str:
    """The value a ${env:…} / ${file:…} reference gives (never shown)."""
    found = REFERENCE.fullmatch(reference)
    if found is None:
        raise ValueError(f"{label}: not a reference")
    source, name = found.groups()
    if source == "env":
        if name not in os.environ:
            raise ValueError(f"{label}: environment variable {name} is not set in the auditor's process")
        return os.environ[name]
    try:
        return Path(name).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as e:
        raise ValueError(f"{label}: file {name} cannot be read: {e.strerror}") from None


def _accounts(client: FlowsClient, spec: str) -> list[dict[str, str]]:
    """The org's base connections ("accounts") of one destination type."""
    found = []
    for item in client._items("/connections"):  # the client has no public listing of base connections yet
        connection_spec = item.get("connectionSpec") or {}
        if isinstance(connection_spec, dict) and connection_spec.get("id") == spec and FLOW_ID.fullmatch(str(item.get("id", ""))):
            found.append({"id": str(item["id"]), "name": str(item.get("name", ""))[:200]})
    return found


def _run(run: Run) -> dict[str, Any]:
    errors = "; ".join(f"{code} {message}" for code, message in run.errors)[:300]
    return {"id": run.id, "status": run.status, "when": to_json(run.when) if run.when else "", "records": run.records, "files": run.files, "errors": errors}

