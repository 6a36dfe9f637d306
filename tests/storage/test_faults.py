"""Faults: throttling, dropped connections, denied access, expired SAS, a server that hangs up.

Whatever a store does, the affected windows are `unknown` (never `missing`), the report's errors say
why without secrets, the exit code is 3, the catalog keeps what it knew, and the next good audit
resolves everything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from auditor.audit import AuditOptions
from auditor.catalog.repository import open_catalog
from auditor.config import Settings
from auditor.exporter import sample_records, write_export
from auditor.render import render_report
from auditor.report import AuditReport
from tests import servers
from tests.conftest import audit_once
from tests.faults import ACCESS_DENIED, SLOW_DOWN, FaultPlan, fault_proxy, tcp_cutter
from tests.storage.conftest import Backend, daily_export, dlz_backend, s3_backend, sftp_backend

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SECRET_KEY, SECRET = "AKIAFAULTTESTSECRETKEY", "fault-test-secret-value-do-not-print"
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def build_tree(backend: Backend) -> None:
    target = Path(backend.write_root).as_uri() if backend.name.startswith("sftp") else f"{backend.writer.protocol[0]}://{backend.write_root}"
    options = {} if backend.name.startswith("sftp") else backend.writer.storage_options
    for days in (2, 1):
        slot = DAY - timedelta(days=days)
        write_export(target, "ds", slot, sample_records("ds", slot, 10), parts=2, manifest=True, storage_options=options)


def settings_for(url: str, options: dict[str, Any], tmp_path: Path) -> Settings:
    return daily_export(url, options, tmp_path, start=DAY - timedelta(days=2), end=DAY, grace="2d")  # type: ignore[no-any-return]


def audit(settings: Settings) -> AuditReport:
    return audit_once(settings, now=datetime.now(UTC) + timedelta(minutes=1), options=AuditOptions())


def statuses(report: AuditReport) -> list[str]:
    return [w.status.value for w in report.exports[0].windows]


def assert_no_secrets(report: AuditReport, settings: Settings, *secrets: str) -> None:
    texts = [render_report(report, fmt) for fmt in ("json", "table", "csv", "junit", "html")]
    catalog = open_catalog(settings.catalog.url)
    with catalog.engine.connect() as conn:
        from sqlalchemy import text

        for table in ("destinations", "exports", "files", "findings", "audits", "windows"):
            texts.append(json.dumps([list(map(str, row)) for row in conn.execute(text(f"select * from {table}"))]))
    for secret in secrets:
        assert all(secret not in t for t in texts), secret


@pytest.fixture
def s3_behind_proxy(moto: servers.Moto, tmp_path: Path) -> Iterator[tuple[Settings, FaultPlan]]:
    backend = s3_backend(moto)
    build_tree(backend)
    with fault_proxy(moto.endpoint) as (endpoint, plan):
        options = {
            "endpoint_url": endpoint,
            "key": SECRET_KEY,
            "secret": SECRET,
            "retries": 2,
            "config_kwargs": {"retries": {"total_max_attempts": 2, "mode": "standard"}, "connect_timeout": 2, "read_timeout": 5},
        }
        yield settings_for(backend.url, options, tmp_path), plan


@pytest.mark.s3
def test_s3_throttling_that_passes_is_retried(s3_behind_proxy: tuple[Settings, FaultPlan]) -> None:
    settings, plan = s3_behind_proxy
    plan.steps = [SLOW_DOWN, SLOW_DOWN, "drop"]

    report = audit(settings)

    assert statuses(report) == ["late", "ok"] and report.errors == ()
    assert len(plan.seen) > 3  # the faults were really served, and retried past


@pytest.mark.s3
@pytest.mark.parametrize("fault", [SLOW_DOWN, ACCESS_DENIED, "drop"], ids=["throttled", "denied", "dropped"])
def test_a_store_that_keeps_failing_is_unknown_then_resolves(s3_behind_proxy: tuple[Settings, FaultPlan], fault: Any) -> None:
    settings, plan = s3_behind_proxy
    good = audit(settings)
    assert statuses(good) == ["late", "ok"]
    catalog = open_catalog(settings.catalog.url)
    known = catalog.table_counts()
    plan.forever = fault

    failed = audit(settings)

    assert statuses(failed) == ["unknown", "unknown"]
    assert failed.exit_code == 3 and failed.status == "incomplete"
    assert [e.destination for e in failed.errors] == ["d"]
    assert_no_secrets(failed, settings, SECRET, SECRET_KEY)
    after = catalog.table_counts()
    assert {k: v for k, v in after.items() if k not in ("audits", "window_status_history")} == {k: v for k, v in known.items() if k not in ("audits", "window_status_history")}
    assert len(catalog.known_files("d")) == 6  # nothing forgotten

    plan.clear()
    resolved = audit(settings)
    assert statuses(resolved) == ["late", "ok"] and resolved.errors == ()


@pytest.mark.s3
def test_reads_that_fail_after_a_good_listing_are_unknown(s3_behind_proxy: tuple[Settings, FaultPlan]) -> None:
    settings, plan = s3_behind_proxy
    plan.only = lambda method, path: method == "GET" and "list-type" not in path  # object reads, not the listing
    plan.forever = SLOW_DOWN

    report = audit(settings)

    assert statuses(report) == ["unknown", "unknown"]
    assert report.exit_code == 3 and report.errors
    assert any("SlowDown" in e.message or "503" in e.message or "reduce" in e.message.lower() or "busy" in e.message.lower() for e in report.errors), report.errors


@pytest.mark.s3
def test_a_scan_of_n_objects_costs_n_over_1000_list_requests_and_nothing_else(moto: servers.Moto) -> None:
    backend = s3_backend(moto)
    bucket, prefix = backend.write_root.split("/", 1)
    moto.seed(bucket, {f"{prefix}/ds/exportTime=2026112{index % 7}0000/part-{index:05d}.gz.parquet": b"x" for index in range(2001)})
    with fault_proxy(moto.endpoint) as (endpoint, plan):
        from auditor.storage import open_store

        store = open_store(backend.url, {"endpoint_url": endpoint, "key": "testing", "secret": "testing"})
        objects = store.list()
    assert len(objects) == 2001  # three pages of at most 1000: three requests
    assert [method for method, _ in plan.seen] == ["GET"] * 3
    assert all("list-type=2" in path for _, path in plan.seen)


@pytest.mark.azure
def test_an_expired_sas_is_unknown_not_missing(azurite: str, tmp_path: Path) -> None:
    backend = dlz_backend(azurite, expiry=datetime.now(UTC) - timedelta(hours=1))
    build_tree(backend)

    report = audit(settings_for(backend.url, backend.options, tmp_path))

    assert statuses(report) == ["unknown", "unknown"] and report.exit_code == 3
    sig = backend.options["sas_url"].split("sig=")[1].split("&")[0]
    assert_no_secrets(report, settings_for(backend.url, backend.options, tmp_path), sig)


@pytest.mark.azure
def test_a_missing_container_is_unknown(azurite: str, tmp_path: Path) -> None:
    options = {"connection_string": servers.azurite_connection_string(azurite)}
    report = audit(settings_for("az://no-such-container/exports", options, tmp_path))
    assert statuses(report) == ["unknown", "unknown"] and report.exit_code == 3
    assert_no_secrets(report, settings_for("az://no-such-container/exports", options, tmp_path), servers.AZURITE_KEY)


@pytest.mark.sftp
def test_an_sftp_server_that_hangs_up_mid_scan_is_unknown(sshd: servers.Sshd, tmp_path: Path) -> None:
    backend = sftp_backend(sshd)
    build_tree(backend)
    for index in range(300):  # a large listing, so the cut lands inside it
        backend.put(f"ds/exportTime=20261101{index % 24:02d}00/part-{index:05d}.gz.parquet", b"x")
    known_hosts = tmp_path / "known_hosts"
    with tcp_cutter(sshd.port, cut_after=12000) as (port, cuts):
        entry = Path(sshd.known_hosts).read_text().split(" ", 1)[1]
        known_hosts.write_text(f"[127.0.0.1]:{port} {entry}")
        url = backend.url.replace(f":{sshd.port}/", f":{port}/")
        settings = settings_for(url, {**backend.options, "known_hosts": str(known_hosts), "skip_instance_cache": True}, tmp_path)
        report = audit(settings)
    assert cuts, "the relay cut the connection"
    assert statuses(report) == ["unknown", "unknown"] and report.exit_code == 3
    assert "cannot list" in report.errors[0].message, report.errors  # connected and logged in, then cut mid-listing
    assert_no_secrets(report, settings, servers.SFTP_PASSWORD)


@pytest.mark.sftp
def test_a_folder_the_sftp_user_cannot_read_makes_the_listing_fail_not_its_window_missing(sshd: servers.Sshd, tmp_path: Path) -> None:
    """fsspec's walk applies on_error="raise" to its top folder only and leaves out a deeper folder it cannot list:
    that window came out `missing`. A folder the SFTP user may not read now fails the listing (every window unknown)."""
    import os

    backend = sftp_backend(sshd)
    build_tree(backend)
    hidden = Path(backend.write_root) / "ds" / f"exportTime={DAY - timedelta(days=1):%Y%m%d%H%M}"
    assert hidden.is_dir()
    os.chmod(hidden, 0)
    try:
        report = audit(settings_for(backend.url, backend.options, tmp_path))
    finally:
        os.chmod(hidden, 0o755)
    assert statuses(report) == ["unknown", "unknown"] and report.exit_code == 3
    assert "cannot list" in report.errors[0].message and "ermission" in report.errors[0].message, report.errors


@pytest.mark.sftp
def test_an_unknown_sftp_host_key_is_refused(sshd: servers.Sshd, tmp_path: Path) -> None:
    backend = sftp_backend(sshd)
    build_tree(backend)
    stranger = tmp_path / "known_hosts"
    stranger.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKy0Yk9ytUqkHgAUX1XaRkN7jbZY1U+8WtF/1CQ+kxMl\n")

    refused = audit(settings_for(backend.url, {**backend.options, "known_hosts": str(stranger), "skip_instance_cache": True}, tmp_path))
    accepted = audit(settings_for(backend.url, {**backend.options, "skip_instance_cache": True}, tmp_path))

    assert statuses(refused) == ["unknown", "unknown"] and "does not match" in refused.errors[0].message
    assert statuses(accepted) == ["late", "ok"]


@pytest.mark.azure
def test_the_data_landing_zone_is_read_with_credentials_from_the_flow_service(azurite: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from auditor.cli import main
    from auditor.emulator.server import running
    from auditor.emulator.state import World
    from auditor.flows.client import FlowsClient
    from auditor.flows.setup import create_dataset_export
    from tests.storage.conftest import azure_backend, container_sas

    backend = azure_backend(azurite, "az")
    container = backend.write_root.split("/", 1)[0]
    sas = container_sas(azurite, container, expiry=datetime.now(UTC) + timedelta(hours=1))
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=12)
    world = World("cid", "secret", dlz_url=f"az://{container}", dlz_options={"connection_string": servers.azurite_connection_string(azurite)}, dlz_sas_url=f"{azurite}/{container}?{sas}", now=start)
    with running(world) as base:
        client = FlowsClient(f"{base}/data/foundation/flowservice", ims_url=f"{base}/ims/token/v3", client_id="cid", client_secret="secret", org_id="O@AdobeOrg")
        create_dataset_export(
            client, name="dlz web", connection_spec="10440537-2a7b-4583-ac39-ed38d4b848e8", datasets=["5ef3e3259ad2a1191ab7dd7d"],
            target_params={"path": "exports", "datasetFileType": "JSON", "compression": "GZIP", "includeFileManifest": True},
            schedule={"timeUnit": "hour", "interval": 6, "startTime": int(start.timestamp())},
        )
        import httpx

        httpx.post(f"{base}/emulator/clock", auth=("cid", "secret"), json={"now": (start + timedelta(hours=11)).isoformat()}).raise_for_status()
        config = tmp_path / "auditor.toml"
        config.write_text(
            f"""include = ["flows.toml"]
[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[flow_service]
base_url = "{base}/data/foundation/flowservice"
ims_url = "{base}/ims/token/v3"
landing_zone_url = "{base}/data/foundation/connectors/landingzone/credentials"
client_id = "cid"
client_secret = "secret"
org_id = "O@AdobeOrg"
dlz_destination = "dlz"
[[destinations]]
name = "dlz"
url = "az://{container}"
options = {{ dlz_credentials = true }}
"""
        )
        (tmp_path / "flows.toml").write_text("")
        runner = CliRunner()
        assert runner.invoke(main, ["flows", "sync", "--config", str(config), "--output", str(tmp_path / "flows.toml")]).exit_code == 0
        result = runner.invoke(main, ["audit", "--config", str(config), "--as-of", datetime.now(UTC).isoformat(), "--format", "json"])
    report = json.loads(result.stdout)
    assert report["errors"] == []
    windows = [w for w in report["exports"][0]["windows"] if w["status"] != "pending"]  # the slot at "now" has not come yet
    assert len(windows) == 2 and {w["status"] for w in windows} <= {"ok", "late"}  # written just now by the emulator
    assert all(w["files"] == 3 for w in windows)
    assert sas.split("sig=")[1].split("&")[0] not in result.stdout
