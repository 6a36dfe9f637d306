"""`auditor flows …` and `auditor emulator serve`: Adobe's dataset-export dataflows through the Flow Service API.

Every command gets its client from the Runtime, which closes it when the command ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from auditor.clikit import CONFIG_OPTION, err, guarded, runtime, when
from auditor.render import render_flows, render_runs

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
FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)


@click.group()
def flows() -> None:
    """Adobe's dataset-export dataflows, through the Flow Service API."""


@flows.command("list")
@CONFIG_OPTION
@FORMAT
@guarded
def flows_list(config_path: str | None, fmt: str) -> None:
    """The org's dataset-export flows."""
    with runtime(config_path) as rt:
        click.echo(render_flows(rt.flows_client().flows(), fmt), nl=False)


@flows.command("sync")
@CONFIG_OPTION
@click.option("--output", type=click.Path(dir_okay=False), help="write the [[exports]] here (include it from the main config)")
@guarded
def flows_sync(config_path: str | None, output: str | None) -> None:
    """Turn the org's dataset-export flows into [[exports]] entries."""
    import tomli_w

    from auditor.flows.sync import fetch_and_sync

    with runtime(config_path) as rt:
        result = fetch_and_sync(rt.flows_client(), rt.settings)
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
@FORMAT
@guarded
def flows_runs(flow_id: str, config_path: str | None, fmt: str) -> None:
    """The runs of one flow, newest first."""
    with runtime(config_path) as rt:
        click.echo(render_runs(flow_id, rt.flows_client().runs(flow_id), fmt), nl=False)


@flows.command("enable")
@click.argument("flow_id", metavar="FLOW")
@CONFIG_OPTION
@guarded
def flows_enable(flow_id: str, config_path: str | None) -> None:
    """Enable a flow."""
    with runtime(config_path) as rt:
        rt.flows_client().set_enabled(flow_id, True)
    err.print(f"flow {flow_id} enabled")


@flows.command("disable")
@click.argument("flow_id", metavar="FLOW")
@CONFIG_OPTION
@guarded
def flows_disable(flow_id: str, config_path: str | None) -> None:
    """Disable a flow."""
    with runtime(config_path) as rt:
        rt.flows_client().set_enabled(flow_id, False)
    err.print(f"flow {flow_id} disabled")


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
@guarded
def flows_create(
    name: str, kind: str, datasets: tuple[str, ...], file_format: str, compression: str, manifest: bool, bucket: str | None, container: str | None,
    folder: str, schedule: str, start: str, end: str | None, config_path: str | None,
) -> None:
    """Set up a dataset export end to end (source, base and target connections, then the flow).

    Secrets are read from the environment (AEP_S3_ACCESS_KEY/AEP_S3_SECRET_KEY, or
    AEP_AZURE_CONNECTION_STRING) and never printed.
    """
    from auditor.flows.setup import create_dataset_export

    if file_format == "json" and compression == "none":
        err.print("warning: newer Adobe docs support JSON only compressed; the API may refuse json+none")
    spec, secret_env = DESTINATION_TYPES[kind]
    if missing := [env for env in secret_env.values() if not os.environ.get(env)]:
        raise click.UsageError(f"set {', '.join(missing)} in the environment (secrets are never taken as arguments)")
    params = _target_params(kind, folder, file_format, compression, manifest, bucket=bucket, container=container)
    mode, unit, interval = SCHEDULES[schedule]
    schedule_params: dict[str, Any] = {"exportMode": mode, "timeUnit": unit, "interval": interval, "startTime": int(when(start, "--start").timestamp())}
    if end:
        schedule_params["endTime"] = int(when(end, "--end").timestamp())
    auth = {key: os.environ[env] for key, env in secret_env.items()}
    with runtime(config_path) as rt:
        flow_id = create_dataset_export(rt.flows_client(), name=name, connection_spec=spec, datasets=list(datasets), target_params=params, schedule=schedule_params, auth=auth)
    click.echo(flow_id)


def _target_params(kind: str, folder: str, file_format: str, compression: str, manifest: bool, *, bucket: str | None, container: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"path": folder, "datasetFileType": file_format.upper(), "compression": compression.upper(), "includeFileManifest": manifest}
    if kind == "s3":
        if not bucket:
            raise click.UsageError("--bucket is required for s3")
        params["bucketName"] = bucket
    if kind == "azure-blob":
        if not container:
            raise click.UsageError("--container is required for azure-blob")
        params["container"] = container
    return params


@flows.command("trigger")
@click.argument("flow_id", metavar="FLOW")
@CONFIG_OPTION
@guarded
def flows_trigger(flow_id: str, config_path: str | None) -> None:
    """Run a flow's export now. UNDOCUMENTED Adobe endpoint (seen only in Adobe's aepp client): may change."""
    with runtime(config_path) as rt:
        client = rt.flows_client()
        assert rt.settings.flow_service is not None
        datasets = client.source_connection(client.flow(flow_id).source_connection_ids[0]).params.get("datasets") or []
        runs = client.trigger(rt.settings.flow_service.adhoc_url, flow_id, [str(d.get("dataSetId")) for d in datasets])
    err.print("note: ad-hoc dataset runs use an undocumented Adobe endpoint (reference §8.5)")
    for run_id in runs:
        click.echo(run_id)


@click.group()
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

    world = World(client_id, client_secret, dlz_url=dlz_url, s3_endpoint=s3_endpoint, now=when(start, "--now"))
    err.print(f"Flow Service emulator on http://{host}:{port} (IMS at /ims/token/v3, Flow Service at /data/foundation/flowservice)")
    serve(world, host=host, port=port)


__all__ = ["emulator", "flows"]
