"""Deep checks on a real Dask cluster (a `dask scheduler` and two `dask worker` processes on
127.0.0.1): the same reports as locally, isolation on the workers, a worker killed mid-audit,
the scheduler unreachable or gone, and no secret in task keys or logs."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.audit import AuditOptions, run_audit
from auditor.cli import main
from auditor.config import settings_from_mapping
from auditor.storage import open_store
from auditor.validate.sandbox import Limits, Sandbox
from tests.cluster_validators import MARKS
from tests.conftest import Tree, missing_server, t
from tests.integration.test_audit_tree import build_defect_tree
from tests.servers import ROOT, free_port, moto_server, wait_for_port
from tests.validation.corpus import CASES, valid_ndjson, valid_parquet

DASK = Path(sys.executable).parent / "dask"
AS_OF = "2026-11-28T12:00:00Z"
TIMINGS = ("bytes_read", "oldest_deep_check")  # what differs between any two audits of one tree


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    logs: Path

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


def require_dask() -> Any:
    try:
        import dask
        import distributed  # noqa: F401
    except ImportError as e:
        missing_server(f"dask.distributed is not installed (pip install -e '.[cluster]'): {e}")
    return dask


@contextmanager
def dask_cluster(logs: Path, *, workers: int = 2, threads: int = 2, env: dict[str, str] | None = None, tls: list[str] | None = None) -> Iterator[DaskCluster]:
    """A scheduler and `workers` workers (no nanny: a killed worker stays dead) on free ports;
    with `tls` (the --tls-* options of both), on tls:// (the client takes Dask's TLS settings)."""
    require_dask()
    from distributed import Client

    if not DASK.exists():
        missing_server(f"the dask command is not installed in {DASK.parent}")
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"{'tls' if tls else 'tcp'}://127.0.0.1:{port}"
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}  # tests.* validators import on the workers
    with ExitStack() as stack:
        processes: list[subprocess.Popen[bytes]] = []

        def start(name: str, args: list[str]) -> subprocess.Popen[bytes]:
            log = stack.enter_context((logs / f"{name}.log").open("wb"))
            proc = subprocess.Popen([str(DASK), *args], stdout=log, stderr=log, env=environ, cwd=ROOT)
            processes.append(proc)
            return proc

        @stack.callback
        def stop() -> None:
            for proc in processes:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(10)

        scheduler = start("scheduler", ["scheduler", "--host", f"{address.split('://')[0]}://127.0.0.1", "--port", str(port), "--no-dashboard", *(tls or [])])
        wait_for_port(port, scheduler)
        started = [
            start(f"worker-{i}", ["worker", address, "--name", f"w{i}", "--nthreads", str(threads), "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", "--memory-limit", "0", *(tls or [])])
            for i in range(workers)
        ]
        with Client(address, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=60)
        yield DaskCluster(address, scheduler, started, logs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with dask_cluster(tmp_path_factory.mktemp("dask")) as running:
        yield running


def audit_json(config: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["audit", "--config", str(config), "--as-of", AS_OF, "--format", "json", *extra], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def without_timings(report: dict[str, Any]) -> dict[str, Any]:
    return {**report, "assurance": {k: v for k, v in report["assurance"].items() if k not in TIMINGS}}


def fresh_catalog(config: Path) -> None:
    """Start the next audit from an empty catalog (the config names a SQLite file)."""
    url = next(line for line in config.read_text().splitlines() if line.startswith("url = \"sqlite:///"))
    Path(url.split("sqlite:///", 1)[1].rstrip('"')).unlink(missing_ok=True)


@pytest.mark.parametrize("how", [["--deep"], ["--sample", "50"]], ids=["deep", "sample"])
def test_the_defect_tree_gets_the_same_report_on_the_cluster_as_locally(tree: Tree, tmp_path: Path, cluster: DaskCluster, how: list[str]) -> None:
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    local_code, local = audit_json(config, *how)
    fresh_catalog(config)

    code, remote = audit_json(config, *how, "--cluster", cluster.address)

    assert (code, local_code) == (1, 1)
    assert without_timings(remote) == without_timings(local)
    assert remote["assurance"]["deep_verified"] > 0
    assert [e["destination"] for e in remote["errors"]] == ["unreachable"]  # the tree's own unreachable destination, nothing else


def corpus_config(tree: Tree, tmp_path: Path) -> Path:
    """One window per broken file of the hostile corpus (next to a valid file), as in tests/validation."""
    start = t("2026-11-27T00:00")
    exports = ""
    for fmt, suffix in (("parquet", ".gz.parquet"), ("json", ".json.gz")):
        good = valid_parquet() if fmt == "parquet" else gzip.compress(valid_ndjson())
        cases = [None, *(c for c in CASES if c.file_format == fmt)]
        for index, case in enumerate(cases):
            slot = start + timedelta(hours=3 * index)
            folder = f"ds-{fmt}/exportTime={slot:%Y%m%d%H%M}"
            tree.put(f"{folder}/part-00000-c000{suffix}", good if case is None else case.build(), slot + timedelta(minutes=5))
            tree.put(f"{folder}/part-00001-c000{suffix}", good, slot + timedelta(minutes=5))
        end = start + timedelta(hours=3 * len(cases))
        exports += f"""
[[exports]]
name = "{fmt}"
destination = "d"
datasets = ["ds-{fmt}"]
format = "{fmt}"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "{start:%Y-%m-%dT%H:%M:%SZ}", endTime = "{end:%Y-%m-%dT%H:%M:%SZ}" }}
"""
    config = tmp_path / "auditor.toml"
    config.write_text(f'[catalog]\nurl = "sqlite:///{tmp_path / "c.db"}"\n[[destinations]]\nname = "d"\nurl = "{tree.url}"\n' + exports)
    return config


def test_the_hostile_corpus_gives_the_same_findings_on_the_cluster(tree: Tree, tmp_path: Path, cluster: DaskCluster) -> None:
    config = corpus_config(tree, tmp_path)
    _, local = audit_json(config, "--deep")
    fresh_catalog(config)

    code, remote = audit_json(config, "--deep", "--cluster", cluster.address)

    assert code == 1
    assert without_timings(remote) == without_timings(local)
    found = {f["code"] for e in remote["exports"] for w in e["windows"] for f in w["findings"] if f["severity"] == "error"}
    assert {c.code for c in CASES} <= found
    assert [w["status"] for e in remote["exports"] for w in e["windows"]].count("ok") == 2  # the valid window of each format


def small_settings(tree: Tree, windows: int, **more: Any) -> Any:
    """`windows` windows of three NDJSON files each, one every 3 hours from 2026-11-27T00:00."""
    for hour in range(0, 3 * windows, 3):
        tree.export("ds", t("2026-11-27T00:00") + timedelta(hours=hour), file_format="json", manifest=False, parts=3)
    return settings_from_mapping(
        {
            **more,
            "destinations": [{"name": "d", "url": tree.url}],
            "exports": [
                {
                    "name": "e", "destination": "d", "datasets": ["ds"], "format": "json",
                    "schedule": {"timeUnit": "hour", "interval": 3, "startTime": "2026-11-27T00:00:00Z", "endTime": f"{t('2026-11-27T00:00') + timedelta(hours=3 * windows):%Y-%m-%dT%H:%M:%SZ}"},
                },
            ],
        },
        {},
    )


def statuses(report: Any) -> list[str]:
    return [w.status.value for e in report.exports for w in e.windows]


NOW = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)


def test_a_file_that_crashes_or_exhausts_the_reader_is_a_finding_not_a_dead_worker(tree: Tree, cluster: DaskCluster) -> None:
    from auditor.cluster import ClusterChecker

    settings = small_settings(tree, 3)
    folders = sorted((tree.root / "ds").iterdir())
    crash, hoard = next(folders[1].glob("part-*")), next(folders[2].glob("part-*"))
    tree.rewrite(crash, b"crash" + crash.read_bytes())
    tree.rewrite(hoard, b"hoard" + hoard.read_bytes())
    limits = Limits(memory_bytes=512 << 20)
    with Sandbox(workers=1, limits=limits) as local, ClusterChecker(cluster.address, local=local, limits=limits, validator="tests.cluster_validators:misbehave") as checker:
        report = run_audit(settings, stores={"d": open_store(tree.url)}, catalog=None, now=NOW, started=NOW, options=AuditOptions(deep=True), checker=checker)
        assert checker.tasks >= 1

    windows = report.exports[0].windows
    assert statuses(report) == ["ok", "invalid", "invalid"]
    assert [f.code for f in windows[1].findings] == ["validate.crashed"] and windows[1].findings[0].path.endswith(crash.name)
    assert [f.code for f in windows[2].findings] == ["validate.memory_limit"]
    assert report.errors == ()
    assert all(w.poll() is None for w in cluster.workers)  # the Dask workers themselves never died


def test_a_worker_killed_mid_audit_changes_no_verdict(tree: Tree, tmp_path: Path) -> None:
    from auditor.cluster import ClusterChecker

    settings = small_settings(tree, 6)
    store = open_store(tree.url)
    expected = statuses(run_audit(settings, stores={"d": store}, catalog=None, now=NOW, started=NOW, options=AuditOptions(deep=True)))
    marks = tmp_path / "marks"
    marks.mkdir()
    with dask_cluster(tmp_path / "dask", env={MARKS: str(marks)}) as running, Sandbox(workers=1) as local:
        victim = running.workers[0]
        checker = ClusterChecker(running.address, local=local, validator="tests.cluster_validators:slow", batch_files=1)
        outcome: dict[str, Any] = {}
        audit = threading.Thread(target=lambda: outcome.update(report=run_audit(settings, stores={"d": open_store(tree.url)}, catalog=None, now=NOW, started=NOW, options=AuditOptions(deep=True), checker=checker)))
        audit.start()
        deadline = time.monotonic() + 30
        while not any(m.name.startswith(f"{victim.pid}-") for m in marks.iterdir()):
            assert time.monotonic() < deadline, "the victim never started a check"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        audit.join(60)
        checker.close()
        assert victim.poll() is not None

    report = outcome["report"]
    assert statuses(report) == expected and set(expected) == {"ok"}
    assert report.errors == ()
    assert checker.tasks == 18  # one file per task
    assert len(list(marks.iterdir())) > 18  # what the victim was checking when it died was checked again


def test_a_cluster_whose_workers_all_die_mid_audit_leaves_the_rest_unknown_not_waiting_for_ever(tree: Tree, tmp_path: Path) -> None:
    """Dask keeps work for a worker that may yet come; the audit gives up once the cluster has had none for
    `worker_wait`: what was checked keeps its verdict, the rest is unknown, and the audit ends."""
    from auditor.cluster import ClusterChecker

    settings = small_settings(tree, 6)
    marks = tmp_path / "marks"
    marks.mkdir()
    with dask_cluster(tmp_path / "dask", workers=1, threads=1, env={MARKS: str(marks)}) as running, Sandbox(workers=1) as local:
        checker = ClusterChecker(running.address, local=local, validator="tests.cluster_validators:slow", batch_files=1, worker_wait=3)
        outcome: dict[str, Any] = {}
        audit = threading.Thread(target=lambda: outcome.update(report=run_audit(settings, stores={"d": open_store(tree.url)}, catalog=None, now=NOW, started=NOW, options=AuditOptions(deep=True), checker=checker)))
        started = time.monotonic()
        audit.start()
        deadline = time.monotonic() + 30
        while not any(marks.iterdir()):
            assert time.monotonic() < deadline, "no check started"
            time.sleep(0.02)
        running.workers[0].send_signal(signal.SIGKILL)  # the only worker: nothing is left to take the work
        audit.join(90)
        assert not audit.is_alive(), "the audit still waits for a worker"
        checker.close()

    report = outcome["report"]
    assert time.monotonic() - started < 60
    assert "unknown" in statuses(report) and "missing" not in statuses(report)
    assert any("had no worker for 3 s" in e.message for e in report.errors), report.errors


def test_the_scheduler_gone_mid_audit_leaves_windows_unknown_and_as_they_were(tree: Tree, tmp_path: Path) -> None:
    from auditor.catalog.repository import open_catalog
    from auditor.cluster import ClusterChecker
    from auditor.runtime import Runtime

    url = f"sqlite:///{tmp_path / 'c.db'}"
    settings = small_settings(tree, 6, catalog={"url": url})
    with Runtime(settings) as rt:  # a quick audit first: every window ok
        first = rt.audit(now=NOW)
    assert first is not None and set(statuses(first)) == {"ok"}
    marks = tmp_path / "marks"
    marks.mkdir()
    with dask_cluster(tmp_path / "dask", env={MARKS: str(marks)}) as running, Sandbox(workers=1) as local:
        checker = ClusterChecker(running.address, local=local, validator="tests.cluster_validators:slow", batch_files=2)
        outcome: dict[str, Any] = {}

        def deep_audit() -> None:
            with Runtime(settings, checker=checker) as rt:
                outcome["report"] = rt.audit(now=NOW, options=AuditOptions(deep=True))

        audit = threading.Thread(target=deep_audit)
        audit.start()
        deadline = time.monotonic() + 30
        while not any(marks.iterdir()):
            assert time.monotonic() < deadline, "no check started"
            time.sleep(0.02)
        running.scheduler.send_signal(signal.SIGKILL)
        audit.join(60)
        assert not audit.is_alive()
        checker.close()

    report = outcome["report"]
    assert report.exit_code == 3
    assert "unknown" in statuses(report) and "missing" not in statuses(report)
    assert any("connection to the Dask scheduler" in e.message and "was lost" in e.message for e in report.errors)
    known = open_catalog(url).windows("e", known=True)
    assert {w.status for w in known} == {"ok"}  # what the catalog knew stays


def test_an_unreachable_scheduler_is_a_clear_incomplete_audit(tree: Tree, tmp_path: Path) -> None:
    dask = require_dask()
    small_settings(tree, 2)  # writes the files
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""
[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[[destinations]]
name = "d"
url = "{tree.url}"
[[exports]]
name = "e"
destination = "d"
datasets = ["ds"]
format = "json"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-27T06:00:00Z" }}
"""
    )
    assert audit_json(config)[0] == 0  # compliant by quick checks
    address = f"tcp://127.0.0.1:{free_port()}"

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code, report = audit_json(config, "--deep", "--cluster", address)

    assert code == 3 and report["status"] == "incomplete"
    assert [w["status"] for w in report["exports"][0]["windows"]] == ["unknown", "unknown"]
    assert [e["destination"] for e in report["errors"]] == ["d"]
    assert report["errors"][0]["message"].startswith(f"could not be deep-checked: the Dask scheduler at {address} cannot be reached")
    assert report["assurance"]["deep_verified"] == 0


def test_cluster_needs_a_deep_share() -> None:
    result = CliRunner().invoke(main, ["audit", "--cluster", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2 and "--deep or --sample" in result.output


def test_secrets_reach_workers_only_inside_the_payload(tmp_path: Path, cluster: DaskCluster) -> None:
    pytest.importorskip("s3fs")
    import s3fs
    from distributed import Client

    from auditor.exporter import sample_records, write_export

    secret = f"s3cr3t-{uuid.uuid4().hex}"
    with moto_server() as moto:
        options = {"endpoint_url": moto.endpoint, "key": "testing", "secret": secret}
        bucket = f"aep-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(skip_instance_cache=True, **options).mkdir(bucket)
        for hour in (0, 3):
            write_export(f"s3://{bucket}/exports", "ds", t("2026-11-27T00:00") + timedelta(hours=hour), sample_records("ds", NOW, 20), manifest=False, storage_options=options)
        config = tmp_path / "auditor.toml"
        config.write_text(
            f"""
[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[[destinations]]
name = "s3"
url = "s3://{bucket}/exports"
options = {{ endpoint_url = "{moto.endpoint}", key = "testing", secret = "${{env:TEST_S3_SECRET}}" }}
[[exports]]
name = "e"
destination = "s3"
datasets = ["ds"]
format = "parquet"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-27T06:00:00Z" }}
"""
        )
        result = CliRunner(env={"TEST_S3_SECRET": secret}).invoke(main, ["audit", "--config", str(config), "--deep", "--format", "json", "--cluster", cluster.address])
    report = json.loads(result.stdout)  # as of now: the files were written just now, late
    assert report["errors"] == [] and {w["status"] for w in report["exports"][0]["windows"]} == {"late"}
    assert report["assurance"]["deep_verified"] == 4

    with Client(cluster.address, set_as_default=False) as client:
        keys = client.run_on_scheduler(lambda dask_scheduler: sorted({str(entry[0]) for entry in dask_scheduler.transition_log}))
    ours = [k for k in keys if k.startswith("auditor-deep-")]
    assert ours and all(secret not in k and bucket not in k for k in keys)
    assert secret not in cluster.log_text()
    assert secret not in result.output


def test_tls_addresses_take_dask_s_own_security_settings(tree: Tree, tmp_path: Path) -> None:
    dask = require_dask()
    pytest.importorskip("cryptography", reason="TLS certificates for the test are made with cryptography (moto brings it)")
    from distributed.security import Security

    made = Security.temporary()  # one self-signed certificate for every role, as files
    ca, key = tmp_path / "ca.pem", tmp_path / "key.pem"
    ca.write_text(made.tls_ca_file)
    key.write_text(made.tls_client_key)
    settings = {"distributed.comm.tls.ca-file": str(ca), "distributed.comm.tls.client.cert": str(ca), "distributed.comm.tls.client.key": str(key), "distributed.comm.require-encryption": True}
    config = tmp_path / "auditor.toml"
    small_settings(tree, 1)
    config.write_text(
        f"""
[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[validation]
cluster = "tls://127.0.0.1:1"
[[destinations]]
name = "d"
url = "{tree.url}"
[[exports]]
name = "e"
destination = "d"
datasets = ["ds"]
format = "json"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-27T03:00:00Z" }}
"""
    )
    with dask.config.set(settings), dask_cluster(tmp_path / "dask", workers=1, threads=1, tls=["--tls-ca-file", str(ca), "--tls-cert", str(ca), "--tls-key", str(key)]) as running:
        assert running.address.startswith("tls://")
        config.write_text(config.read_text().replace("tls://127.0.0.1:1", running.address))  # [validation] cluster, as `auditor serve` reads it
        code, report = audit_json(config, "--deep")
        assert (code, report["assurance"]["deep_verified"]) == (0, 3), report["errors"]
        fresh_catalog(config)
        with dask.config.set({"distributed.comm.tls.ca-file": None, "distributed.comm.tls.client.cert": None, "distributed.comm.tls.client.key": None, "distributed.comm.timeouts.connect": "2s"}):
            code, report = audit_json(config, "--deep")
    assert code == 3
    assert "tls:// uses Dask's TLS settings" in report["errors"][0]["message"]


@pytest.mark.parametrize("frozen", ["worker", "scheduler"])
def test_a_frozen_worker_or_scheduler_holds_the_audit_for_a_bounded_time(tree: Tree, tmp_path: Path, frozen: str) -> None:
    """A Dask worker frozen mid-check (SIGSTOP) enforces no deadline, and the scheduler still counts it: the audit waited
    for Dask's worker-ttl (5 to 10 minutes). A frozen scheduler kept the audit waiting in its "how many workers" call for
    as long as it was frozen. Both end once nothing has finished for longer than the batches' deadlines allow."""
    from auditor.cluster import ClusterChecker
    from auditor.validate.sandbox import Limits

    settings = small_settings(tree, 6)
    marks = tmp_path / "marks"
    marks.mkdir()
    with dask_cluster(tmp_path / "dask", workers=1, threads=1, env={MARKS: str(marks)}) as running, Sandbox(workers=1) as local:
        checker = ClusterChecker(running.address, local=local, validator="tests.cluster_validators:slow", batch_files=1, worker_wait=600, stall_slack=4,
                                 limits=Limits(timeout_seconds=2, min_throughput=1e12))
        outcome: dict[str, Any] = {}
        audit = threading.Thread(target=lambda: outcome.update(report=run_audit(settings, stores={"d": open_store(tree.url)}, catalog=None, now=NOW, started=NOW, options=AuditOptions(deep=True), checker=checker)))
        audit.start()
        deadline = time.monotonic() + 30
        while not any(marks.iterdir()):
            assert time.monotonic() < deadline, "no check started"
            time.sleep(0.02)
        process = running.workers[0] if frozen == "worker" else running.scheduler
        process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        try:
            audit.join(60)
            assert not audit.is_alive(), f"the audit still waits for the frozen {frozen}"
        finally:
            process.send_signal(signal.SIGCONT)
        checker.close()
    report = outcome["report"]
    assert time.monotonic() - started < 40
    assert "unknown" in statuses(report) and "missing" not in statuses(report) and "invalid" not in statuses(report)
    assert any("finished nothing for" in e.message or "no worker for" in e.message for e in report.errors), report.errors
