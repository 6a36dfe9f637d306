"""`auditor flows …` and `auditor emulator serve`: Adobe's dataset-export dataflows through the Flow Service API.

Every command gets its client from the Runtime, which closes it when the command ends.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import click

from auditor.clikit import CONFIG_OPTION, err, guarded, runtime, when
from auditor.render import render_flows, render_runs

# --type -> (connection spec id, auth param -> the environment variable that holds it by default)
DESTINATION_TYPES: dict[str, tuple[str, dict[str, str]]] = {
    "s3": ("4fce964d-3f37-408f-9778-e597338a21ee", {"s3AccessKey": "AEP_S3_ACCESS_KEY", "s3SecretKey": "AEP_S3_SECRET_KEY"}),
    "gcs": ("c5d93acb-ea8b-4b14-8f53-02138444ae99", {"accessKeyId": "AEP_GCS_ACCESS_KEY_ID", "secretAccessKey": "AEP_GCS_SECRET_ACCESS_KEY"}),
    "azure-blob": ("6d6b59bf-fb58-4107-9064-4d246c0e5bb2", {"connectionString": "AEP_AZURE_CONNECTION_STRING"}),
    "adls": ("be2c3209-53bc-47e7-ab25-145db8b873e1", {"servicePrincipalId": "AEP_ADLS_SERVICE_PRINCIPAL_ID", "servicePrincipalKey": "AEP_ADLS_SERVICE_PRINCIPAL_KEY"}),
    "dlz": ("10440537-2a7b-4583-ac39-ed38d4b848e8", {}),
    "sftp": ("36965a81-b1c6-401b-99f8-22508f1e6a26", {"password": "AEP_SFTP_PASSWORD"}),
}
SFTP_KEY_SECRETS = {"sshKey": "AEP_SFTP_SSH_KEY"}  # --sftp-auth ssh-key: a base64 private key
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
        result = fetch_and_sync(rt.flows_client(), rt.settings, _previous_entries(output))
    text = "# written by `auditor flows sync`; edit the main config instead, this file is replaced\n" + tomli_w.dumps({"exports": result.exports})
    if output:
        _replace(Path(output), text)
        err.print(f"wrote {len(result.exports)} exports to {output}")
    else:
        click.echo(text, nl=False)
    for problem in result.problems:
        err.print(f"warning: {problem}", markup=False)


def _previous_entries(output: str | None) -> dict[str, dict[str, Any]] | None:
    """The entries the last sync wrote to `output`, by flow id (None: no such file, or one that does not parse)."""
    import tomllib

    if not output:
        return None
    try:
        entries = tomllib.loads(Path(output).read_text(encoding="utf-8")).get("exports", [])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return {e["flow_id"]: e for e in entries if isinstance(e, dict) and isinstance(e.get("flow_id"), str)} if isinstance(entries, list) else None


def _replace(path: Path, text: str) -> None:
    """Write `path` whole or not at all (a file written beside it, then renamed over it): a sync cut short, or two at
    once, never leave a file half written for the configuration to include."""
    import tempfile

    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
@click.option("--type", "kind", type=click.Choice(list(DESTINATION_TYPES)), required=True, help="destination type; credentials come from the environment")
@click.option("--dataset", "datasets", multiple=True, required=True, help="dataset ID (repeatable; see `auditor flows datasets`)")
@click.option("--format", "file_format", type=click.Choice(["json", "parquet"]), default="parquet", show_default=True)
@click.option("--compression", type=click.Choice(["gzip", "none"]), default="gzip", show_default=True)
@click.option("--manifest/--no-manifest", default=True, show_default=True)
@click.option("--bucket", help="bucket (s3, gcs)")
@click.option("--container", help="container (azure-blob)")
@click.option("--path", "folder", default="", help="folder in the destination (every type; sftp: the remote path; adls: filesystem/folder)")
@click.option("--connection", "connection_id", metavar="ID", help="reuse this existing base connection (account) instead of creating one")
@click.option("--adls-url", help="adls: the ADLS Gen2 endpoint, https://ACCOUNT.dfs.core.windows.net")
@click.option("--tenant", help="adls: the service principal's tenant (domain or ID)")
@click.option("--domain", help="sftp: host name or IP address")
@click.option("--port", type=click.IntRange(1, 65535), help="sftp: port (sent only when given; AEP's default is 22)")
@click.option("--username", help="sftp: user name")
@click.option("--sftp-auth", type=click.Choice(["password", "ssh-key"]), default="password", show_default=True, help="sftp: password ($AEP_SFTP_PASSWORD) or SSH key ($AEP_SFTP_SSH_KEY, base64 private key)")
@click.option("--secret-env", "secret_env", multiple=True, metavar="PARAM=VAR", help="read auth param PARAM from environment variable VAR instead of the default (repeatable)")
@click.option("--pgp-public-key", type=click.Path(exists=True, dir_okay=False), help="encrypt exported files with this PGP/GPG public key (not dlz)")
@click.option("--schedule", type=click.Choice(sorted(SCHEDULES)), default="daily", show_default=True)
@click.option("--start", required=True, help="first export time (ISO-8601 or epoch seconds)")
@click.option("--end", help="end time (exclusive); AEP defaults to six months")
@CONFIG_OPTION
@guarded
def flows_create(
    name: str, kind: str, datasets: tuple[str, ...], file_format: str, compression: str, manifest: bool, bucket: str | None, container: str | None,
    folder: str, connection_id: str | None, adls_url: str | None, tenant: str | None, domain: str | None, port: int | None, username: str | None,
    sftp_auth: str, secret_env: tuple[str, ...], pgp_public_key: str | None, schedule: str, start: str, end: str | None, config_path: str | None,
) -> None:
    """Set up a dataset export end to end (source, base and target connections, then the flow).

    Secrets are read from the environment and never printed: s3 AEP_S3_ACCESS_KEY/AEP_S3_SECRET_KEY,
    gcs AEP_GCS_ACCESS_KEY_ID/AEP_GCS_SECRET_ACCESS_KEY (HMAC keys), azure-blob
    AEP_AZURE_CONNECTION_STRING, adls AEP_ADLS_SERVICE_PRINCIPAL_ID/AEP_ADLS_SERVICE_PRINCIPAL_KEY,
    sftp AEP_SFTP_PASSWORD or AEP_SFTP_SSH_KEY (or the variables --secret-env names).
    With --connection no secret is needed: the existing base connection holds them.
    """
    from auditor.flows.setup import SFTP_SSH_KEY_SPEC, create_dataset_export, encryption_block

    if file_format == "json" and compression == "none":
        err.print("warning: newer Adobe docs support JSON only compressed; the API may refuse json+none")
    spec, secrets = DESTINATION_TYPES[kind]
    if kind == "sftp" and sftp_auth == "ssh-key":
        secrets = dict(SFTP_KEY_SECRETS)
    params = _target_params(kind, folder, file_format, compression, manifest, bucket=bucket, container=container)
    mode, unit, interval = SCHEDULES[schedule]
    schedule_params: dict[str, Any] = {"exportMode": mode, "timeUnit": unit, "interval": interval, "startTime": int(when(start, "--start").timestamp())}
    if end:
        schedule_params["endTime"] = int(when(end, "--end").timestamp())
    account = {"--adls-url": adls_url, "--tenant": tenant, "--domain": domain, "--port": port, "--username": username}
    encryption = None
    if pgp_public_key:
        if kind == "dlz":
            raise click.UsageError("--pgp-public-key: the Data Landing Zone offers no file encryption")
        if connection_id:
            raise click.UsageError("--pgp-public-key: encryption belongs to the base connection; it cannot be added to an existing one (--connection)")
        encryption = encryption_block(base64.b64encode(Path(pgp_public_key).read_bytes()).decode("ascii"))
    auth: dict[str, Any] | None = None
    if connection_id:
        if given := [option for option, value in account.items() if value is not None] + (["--secret-env"] if secret_env else []):
            raise click.UsageError(f"{', '.join(given)}: account settings belong to a new base connection, not with --connection")
    elif kind != "dlz":
        auth = _auth(kind, secrets, secret_env, adls_url=adls_url, tenant=tenant, domain=domain, port=port, username=username)
    with runtime(config_path) as rt:
        flow_id = create_dataset_export(
            rt.flows_client(), name=name, connection_spec=spec, datasets=list(datasets), target_params=params, schedule=schedule_params, auth=auth,
            auth_spec=SFTP_SSH_KEY_SPEC if kind == "sftp" and sftp_auth == "ssh-key" else None, base_connection=connection_id, encryption=encryption,
        )
    click.echo(flow_id)


def _auth(
    kind: str, secrets: dict[str, str], overrides: tuple[str, ...], *, adls_url: str | None, tenant: str | None, domain: str | None, port: int | None, username: str | None
) -> dict[str, Any]:
    """A new base connection's auth params: the plain ones from options, the secrets from the environment."""
    names = dict(secrets)
    for item in overrides:
        param, sep, variable = item.partition("=")
        if not sep or param not in names or not variable:
            raise click.UsageError(f"--secret-env {item!r}: give PARAM=VAR with PARAM one of {', '.join(names) or '(none for this type)'}")
        names[param] = variable
    if missing := [env for env in names.values() if not os.environ.get(env)]:
        raise click.UsageError(f"set {', '.join(missing)} in the environment (secrets are never taken as arguments)")
    auth: dict[str, Any] = {}
    if kind == "adls":
        if not adls_url or not tenant:
            raise click.UsageError("--adls-url and --tenant are required for adls (or reuse an account with --connection)")
        auth |= {"url": adls_url, "tenant": tenant}
    if kind == "sftp":
        if not domain or not username:
            raise click.UsageError("--domain and --username are required for sftp (or reuse an account with --connection)")
        auth |= {"domain": domain, "username": username} | ({"port": port} if port is not None else {})
    elif port is not None or domain or username:
        raise click.UsageError("--domain, --port and --username are for sftp")
    if kind != "adls" and (adls_url or tenant):
        raise click.UsageError("--adls-url and --tenant are for adls")
    return auth | {param: os.environ[env] for param, env in names.items()}


def _target_params(kind: str, folder: str, file_format: str, compression: str, manifest: bool, *, bucket: str | None, container: str | None) -> dict[str, Any]:
    """The target connection's params (reference §3): the location keys each type takes, the file options."""
    location_key = "remotePath" if kind == "sftp" else "path"
    params: dict[str, Any] = {location_key: folder, "datasetFileType": file_format.upper(), "compression": compression.upper(), "includeFileManifest": manifest}
    if kind in ("s3", "gcs"):
        if not bucket:
            raise click.UsageError(f"--bucket is required for {kind}")
        params["bucketName"] = bucket
    elif bucket:
        raise click.UsageError("--bucket is for s3 and gcs")
    if kind == "azure-blob":
        if not container:
            raise click.UsageError("--container is required for azure-blob")
        params["container"] = container
    elif container:
        raise click.UsageError("--container is for azure-blob")
    if kind in ("sftp", "adls") and not folder.strip("/"):
        raise click.UsageError(f"--path is required for {kind}" + (" (filesystem/folder)" if kind == "adls" else " (the remote path)"))
    return params


@flows.command("datasets")
@click.option("--name", "name_filter", metavar="FILTER", help="only datasets whose name (or ID) contains FILTER (case-insensitive)")
@CONFIG_OPTION
@FORMAT
@guarded
def flows_datasets(name_filter: str | None, config_path: str | None, fmt: str) -> None:
    """The datasets eligible for export (GET /connectionSpecs/{Data Lake}/configs), every page."""
    with runtime(config_path) as rt:
        found = rt.flows_client().eligible_datasets(name=name_filter)
    click.echo(render_datasets(found, fmt), nl=False)


def render_datasets(datasets: list[dict[str, Any]], fmt: str) -> str:
    rows = [{"id": str(d.get("id", "")), "name": str(d.get("name", "")), "state": str(d.get("state", "")), "format": str((d.get("fileDescription") or {}).get("format", "") if isinstance(d.get("fileDescription"), dict) else "")} for d in datasets]
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    from auditor.render import _table_text

    return _table_text(f"Datasets eligible for export ({len(rows)})", ("id", "name", "state", "format"), [tuple(r.values()) for r in rows])


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
@click.option("--gcs-endpoint", help="GCS endpoint where Google Cloud Storage flows write (e.g. fake-gcs-server)")
@click.option("--adls-connection-string", envvar="EMULATOR_ADLS_CONNECTION_STRING", help="storage account ADLS Gen2 flows write to (or $EMULATOR_ADLS_CONNECTION_STRING; e.g. Azurite)")
@click.option("--now", "start", help="the emulated clock's start (default now)")
def emulator_serve(
    host: str, port: int, client_id: str, client_secret: str, dlz_url: str | None, s3_endpoint: str | None, gcs_endpoint: str | None, adls_connection_string: str | None,
    start: str | None,
) -> None:
    """Serve the emulator in the foreground; POST /emulator/clock moves its clock.

    Amazon S3, GCS and ADLS Gen2 flows write to the endpoints given here; Azure Blob and SFTP flows
    to what their base connections name (connection string; domain, port, user, password or key)."""
    from auditor.emulator.server import serve
    from auditor.emulator.state import World

    world = World(
        client_id, client_secret, dlz_url=dlz_url, s3_endpoint=s3_endpoint, gcs_endpoint=gcs_endpoint,
        adls_options={"connection_string": adls_connection_string} if adls_connection_string else None, now=when(start, "--now"),
    )
    err.print(f"Flow Service emulator on http://{host}:{port} (IMS at /ims/token/v3, Flow Service at /data/foundation/flowservice)")
    serve(world, host=host, port=port)


__all__ = ["emulator", "flows"]
