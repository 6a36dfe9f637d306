"""The `auditor` command line: each command loads settings, builds adapters, calls one function, renders."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from auditor import __version__
from auditor.audit import AuditOptions, Checker, InProcessChecker, run_audit, sort_objects
from auditor.audit import Progress as ProgressCallback
from auditor.config import Settings, load_from_environment
from auditor.errors import AuditorError, CatalogError, ScheduleError, StorageError
from auditor.render import FORMATS, render_plan, render_report
from auditor.report import AuditError, AuditReport, iso
from auditor.schedule import parse_time
from auditor.storage import Store, open_store

CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file (else $AUDITOR_CONFIG, else config/auditor.toml)")
err = Console(stderr=True)


class _Unavailable:
    """A destination whose store could not even be built: every call reports why."""

    bytes_read = 0

    def __init__(self, url: str, error: StorageError) -> None:
        self.url, self._error = url, error

    def count(self, size: int) -> None:
        pass

    def list(self, prefix: str = "") -> list[Any]:
        raise self._error

    def read_range(self, key: str, start: int, end: int) -> bytes:
        raise self._error

    def open(self, key: str) -> Any:
        raise self._error


def build_stores(settings: Settings) -> dict[str, Store]:
    stores: dict[str, Store] = {}
    for destination in settings.destinations:
        try:
            stores[destination.name] = open_store(destination.url, _with_dlz_credentials(settings, destination.options))
        except StorageError as e:
            stores[destination.name] = _Unavailable(e.url, e)
    return stores


def _with_dlz_credentials(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    """`dlz_credentials = true`: fetch the Data Landing Zone's SAS from the Flow Service now
    (a fresh one every audit, so it never expires under a running audit)."""
    if not options.get("dlz_credentials"):
        return options
    from auditor.errors import FlowsError

    rest = {k: v for k, v in options.items() if k != "dlz_credentials"}
    if settings.flow_service is None:
        raise StorageError("options.dlz_credentials needs a [flow_service] section")
    client = build_flows_client(settings)
    try:
        credentials = client.dlz_credentials(settings.flow_service.landing_zone_url)
    except FlowsError as e:
        raise StorageError(f"cannot fetch the Data Landing Zone credentials: {e}") from e
    finally:
        client.close()
    if not credentials.get("SASUri"):
        raise StorageError("the Data Landing Zone credentials have no SASUri")
    return {**rest, "sas_url": credentials["SASUri"]}


def open_catalog_or_none(settings: Settings) -> tuple[Any, str | None]:
    from auditor.catalog.repository import open_catalog

    try:
        return open_catalog(settings.catalog.url), None
    except CatalogError as e:
        return None, str(e)


def _time(value: str | None, name: str) -> datetime:
    if value is None or value == "now":
        return datetime.now(UTC)
    try:
        return parse_time(value, key=name)
    except ScheduleError as e:
        raise click.BadParameter(str(e).split(": ", 1)[-1], param_hint=name) from None


@contextmanager
def _progress(enabled: bool) -> Iterator[ProgressCallback | None]:
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"checking files ({phase})", total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


@contextmanager
def build_checker(settings: Settings) -> Iterator[Checker]:
    """The file checker the settings ask for: isolated worker processes unless turned off."""
    if not settings.validation.isolate:
        yield InProcessChecker()
        return
    from auditor.validate.sandbox import Limits, Sandbox

    v = settings.validation
    limits = Limits(memory_bytes=v.memory_mb << 20, timeout_seconds=v.timeout_seconds, min_throughput=v.min_throughput_mb * (1 << 20))
    with Sandbox(workers=v.workers or None, limits=limits) as sandbox:
        yield sandbox


def build_flows_client(settings: Settings) -> Any:
    from auditor.flows.client import FlowsClient

    service = settings.flow_service
    if service is None:
        raise click.UsageError("no [flow_service] section in the configuration")
    return FlowsClient(
        service.base_url, ims_url=service.ims_url, client_id=service.client_id, client_secret=service.client_secret, org_id=service.org_id, sandbox=service.sandbox, scopes=service.scopes,
        retries=service.retries,
    )


def fetch_runs(settings: Settings) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[AuditError]]:
    """Runs and flows of every export that names its flow, when the Flow Service is configured."""
    from auditor.errors import FlowsError

    flow_ids = sorted({e.flow_id for e in settings.exports if e.flow_id})
    if settings.flow_service is None or not flow_ids:
        return None, None, []
    client = build_flows_client(settings)
    runs: dict[str, Any] = {}
    flows: dict[str, Any] = {}
    problems = []
    try:
        for flow_id in flow_ids:
            flows[flow_id] = client.flow(flow_id)
            runs[flow_id] = client.runs(flow_id)
    except FlowsError as e:
        problems.append(AuditError("flow service", f"runs could not be read now, so windows are judged with the runs the catalog recorded before: {e}"))
        return None, None, problems
    finally:
        client.close()
    return runs, flows, problems


def execute_audit(settings: Settings, *, now: datetime, options: AuditOptions, progress: bool = True) -> AuditReport:
    """Build the adapters from settings and run one audit (the CLI's and the demo's path)."""
    catalog, problem = open_catalog_or_none(settings)
    options = replace(options, workers=settings.validation.threads)
    runs, flows, run_problems = fetch_runs(settings)
    if run_problems and catalog is not None:  # the Flow Service is down: judge with the runs the catalog kept
        try:
            runs = catalog.runs_of(e.flow_id for e in settings.exports if e.flow_id)
        except CatalogError:
            runs = None
    with _progress(progress) as callback, build_checker(settings) as checker:
        report = run_audit(
            settings,
            stores=build_stores(settings),
            catalog=catalog,
            now=now,
            started=datetime.now(UTC),
            options=options,
            progress=callback,
            checker=checker,
            runs=runs,
            flows=flows,
        )
    extra = list(run_problems)
    if problem:
        extra.append(AuditError("catalog", f"{problem}; nothing was recorded"))
    return replace(report, errors=(*report.errors, *extra)) if extra else report


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditor")
def main() -> None:
    """Prove that AEP dataset exports landed in your storage, intact and on time."""


def _run(command: Any) -> Any:
    """Render AuditorError as a message and exit code 2 (usage or configuration error)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AuditorError as e:
            err.print(f"error: {e}", markup=False, highlight=False)
            sys.exit(2)

    wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
    return wrapper


@main.command()
@CONFIG_OPTION
@click.option("--as-of", help="audit as of this time (ISO-8601 or epoch seconds; default now)")
@click.option("--deep", is_flag=True, help="read every byte of every file")
@click.option("--sample", type=click.FloatRange(0, 100, min_open=True), help="deep-check a rotating PCT of files")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="write the report here instead of stdout")
@_run
def audit(config_path: str | None, as_of: str | None, deep: bool, sample: float | None, fmt: str, output: str | None) -> None:
    """Scan, validate and reconcile every export; exit 0 compliant, 1 not, 2 usage, 3 incomplete."""
    if deep and sample:
        raise click.UsageError("use --deep or --sample, not both")
    settings = load_from_environment(config_path)
    report = execute_audit(settings, now=_time(as_of, "--as-of"), options=AuditOptions(deep=deep, sample_percent=sample))
    _emit(render_report(report, fmt), output)
    sys.exit(report.exit_code)


@main.command()
@click.argument("dataset")
@click.option("--at", "at", required=True, help="restore the data as of this time")
@click.option("--export", "export_name", help="the export to restore from, when several carry the dataset")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--download", "target", help="copy the chain's files to this fsspec URL")
@CONFIG_OPTION
@_run
def restore(dataset: str, at: str, export_name: str | None, fmt: str, target: str | None, config_path: str | None) -> None:
    """Which files restore DATASET as of --at; exit 0 complete, 1 broken, 3 could not read."""
    from auditor.restore import download, plan_restore

    settings = load_from_environment(config_path)
    candidates = [e.name for e in settings.exports if dataset in e.datasets and (export_name is None or e.name == export_name)]
    if not candidates:
        raise click.UsageError(f"no configured export carries dataset {dataset!r}" + (f" under the name {export_name!r}" if export_name else ""))
    if len(candidates) > 1:
        raise click.UsageError(f"dataset {dataset!r} is exported by {', '.join(candidates)}: choose one with --export")
    moment = _time(at, "--at")
    report = execute_audit(settings, now=datetime.now(UTC), options=AuditOptions(only_exports=frozenset(candidates)))
    result = next(r for r in report.exports if r.dataset_id == dataset)
    plan = plan_restore(result, moment)
    _emit(render_plan(plan, fmt), None)
    for problem in report.errors:
        err.print(f"warning: {problem.destination}: {problem.message}", markup=False)
    if target:
        if not plan.steps:
            raise click.ClickException("nothing to download: the chain has no good window")
        store = build_stores(settings)[result.destination]
        written = download(plan, store, target)
        err.print(f"downloaded {len(written)} files to {target}" + ("" if plan.complete else " (only the good part of a broken chain)"))
    if plan.broken_at is not None and plan.broken_at.status.value == "unknown":
        sys.exit(3)
    sys.exit(0 if plan.complete else 1)


@main.command()
@CONFIG_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_run
def scan(config_path: str | None, fmt: str) -> None:
    """List each destination once and show what landed, without validating or recording."""
    import json

    from rich.table import Table

    settings = load_from_environment(config_path)
    stores = build_stores(settings)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    unexpected: list[dict[str, str]] = []
    failures = 0
    for destination in settings.destinations:
        exports = [e for e in settings.exports if e.destination == destination.name]
        try:
            objects = stores[destination.name].list()
        except StorageError as e:
            failures += 1
            err.print(f"error: {destination.name}: {e}", markup=False)
            continue
        found = sort_objects(objects, exports, stores[destination.name].url, now)
        for (export, dataset, slot), draft in sorted(found.folders.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
            rows.append({"destination": destination.name, "export": export, "dataset_id": dataset, "scheduled": iso(slot), "folder": draft.url,
                         "files": len(draft.data), "bytes": sum(o.size for o in draft.data), "manifests": len(draft.manifests)})
        unexpected += [{"path": p, "reason": r} for p, r in sorted(found.unexpected.items())]
    if fmt == "json":
        click.echo(json.dumps({"folders": rows, "unexpected": unexpected}, indent=2))
    else:
        console = Console()
        table = Table(title="Export folders", title_justify="left")
        for column in ("export", "dataset", "scheduled", "files", "bytes", "manifests"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["export"], row["dataset_id"], row["scheduled"], str(row["files"]), str(row["bytes"]), str(row["manifests"]))
        console.print(table)
        for item in unexpected:
            console.print(f"unexpected: {item['path']}: {item['reason']}", markup=False)
    sys.exit(3 if failures else 0)


@main.command()
@click.argument("export_name", metavar="EXPORT")
@CONFIG_OPTION
@click.option("--as-of", help="list windows up to this time (default now)")
@click.option("--last", type=click.IntRange(min=1), default=50, show_default=True, help="show only the newest N windows")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_run
def windows(export_name: str, config_path: str | None, as_of: str | None, last: int, fmt: str) -> None:
    """The expected windows of EXPORT with their deadlines and last recorded status."""
    import json

    from rich.table import Table

    settings = load_from_environment(config_path)
    export = next((e for e in settings.exports if e.name == export_name), None)
    if export is None:
        raise click.UsageError(f"no export named {export_name!r} (configured: {', '.join(e.name for e in settings.exports) or 'none'})")
    now = _time(as_of, "--as-of")
    catalog, problem = open_catalog_or_none(settings)
    if problem:
        err.print(f"warning: {problem}; statuses unknown", markup=False)
    known = catalog.window_states(export.name) if catalog else {}
    slots = list(export.schedule.slots(end=now))[-last:]
    rows = [
        {"dataset_id": d, "scheduled": iso(s), "deadline": iso(s + export.grace), "status": (known.get((d, s)) or {}).get("status", "not audited")}
        for s in slots
        for d in export.datasets
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Windows of {export.name}", title_justify="left")
    for column in ("dataset", "scheduled", "deadline", "last status"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["dataset_id"], row["scheduled"], row["deadline"], row["status"])
    Console().print(table)


@main.group()
def db() -> None:
    """Catalog database maintenance."""


@db.command("upgrade")
@CONFIG_OPTION
@_run
def db_upgrade(config_path: str | None) -> None:
    """Bring the catalog schema to the newest revision (Alembic)."""
    from auditor.catalog.engine import make_engine, schema_state, upgrade

    settings = load_from_environment(config_path)
    engine = make_engine(settings.catalog.url)
    upgrade(engine)
    current, _ = schema_state(engine)
    err.print(f"catalog at revision {current}")


@main.command()
@click.option("--workspace", type=click.Path(file_okay=False), help="keep the demo here instead of a temporary folder")
@_run
def demo(workspace: str | None) -> None:
    """The whole product on a simulated week: emulated flows with faults, sync, audit, alerts, restore."""
    import os

    from auditor.catalog.repository import open_catalog
    from auditor.demo import CLIENT_SECRET, WEB_EVENTS, demo_world, webhook_receiver
    from auditor.flows.sync import fetch_and_sync
    from auditor.restore import plan_restore
    from auditor.service.worker import Worker

    folder = Path(workspace) if workspace else Path(tempfile.mkdtemp(prefix="auditor-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, "DEMO_FLOW_SERVICE_SECRET": CLIENT_SECRET}
    with webhook_receiver() as (hook, pages), demo_world(folder, datetime.now(UTC), hook) as world:
        click.echo(f"Demo workspace: {folder}")
        click.echo(f"Flow Service emulator at {world.base_url}: 3 dataset-export flows ran from {iso(world.start)} to {iso(world.as_of)}.")
        click.echo("Injected faults:")
        for fault in world.faults:
            click.echo(f"  - {fault}")
        from auditor.config import load_settings

        settings = load_settings(world.config, environ)
        client = build_flows_client(settings)
        synced = fetch_and_sync(client, settings)
        client.close()
        import tomli_w

        (folder / "flows.toml").write_text(tomli_w.dumps({"exports": synced.exports}), encoding="utf-8")
        click.echo(f"\n$ auditor flows sync  ->  {len(synced.exports)} exports written to {folder / 'flows.toml'}\n")
        settings = load_settings(world.config, environ)
        report = execute_audit(settings, now=world.as_of, options=AuditOptions())
        click.echo(render_report(report, "table"))
        worker = Worker(settings, open_catalog(settings.catalog.url), lambda s, n, e: report, clock=lambda: world.as_of)
        worker.queue_alerts(report, world.as_of)
        worker.deliver_pending(world.as_of)
        click.echo(f"Alerts that fired ({len(pages)}, delivered to the webhook at {hook}):")
        for page in pages:
            click.echo(f"  - [{page['rule']}] {page['text']}")
        result = next(r for r in report.exports if r.dataset_id == WEB_EVENTS)
        click.echo("\n$ auditor restore " + WEB_EVENTS + " --at " + (iso(world.as_of) or ""))
        click.echo(render_plan(plan_restore(result, world.as_of), "table"))
        html = folder / "evidence.html"
        html.write_text(render_report(report, "html"), encoding="utf-8")
        click.echo(f"Evidence report: {html}")
        click.echo(f"Next: auditor audit --config {world.config} --as-of {iso(world.as_of)}  (with DEMO_FLOW_SERVICE_SECRET set; the emulator stops with the demo)")


@main.group()
def flows() -> None:
    """Adobe's dataset-export dataflows, through the Flow Service API."""


@flows.command("list")
@CONFIG_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_run
def flows_list(config_path: str | None, fmt: str) -> None:
    """The org's dataset-export flows."""
    import json

    from rich.table import Table

    client = build_flows_client(load_from_environment(config_path))
    found = client.flows()
    if fmt == "json":
        click.echo(json.dumps([{"id": f.id, "name": f.name, "state": f.state, "scheduleParams": dict(f.schedule_params)} for f in found], indent=2))
        return
    table = Table(title="Dataset-export flows", title_justify="left")
    for column in ("id", "name", "state", "schedule"):
        table.add_column(column)
    for f in found:
        p = f.schedule_params
        table.add_row(f.id, f.name, f.state, f"{p.get('exportMode', 'FIRST_FULL_THEN_INCREMENTAL')} every {p.get('interval')} {p.get('timeUnit')}")
    Console().print(table)


@flows.command("sync")
@CONFIG_OPTION
@click.option("--output", type=click.Path(dir_okay=False), help="write the [[exports]] here (include it from the main config)")
@_run
def flows_sync(config_path: str | None, output: str | None) -> None:
    """Turn the org's dataset-export flows into [[exports]] entries."""
    import tomli_w

    from auditor.flows.sync import fetch_and_sync

    settings = load_from_environment(config_path)
    client = build_flows_client(settings)
    result = fetch_and_sync(client, settings)
    text = "# written by `auditor flows sync`; edit the main config instead, this file is replaced\n" + tomli_w.dumps({"exports": result.exports})
    if output:
        Path(output).write_text(text, encoding="utf-8")
        err.print(f"wrote {len(result.exports)} exports to {output}")
    else:
        click.echo(text, nl=False)
    for problem in result.problems:
        err.print(f"warning: {problem}", markup=False)


@flows.command("runs")
@click.argument("flow_id", metavar="FLOW")
@CONFIG_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_run
def flows_runs(flow_id: str, config_path: str | None, fmt: str) -> None:
    """The runs of one flow, newest first."""
    import json

    from rich.table import Table

    runs = build_flows_client(load_from_environment(config_path)).runs(flow_id)
    if fmt == "json":
        click.echo(json.dumps([{"id": r.id, "status": r.status, "started": iso(r.started_at), "records": r.records, "files": r.files, "errors": r.errors} for r in runs], indent=2))
        return
    table = Table(title=f"Runs of {flow_id}", title_justify="left")
    for column in ("run", "status", "started", "records", "files", "errors"):
        table.add_column(column)
    for r in runs:
        table.add_row(r.id, r.status, iso(r.started_at) or "", str(r.records), str(r.files), "; ".join(f"{c}: {m}" for c, m in r.errors))
    Console().print(table)


@flows.command("enable")
@click.argument("flow_id", metavar="FLOW")
@CONFIG_OPTION
@_run
def flows_enable(flow_id: str, config_path: str | None) -> None:
    """Enable a flow."""
    build_flows_client(load_from_environment(config_path)).set_enabled(flow_id, True)
    err.print(f"flow {flow_id} enabled")


@flows.command("disable")
@click.argument("flow_id", metavar="FLOW")
@CONFIG_OPTION
@_run
def flows_disable(flow_id: str, config_path: str | None) -> None:
    """Disable a flow."""
    build_flows_client(load_from_environment(config_path)).set_enabled(flow_id, False)
    err.print(f"flow {flow_id} disabled")


DESTINATION_TYPES = {
    "s3": ("4fce964d-3f37-408f-9778-e597338a21ee", {"s3AccessKey": "AEP_S3_ACCESS_KEY", "s3SecretKey": "AEP_S3_SECRET_KEY"}),
    "azure-blob": ("6d6b59bf-fb58-4107-9064-4d246c0e5bb2", {"connectionString": "AEP_AZURE_CONNECTION_STRING"}),
    "dlz": ("10440537-2a7b-4583-ac39-ed38d4b848e8", {}),
}
SCHEDULES = {
    "once": ("DAILY_FULL_EXPORT", "day", 0),
    "daily": ("FIRST_FULL_THEN_INCREMENTAL", "day", 1),
    **{f"every-{h}h": ("FIRST_FULL_THEN_INCREMENTAL", "hour", h) for h in (3, 6, 8, 9, 12)},
}


@flows.command("create")
@click.option("--name", required=True)
@click.option("--type", "kind", type=click.Choice(sorted(DESTINATION_TYPES)), required=True, help="destination type; credentials come from the environment")
@click.option("--dataset", "datasets", multiple=True, required=True, help="dataset ID (repeatable)")
@click.option("--format", "file_format", type=click.Choice(["json", "parquet"]), default="parquet", show_default=True)
@click.option("--compression", type=click.Choice(["gzip", "none"]), default="gzip", show_default=True)
@click.option("--manifest/--no-manifest", default=True, show_default=True)
@click.option("--bucket", help="S3 bucket")
@click.option("--container", help="Azure container")
@click.option("--path", "folder", default="", help="folder path in the destination")
@click.option("--schedule", type=click.Choice(sorted(SCHEDULES)), default="daily", show_default=True)
@click.option("--start", required=True, help="first export time (ISO-8601 or epoch seconds)")
@click.option("--end", help="end time (exclusive); AEP defaults to six months")
@CONFIG_OPTION
@_run
def flows_create(
    name: str, kind: str, datasets: tuple[str, ...], file_format: str, compression: str, manifest: bool, bucket: str | None, container: str | None,
    folder: str, schedule: str, start: str, end: str | None, config_path: str | None,
) -> None:
    """Set up a dataset export end to end (source, base and target connections, then the flow).

    Secrets are read from the environment (AEP_S3_ACCESS_KEY/AEP_S3_SECRET_KEY, or
    AEP_AZURE_CONNECTION_STRING) and never printed.
    """
    import os

    from auditor.flows.setup import create_dataset_export

    if file_format == "json" and compression == "none":
        err.print("warning: newer Adobe docs support JSON only compressed; the API may refuse json+none")
    spec, secret_env = DESTINATION_TYPES[kind]
    missing = [env for env in secret_env.values() if not os.environ.get(env)]
    if missing:
        raise click.UsageError(f"set {', '.join(missing)} in the environment (secrets are never taken as arguments)")
    params: dict[str, Any] = {"path": folder, "datasetFileType": file_format.upper(), "compression": compression.upper(), "includeFileManifest": manifest}
    if kind == "s3":
        if not bucket:
            raise click.UsageError("--bucket is required for s3")
        params["bucketName"] = bucket
    if kind == "azure-blob":
        if not container:
            raise click.UsageError("--container is required for azure-blob")
        params["container"] = container
    mode, unit, interval = SCHEDULES[schedule]
    schedule_params: dict[str, Any] = {"exportMode": mode, "timeUnit": unit, "interval": interval, "startTime": int(_time(start, "--start").timestamp())}
    if end:
        schedule_params["endTime"] = int(_time(end, "--end").timestamp())
    client = build_flows_client(load_from_environment(config_path))
    auth = {key: os.environ[env] for key, env in secret_env.items()}
    flow_id = create_dataset_export(client, name=name, connection_spec=spec, datasets=list(datasets), target_params=params, schedule=schedule_params, auth=auth)
    click.echo(flow_id)


@flows.command("trigger")
@click.argument("flow_id", metavar="FLOW")
@CONFIG_OPTION
@_run
def flows_trigger(flow_id: str, config_path: str | None) -> None:
    """Run a flow's export now. UNDOCUMENTED Adobe endpoint (seen only in Adobe's aepp client): may change."""
    settings = load_from_environment(config_path)
    client = build_flows_client(settings)
    assert settings.flow_service is not None
    datasets = client.source_connection(client.flow(flow_id).source_connection_ids[0]).params.get("datasets") or []
    runs = client.trigger(settings.flow_service.adhoc_url, flow_id, [str(d.get("dataSetId")) for d in datasets])
    err.print("note: ad-hoc dataset runs use an undocumented Adobe endpoint (reference §8.5)")
    for run_id in runs:
        click.echo(run_id)


@main.group()
def emulator() -> None:
    """The Flow Service API emulator that ships with the project (tests and the demo)."""


@emulator.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--client-id", required=True, help="the only client ID its IMS endpoint accepts")
@click.option("--client-secret", required=True, envvar="EMULATOR_CLIENT_SECRET", help="the only client secret it accepts (or $EMULATOR_CLIENT_SECRET)")
@click.option("--dlz-url", help="fsspec URL where Data Landing Zone flows write")
@click.option("--s3-endpoint", help="S3 endpoint where Amazon S3 flows write (e.g. a moto server)")
@click.option("--now", "start", help="the emulated clock's start (default now)")
def emulator_serve(host: str, port: int, client_id: str, client_secret: str, dlz_url: str | None, s3_endpoint: str | None, start: str | None) -> None:
    """Serve the emulator in the foreground; POST /emulator/clock moves its clock."""
    from auditor.emulator.server import serve
    from auditor.emulator.state import World

    world = World(client_id, client_secret, dlz_url=dlz_url, s3_endpoint=s3_endpoint, now=_time(start, "--now"))
    err.print(f"Flow Service emulator on http://{host}:{port} (IMS at /ims/token/v3, Flow Service at /data/foundation/flowservice)")
    serve(world, host=host, port=port)


@main.command()
@CONFIG_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@_run
def serve(config_path: str | None, host: str, port: int) -> None:
    """Audit on each destination's interval, alert, and serve the HTTP API and /metrics."""
    import threading

    import uvicorn

    from auditor.catalog.repository import open_catalog
    from auditor.service.app import create_app
    from auditor.service.worker import Worker

    settings = load_from_environment(config_path)
    catalog = open_catalog(settings.catalog.url)

    def audit(s: Settings, now: datetime, exports: frozenset[str]) -> AuditReport:
        return execute_audit(s, now=now, options=AuditOptions(only_exports=exports), progress=False)

    worker = Worker(settings, catalog, audit)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True, name="auditor-worker")
    thread.start()
    err.print(f"auditor serving on http://{host}:{port} (API under /api, /healthz, /metrics)")
    try:
        uvicorn.run(create_app(settings, catalog, worker), host=host, port=port, log_level="warning")
    finally:
        stop.set()
        thread.join(30)
