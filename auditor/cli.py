"""The `auditor` command line: each command builds the Runtime, calls one function, renders.

Flow Service commands live in auditor.cli_flows; what commands share in auditor.clikit.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import click

from auditor import __version__
from auditor.audit import AuditOptions
from auditor.clikit import CONFIG_OPTION, emit, err, guarded, progress_bar, runtime, when
from auditor.errors import CatalogUnreachable
from auditor.render import FORMATS, render_plan, render_report, render_scan, render_windows
from auditor.report import iso

_LAZY = {"evidence": "auditor.cli_evidence", "flows": "auditor.cli_flows", "emulator": "auditor.cli_flows"}  # command -> module


class _LazyGroup(click.Group):
    """A group whose named subcommands are imported when used (click's documented recipe): `auditor audit` does
    not pay for the Flow Service client, the evidence page's templates and their imports."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})  # a lazy command once loaded is among the others

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY and cmd_name not in self.commands:
            import importlib

            self.add_command(getattr(importlib.import_module(_LAZY[cmd_name]), cmd_name))
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditor")
def main() -> None:
    """Prove that AEP dataset exports landed in your storage, intact and on time."""
    import gc

    gc.freeze()  # what the imports made lives as long as the process: the collector need not scan it again and again


@main.command()
@CONFIG_OPTION
@click.option("--as-of", help="audit as of this time (ISO-8601 or epoch seconds; default now)")
@click.option("--deep", is_flag=True, help="read every byte of every file")
@click.option("--sample", type=click.FloatRange(0, 100, min_open=True), help="deep-check a rotating PCT of files")
@click.option("--cluster", metavar="ADDRESS", help="deep-check on this Dask scheduler (tcp://HOST:PORT, tls://…; default [validation] cluster)")
@click.option("--full-sweep", is_flag=True, help="list every destination in full now, not only the windows that can still change")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="write the report here instead of stdout")
@guarded
def audit(config_path: str | None, as_of: str | None, deep: bool, sample: float | None, cluster: str | None, full_sweep: bool, fmt: str, output: str | None) -> None:
    """Scan, validate and reconcile every export; exit 0 compliant, 1 not, 2 usage, 3 incomplete."""
    if deep and sample:
        raise click.UsageError("use --deep or --sample, not both")
    if cluster and not (deep or sample):
        raise click.UsageError("--cluster runs deep checks: use it with --deep or --sample")
    moment = when(as_of, "--as-of")
    if moment > datetime.now(UTC) + timedelta(minutes=5):
        raise click.BadParameter("is in the future: an audit as of a time that has not come yet would freeze the catalog's present", param_hint="--as-of")
    from auditor.config import load_from_environment
    from auditor.runtime import Runtime

    with Runtime(load_from_environment(config_path), cluster=cluster) as rt, progress_bar() as bar:
        options = AuditOptions(deep=deep, sample_percent=sample, full_sweep=full_sweep, present=as_of in (None, "now"))
        # a back-dated audit can be live (an export's first audit, a catch-up): its notices are new now all the same (dated
        # as of then, a notice was given up at its first failed delivery, as older than give_up_after)
        queued = None if options.present else datetime.now(UTC)
        report = rt.audit(now=moment, options=options, progress=bar, queued_at=queued)
        assert report is not None  # waits for other auditors of the same destinations
        if report.live and rt.settings.channels:
            rt.deliver(queued or moment)
    if report.audit_id is not None and not report.live:
        err.print(f"historical audit (as of {iso(report.as_of)}): recorded as audit {report.audit_id}; the present state was left as it is")
    if fmt == "html":  # the evidence page: verifiable against the catalog (auditor evidence verify)
        from auditor.evidence_html import render_evidence

        emit(render_evidence(report.to_json(), audit_id=report.audit_id), output)
        sys.exit(report.exit_code)
    emit(render_report(report, fmt), output)
    sys.exit(report.exit_code)


@main.command()
@click.argument("dataset")
@click.option("--at", "at", required=True, help="restore the data as of this time")
@click.option("--export", "export_name", help="the export to restore from, when several carry the dataset")
@click.option("--refresh", is_flag=True, help="audit that export now before answering (otherwise: from the catalog only)")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--download", "target", help="copy the chain's files to this fsspec URL")
@CONFIG_OPTION
@guarded
def restore(dataset: str, at: str, export_name: str | None, refresh: bool, fmt: str, target: str | None, config_path: str | None) -> None:
    """Which files restore DATASET as of --at, from the catalog; exit 0 complete, 1 broken, 3 cannot tell."""
    from auditor.restore import choose_export, download, plan_restore, strays

    moment = when(at, "--at")
    with runtime(config_path) as rt:
        name = choose_export(rt.settings, dataset, export_name)
        if refresh:  # the engineer's "look at storage now": every window of the export listed, settled ones included
            report = rt.audit(now=datetime.now(UTC), options=AuditOptions(only_exports=frozenset({name}), present=True, full_sweep=True))
            for problem in report.errors if report else ():
                err.print(f"warning: {problem.destination}: {problem.message}", markup=False)
        plan = plan_restore(rt.settings, rt.catalog, dataset, moment, export=name)
        emit(render_plan(plan, fmt), None)
        if target:
            if not plan.steps:
                raise click.ClickException("nothing to download: the chain has no good window")
            written = download(plan, rt.store(plan.destination), target, audited=[d.url for d in rt.settings.destinations])
            err.print(f"downloaded {len(written)} files" + ("" if plan.complete else " (only the good part of a broken chain)"))
            others = strays(target, written)
            if others:
                err.print(f"warning: the target also holds {others} file(s) this restore did not write (an earlier download?): they are no part of this plan")
    sys.exit(plan.exit_code)


@main.command()
@CONFIG_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@guarded
def scan(config_path: str | None, fmt: str) -> None:
    """List each destination once and show what landed, without validating or recording."""
    from auditor.audit import scan_destinations

    with runtime(config_path) as rt:
        folders, unexpected, failures = scan_destinations(rt.settings, rt.stores(), datetime.now(UTC))
    for failure in failures:
        err.print(f"error: {failure}", markup=False)
    click.echo(render_scan(folders, unexpected, fmt), nl=False)
    sys.exit(3 if failures else 0)


@main.command()
@click.argument("export_name", metavar="EXPORT")
@CONFIG_OPTION
@click.option("--as-of", help="list windows up to this time (default now)")
@click.option("--last", type=click.IntRange(min=1), default=50, show_default=True, help="show only the newest N windows")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@guarded
def windows(export_name: str, config_path: str | None, as_of: str | None, last: int, fmt: str) -> None:
    """The expected windows of EXPORT with their deadlines and last recorded status."""
    with runtime(config_path) as rt:
        export = next((e for e in rt.settings.exports if e.name == export_name), None)
        if export is None:
            raise click.UsageError(f"no export named {export_name!r} (configured: {', '.join(e.name for e in rt.settings.exports) or 'none'})")
        catalog = rt.catalog_or_none()
        if catalog is None:
            err.print(f"warning: {rt.catalog_problem}; statuses unknown", markup=False)
        known = {(w.dataset_id, w.scheduled): w.status for w in catalog.windows(export.name)} if catalog else {}
    slots = list(export.schedule.slots(end=when(as_of, "--as-of")))[-last:]
    rows = [(d, s, s + export.grace, known.get((d, s), "not audited")) for s in slots for d in export.datasets]
    click.echo(render_windows(export.name, rows, fmt), nl=False)


@main.group()
def db() -> None:
    """Catalog database maintenance."""


@db.command("upgrade")
@CONFIG_OPTION
@guarded
def db_upgrade(config_path: str | None) -> None:
    """Bring the catalog schema to the newest revision (Alembic)."""
    from auditor.catalog.engine import make_engine, schema_state, upgrade
    from auditor.config import load_from_environment

    engine = make_engine(load_from_environment(config_path).catalog.url)
    try:
        upgrade(engine)
        current, _ = schema_state(engine)
    finally:
        engine.dispose()
    err.print(f"catalog at revision {current}")


@main.command()
@click.option("--workspace", type=click.Path(file_okay=False), help="keep the demo here instead of a temporary folder")
@click.option("--serve", "serve_after", is_flag=True, help="then keep the emulator and serve the dashboard on 127.0.0.1 (prints the URL and a one-time token) until Ctrl-C")
@guarded
def demo(workspace: str | None, serve_after: bool) -> None:
    """The whole product on a simulated week: emulated flows with faults, sync, audit, alerts, restore."""
    from auditor.demo import tell

    tell(workspace, click.echo, serve=serve_after)


@main.command()
@CONFIG_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--reuse-port", is_flag=True,
    help="share the port with other `auditor serve` processes on this machine (SO_REUSEPORT: the kernel spreads connections over them); "
    "each runs its own worker, and the catalog's locks keep two from auditing one destination at once",
)
@guarded
def serve(config_path: str | None, host: str, port: int, reuse_port: bool) -> None:
    """Audit on each destination's interval, alert, and serve the HTTP API and /metrics."""
    import uvicorn

    from auditor.service.app import create_app
    from auditor.service.worker import Worker

    if reuse_port and port == 0:
        raise click.UsageError("--reuse-port shares a port the processes name: give it with --port")
    # bound (not yet listening: no connection is queued here before the app can answer it) before the worker
    # starts, so that a port that cannot be shared stops the process at once
    bound = shared_socket(host, port) if reuse_port else None
    with contextlib.closing(bound) if bound is not None else contextlib.nullcontext(), runtime(config_path) as rt, _sigterm_as_interrupt():
        try:
            rt.catalog  # noqa: B018 - a catalog that needs an upgrade, or a SQLite file that cannot be opened, stops the start
        except CatalogUnreachable as e:
            if rt.settings.catalog.url.startswith("sqlite"):
                raise
            # a database server that does not answer yet (both started together, it restarts): exiting would leave the
            # audits to a supervisor's restart policy, which may give up; serving says so on /healthz (503) and the
            # worker audits once it answers
            err.print(f"warning: {e}; serving meanwhile: /healthz answers 503 and audits wait until the catalog answers", markup=False, highlight=False)
        worker = Worker(rt)
        worker.start()
        shared = " (port shared with other processes)" if reuse_port else ""
        err.print(f"auditor serving on http://{host}:{port}{shared} (API under /api, /healthz, /metrics); worker {rt.holder}")
        try:
            if bound is None:
                uvicorn.run(create_app(rt, worker), host=host, port=port, log_level="warning")
            else:
                app = create_app(rt, worker)
                try:  # now, not when bound: a connection waits for a process that can answer it; and here, not in the event
                    bound.listen(2048)  # loop, whose server would take a refusal quietly and serve nothing
                except OSError as e:
                    raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
                with contextlib.suppress(KeyboardInterrupt):  # uvicorn.run's own way with Ctrl-C: a clean stop
                    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[bound])
        finally:
            worker.stop()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (systemd, Kubernetes, `docker stop`) stops the service as Ctrl-C does: uvicorn shuts the server down
    and raises the signal again with the handler it found, which is this one, so the worker stops (its audit
    finishes, up to Worker.stop's timeout, and is recorded), the validation workers and the catalog are closed,
    and the process exits 0. Under the default action the process died at once and lost the audit it was running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def shared_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) that other processes may bind too (SO_REUSEPORT); the server
    that serves on it makes it listen."""
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None:
        raise click.UsageError("--reuse-port needs SO_REUSEPORT, which this platform does not have")
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listening = socket.socket(family, kind, proto)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.setsockopt(socket.SOL_SOCKET, option, 1)
        try:
            listening.bind(address)
        except OSError:
            listening.close()
            raise
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return listening

