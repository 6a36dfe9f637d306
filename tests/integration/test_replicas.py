"""Replicas: several `auditor serve` processes on one catalog announce every missing window exactly
once, across a crash (SIGKILL) and a clean restart of either, and one recovery when a late export
lands; the notice claim hands each notice to one claimer however many try at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditor.alerts.webhook import verify
from tests.conftest import Tree
from tests.servers import free_port

KEY = "replica-webhook-hmac-key"
TOKEN = "replica-read-token"
# one client for all the polling: each httpx.get() would build a client and load the CA bundle (~60 ms of CPU)
HTTP = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
AUDIT_EVERY = 1  # second: the replicas contend for both destinations all the time (their loops turn once a second)


class Receiver:
    """A webhook endpoint on 127.0.0.1 that checks every signature and keeps every POST."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                good = verify(KEY, body, self.headers.get("X-Auditor-Signature", ""), now=time.time())
                with receiver._lock:
                    if not good:
                        receiver.bad_signatures += 1
                    receiver.received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)

    def keys(self, kind: str) -> Counter[tuple[str, str, str, str]]:
        return Counter((r["rule"], r["export"], r["dataset_id"], r["scheduled"]) for r in self.snapshot() if r["kind"] == kind)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@dataclass
class Replica:
    """One `auditor serve` process (a restart is a new process, on a new port)."""

    name: str
    config: Path
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    incarnation: int = 0
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    shared_port: int = 0  # listen on this port with --reuse-port (else a free port of its own)

    def start(self) -> None:
        self.incarnation += 1
        self.port = self.shared_port or free_port()
        log = (self.logs / f"{self.name}-{self.incarnation}.log").open("wb")
        shared = ["--reuse-port"] if self.shared_port else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "auditor", "serve", "--config", str(self.config), "--host", "127.0.0.1", "--port", str(self.port), *shared],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self.started.append(self.process)

    def get(self, path: str) -> httpx.Response:
        return HTTP.get(f"http://127.0.0.1:{self.port}{path}")

    def health(self) -> dict[str, Any] | None:
        """/healthz of this incarnation, None while it does not answer yet."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"replica {self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            response = self.get("/healthz")
        except httpx.TransportError:
            return None
        return {"code": response.status_code, **response.json()}

    def wait_audited(self, timeout: float) -> dict[str, Any]:
        """Until this incarnation has audited at least one destination itself."""
        found: dict[str, Any] = {}

        def audited() -> bool:
            found.update(self.health() or {})
            return bool(found.get("last_audit"))

        wait_for(audited, timeout, f"replica {self.name} (incarnation {self.incarnation}) did not audit anything")
        return found

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)  # a crash: no cleanup, leases and locks left to the database
        self.process.wait(10)

    def terminate(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(30)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        text = "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob(f"{self.name}-*.log")))
        return "\n".join(text.splitlines()[-lines:])

    def last_audit(self) -> str | None:
        return (self.health() or {}).get("last_audit")

    def worker_failures(self) -> list[str]:
        return [line for p in sorted(self.logs.glob(f"{self.name}-*.log")) for line in p.read_text(errors="replace").splitlines() if "worker step" in line]


def wait_for(condition: Callable[[], bool], timeout: float, message: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(0.2)


def audit_rounds(replicas: tuple[Replica, ...], rounds: int, timeout: float) -> None:
    """Until each replica has finished `rounds` more audits of its own (each followed by its deliveries) from now on."""
    seen: dict[str, list[str | None]] = {r.name: [r.last_audit()] for r in replicas}

    def done() -> bool:
        for replica in replicas:
            latest = replica.last_audit()
            if latest != seen[replica.name][-1]:
                seen[replica.name].append(latest)
        return all(len(times) > rounds for times in seen.values())

    wait_for(done, timeout, lambda: f"not every replica audited {rounds} more times within {timeout} s: {seen}")


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Scenario:
    """Two destinations over a real clock: a 3-hourly schedule of seven windows that ended 3 h ago."""

    web: Tree
    crm: Tree
    staging: Tree
    slots: list[datetime]
    missing: set[tuple[str, str, str, str]]  # (rule, export, dataset, scheduled)
    late: tuple[str, str, datetime]  # (export, dataset, slot) that lands late during the test


def build_scenario(tmp_path: Path) -> Scenario:
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    slots = [hour - timedelta(hours=24) + timedelta(hours=3 * i) for i in range(7)]  # the last deadline is 5h55m ago: nothing pending
    trees = {}
    for name in ("web", "crm", "staging"):
        (tmp_path / name).mkdir()
        trees[name] = Tree(tmp_path / name)
    present = {
        ("web", "dsA"): [0, 1, 3, 5, 6],  # 2 and 4 missing
        ("web", "dsB"): [0, 1, 3, 4, 5, 6],  # 2 missing: the same window as dsA's
        ("crm", "dsC"): [0, 2, 3, 4, 6],  # 1 and 5 missing, on the other destination
    }
    missing = set()
    for (export, dataset), indices in present.items():
        for i, slot in enumerate(slots):
            if i in indices:
                trees[export].export(dataset, slot, landed=slot + timedelta(minutes=2))
            else:
                missing.add(("missed", export, dataset, iso(slot)))
    return Scenario(trees["web"], trees["crm"], trees["staging"], slots, missing, ("web", "dsA", slots[4]))


def write_config(tmp_path: Path, scenario: Scenario, receiver: Receiver, *, lock_lease: str | None = None) -> Path:
    schedule = f'{{ timeUnit = "hour", interval = 3, startTime = "{iso(scenario.slots[0])}", endTime = "{iso(scenario.slots[-1] + timedelta(hours=3))}" }}'
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[service]
tokens = [{{ name = "ops", token = "${{env:OPS_TOKEN}}", role = "read" }}]

[catalog]
url = "${{env:CATALOG_URL}}"
{f'lock_lease = "{lock_lease}"' if lock_lease else ""}

[validation]
isolate = false

[[channels]]
name = "hook"
kind = "webhook"
url = "{receiver.url}"
secret = "${{env:HOOK_KEY}}"

[[alerts]]
name = "missed"
when = "missing"
channels = ["hook"]

[[destinations]]
name = "web-store"
url = "{scenario.web.url}"
audit_every = "{AUDIT_EVERY}s"

[[destinations]]
name = "crm-store"
url = "{scenario.crm.url}"
audit_every = "{AUDIT_EVERY}s"

[[exports]]
name = "web"
destination = "web-store"
datasets = ["dsA", "dsB"]
format = "parquet"
manifest = true
grace = "5m"
schedule = {schedule}

[[exports]]
name = "crm"
destination = "crm-store"
datasets = ["dsC"]
format = "parquet"
manifest = true
grace = "5m"
schedule = {schedule}
"""
    )
    return config


def replica_env(catalog_url: str) -> dict[str, str]:
    """The environment of a replica: what write_config's configuration refers to."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OPS_TOKEN": TOKEN, "HOOK_KEY": KEY, "CATALOG_URL": catalog_url}


def land_late(scenario: Scenario) -> None:
    """The late export appears in one step (written aside, then renamed into the tree)."""
    _, dataset, slot = scenario.late
    paths = scenario.staging.export(dataset, slot, landed=datetime.now(UTC) - timedelta(seconds=1))
    folder = paths[0].parent
    target = scenario.web.root / folder.relative_to(scenario.staging.root)
    assert not target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(folder, target)


def run_replicas(tmp_path: Path, receiver: Receiver, catalog_url: str, *, upgrade: bool) -> dict[str, Any]:
    """The acceptance scenario; returns what it observed (asserting on the way)."""
    from auditor.catalog.repository import open_catalog

    scenario = build_scenario(tmp_path)
    config = write_config(tmp_path, scenario, receiver)
    env = replica_env(catalog_url)
    if upgrade:  # what `auditor db upgrade` runs: a shared catalog is upgraded on purpose
        from auditor.catalog import engine as schema

        engine = schema.make_engine(catalog_url)
        schema.upgrade(engine)
        engine.dispose()
    logs = tmp_path / "logs"
    logs.mkdir()
    a, b = Replica("a", config, env, logs), Replica("b", config, env, logs)
    expected_alerts = Counter(scenario.missing)
    began = time.monotonic()
    timeline: list[tuple[str, float]] = []

    def mark(step: str) -> None:
        timeline.append((step, round(time.monotonic() - began, 1)))

    def announced() -> bool:
        a.health(), b.health()  # fails at once when a replica has exited
        return set(receiver.keys("alert")) >= scenario.missing

    def not_announced() -> str:
        return (f"after 60 s not every missing window was announced: missing {sorted(scenario.missing - set(receiver.keys('alert')))}, "
                f"got {receiver.snapshot()}\n--- a:\n{a.log_tail()}\n--- b:\n{b.log_tail()}")

    try:
        a.start()
        b.start()
        wait_for(announced, 60, not_announced)
        mark("all announced")
        first = {"a": a.wait_audited(20), "b": b.wait_audited(20)}
        audit_rounds((a, b), 2, 30)  # a few more audit cycles of both: the first's notices were delivered before the second
        assert receiver.keys("alert") == expected_alerts, receiver.snapshot()

        mark("settled")
        a.kill()  # a crash of one replica
        a.start()
        wait_for(lambda: a.health() is not None, 30, lambda: f"replica a did not come back:\n{a.log_tail()}")
        mark("a back")
        b.terminate()  # then a clean stop of the other, while the new a runs
        mark("b stopped")
        b.start()
        a.wait_audited(30)  # both new processes audit (and find every episode open in the catalog)
        b.wait_audited(30)
        mark("both audited again")
        assert receiver.keys("alert") == expected_alerts, receiver.snapshot()

        land_late(scenario)
        mark("landed late")
        export, dataset, slot = scenario.late
        late_key = ("missed", export, dataset, iso(slot))
        wait_for(lambda: receiver.keys("recovery")[late_key] >= 1, 30, lambda: f"no recovery for {late_key}: {receiver.snapshot()}\n--- a:\n{a.log_tail()}\n--- b:\n{b.log_tail()}")
        mark("recovered")
        audit_rounds((a, b), 2, 30)  # both audit again: nothing more may arrive

        received = receiver.snapshot()
        alerts = receiver.keys("alert")
        recoveries = receiver.keys("recovery")
        assert alerts == expected_alerts, f"each missing window's alert exactly once: {alerts}"
        assert recoveries == Counter([late_key]), f"exactly one recovery, for the late window: {recoveries}"
        assert all(r["kind"] in ("alert", "recovery") for r in received)
        ids = Counter(r["notice_id"] for r in received)
        assert not [i for i, n in ids.items() if n > 1], f"a notice was delivered twice: {ids}"
        assert receiver.bad_signatures == 0
        recovery = next(r for r in received if r["kind"] == "recovery")
        assert "landed late" in recovery["text"]

        verdicts = []
        for replica in (a, b):
            health = replica.health()
            assert health is not None and health["code"] == 200 and health["status"] == "ok", health
            assert health["worker_errors"] == {}, (replica.name, health)
            compliance = replica.get("/api/compliance")
            assert compliance.status_code == 200
            verdicts.append(compliance.json())
        assert verdicts[0]["status"] == verdicts[1]["status"] == "not_compliant"
        assert verdicts[0]["windows"] == verdicts[1]["windows"] == {"ok": 16, "missing": 4, "late": 1}, verdicts[0]["windows"]
        failures = a.worker_failures() + b.worker_failures()
        assert failures == [], failures
    finally:
        a.stop_all()
        b.stop_all()

    catalog = open_catalog(catalog_url)
    try:
        notices = catalog.notices(limit=1000)
        audits = catalog.audits(limit=10_000)
        episodes = catalog.episodes(limit=1000)
    finally:
        catalog.close()
    assert sorted(n.id for n in notices) == sorted(r["notice_id"] for r in received)
    assert {n.state for n in notices} == {"delivered"} and all(n.attempts == 1 for n in notices), [(n.id, n.state, n.attempts, n.last_error) for n in notices]
    assert len(episodes) == len(scenario.missing) and sum(e.closed_at is not None for e in episodes) == 1
    scopes = Counter(tuple(a.scope) for a in audits)
    assert scopes[("web",)] >= 4 and scopes[("crm",)] >= 4, scopes  # each destination audited over and over, by whichever replica got it
    historical = [(a.id, a.scope, a.as_of.isoformat(timespec="milliseconds"), a.started_at.isoformat(timespec="milliseconds")) for a in audits if not a.live_exports]
    return {"notices": len(notices), "received": len(received), "audits": len(audits), "not_live": historical, "scopes": dict(scopes), "first_health": first, "timeline": timeline}


def held_by(db: Any, pid: int) -> set[str]:
    """The destinations of write_config whose audit lock process `pid` holds now, as pg_locks shows them
    (its sessions found by the ports of its TCP connections, so whatever it names them)."""
    import hashlib

    import psutil

    ports = [c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.raddr]
    names = {int.from_bytes(hashlib.sha256(f"auditor-destination:{name}".encode()).digest()[:8], "big", signed=True): name for name in ("web-store", "crm-store")}
    rows = db.execute(
        "SELECT (l.classid::bigint << 32) | l.objid::bigint FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND a.client_port = ANY(%s)", (ports,)
    ).fetchall()
    return {names[key] for (key,) in rows if key in names}


def holders(catalog_url: str) -> Callable[[int], set[str]]:
    """What tells the destinations whose audit lock a process holds now: pg_locks (PostgreSQL), audit_leases (SQLite)."""
    if catalog_url.startswith("sqlite"):
        import sqlite3

        path = catalog_url.removeprefix("sqlite:///")

        def in_leases(pid: int) -> set[str]:
            db = sqlite3.connect(path, timeout=10)
            try:
                return {name for name, holder in db.execute("SELECT destination, holder FROM audit_leases") if holder.split(":")[-2] == str(pid)}
            finally:
                db.close()

        return in_leases
    import psycopg

    def in_pg_locks(pid: int) -> set[str]:
        with psycopg.connect(catalog_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
            return held_by(db, pid)

    return in_pg_locks


def freeze_while_holding(replica: Replica, catalog_url: str, timeout: float) -> str:
    """SIGSTOP the replica at a moment it holds a destination's audit lock; returns that destination."""
    assert replica.process is not None
    pid = replica.process.pid
    held = holders(catalog_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if held(pid):
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.05)
            holding = held(pid)  # stopped: what it holds now, it holds until it answers again
            if holding:
                return min(holding)
            os.kill(pid, signal.SIGCONT)  # it let go just before it stopped: try again
        time.sleep(0.002)
    raise AssertionError(f"replica {replica.name} was never seen holding a destination within {timeout} s")


@pytest.mark.postgres
def test_a_replica_frozen_while_it_holds_a_destination_stops_the_other_for_one_lease_only(tmp_path: Path, postgres_url: str, receiver: Receiver) -> None:
    """A replica frozen (SIGSTOP: a stuck VM, a debugger, a host cut off) in the middle of an audit keeps its
    destination's lock while its connection lives, which may be forever. With a lease, PostgreSQL ends its
    session once it has not answered for lock_lease, and the other replica audits that destination; the frozen
    one, let go on, learns that it lost the lock, records what it audited (as history: the other audited later),
    and goes on auditing. No missing window is announced twice."""
    from auditor.catalog import engine as schema

    engine = schema.make_engine(postgres_url)
    schema.upgrade(engine)
    engine.dispose()
    frozen_replica_takes_one_lease(tmp_path, postgres_url, receiver)


def test_a_process_frozen_while_it_holds_a_destination_on_sqlite_stops_the_other_for_one_lease_only(tmp_path: Path, receiver: Receiver) -> None:
    """On SQLite, as on PostgreSQL: a serve process suspended while it holds a destination (a terminal's Ctrl-Z, a
    debugger) kept its lock file, and no other process audited the destination again for as long as it was frozen."""
    frozen_replica_takes_one_lease(tmp_path, f"sqlite:///{tmp_path / 'catalog' / 'auditor.db'}", receiver)


def frozen_replica_takes_one_lease(tmp_path: Path, catalog_url: str, receiver: Receiver) -> None:
    from auditor.catalog.repository import open_catalog

    scenario = build_scenario(tmp_path)
    config = write_config(tmp_path, scenario, receiver, lock_lease="2s")
    logs = tmp_path / "logs"
    logs.mkdir()
    env = replica_env(catalog_url)
    a, b = Replica("a", config, env, logs), Replica("b", config, env, logs)
    catalog = open_catalog(catalog_url)
    try:
        a.start()
        b.start()
        wait_for(lambda: set(receiver.keys("alert")) >= scenario.missing, 60, lambda: f"not all announced: {receiver.snapshot()}\n{a.log_tail()}\n{b.log_tail()}")
        a.wait_audited(20)
        b.wait_audited(20)
        destination = freeze_while_holding(a, catalog_url, 30)
        frozen_at = datetime.now(UTC)
        export = {"web-store": "web", "crm-store": "crm"}[destination]

        def audited_since_the_freeze() -> list[Any]:
            return [r for r in catalog.audits(limit=50) if export in r.scope and r.started_at > frozen_at]

        began = time.monotonic()
        wait_for(lambda: bool(audited_since_the_freeze()), 30,
                 lambda: f"with replica a frozen holding {destination}, nobody audited it for 30 s\n--- b:\n{b.log_tail()}")
        taken_over = time.monotonic() - began
        assert b.health() is not None  # b did it (a is frozen), and b still answers
        os.kill(a.process.pid if a.process else 0, signal.SIGCONT)
        audit_rounds((a, b), 2, 40)  # the frozen replica goes on auditing, both destinations again
        assert "lost the audit lock on " + destination in a.log_tail(400), a.log_tail()
        audit_rounds((a, b), 1, 30)
        assert receiver.keys("alert") == Counter(scenario.missing), receiver.snapshot()
        for replica in (a, b):
            health = replica.health()
            assert health is not None and health["code"] == 200 and health["status"] == "ok", (replica.name, health)
        assert a.worker_failures() + b.worker_failures() == []
        print(f"frozen holding {destination}; audited by the other replica {taken_over:.1f} s later (lease 2 s, loop 1 s)")
    finally:
        if a.process is not None and a.process.poll() is None:
            os.kill(a.process.pid, signal.SIGCONT)
        a.stop_all()
        b.stop_all()
        catalog.close()


@pytest.mark.postgres
def test_two_serve_processes_on_postgres_announce_every_missing_window_exactly_once(tmp_path: Path, postgres_url: str, receiver: Receiver) -> None:
    observed = run_replicas(tmp_path, receiver, postgres_url, upgrade=True)
    print("observed:", observed)


def test_two_serve_processes_on_one_sqlite_file_announce_every_missing_window_exactly_once(tmp_path: Path, receiver: Receiver) -> None:
    url = f"sqlite:///{tmp_path / 'catalog' / 'auditor.db'}"  # both replicas start on a file that does not exist yet
    observed = run_replicas(tmp_path, receiver, url, upgrade=False)
    print("observed:", observed)


def test_serve_processes_share_one_port_with_reuse_port(tmp_path: Path, receiver: Receiver) -> None:
    """`auditor serve --reuse-port`: a second process listens on the port the first holds (each with its own
    worker on the one catalog); with the first killed, every new connection to the port is still answered;
    a process without the flag cannot take the port."""
    scenario = build_scenario(tmp_path)
    config = write_config(tmp_path, scenario, receiver)
    env = replica_env(f"sqlite:///{tmp_path / 'auditor.db'}")
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    a, b = Replica("a", config, env, logs, shared_port=port), Replica("b", config, env, logs, shared_port=port)

    def answered() -> str:
        """Which process answered /healthz over a new connection (a kept-alive one would stay with one process)."""
        response = fresh_healthz(port)
        assert response is not None and response.status_code == 200, response
        return str(response.json()["worker"])

    try:
        a.start()
        wait_for(lambda: a.health() is not None, 30, lambda: f"replica a did not start:\n{a.log_tail()}")
        b.start()

        def b_serving() -> bool:
            assert b.process is not None and b.process.poll() is None, f"replica b exited:\n{b.log_tail()}"  # e.g. on a port it could not bind
            return "port shared with other processes" in b.log_tail()  # printed once it listens and its worker runs

        wait_for(b_serving, 30, lambda: f"replica b did not start serving:\n{b.log_tail()}")
        workers: set[str] = set()

        def both_answer() -> bool:  # the kernel spreads new connections over the processes that share the port
            workers.add(answered())
            return len(workers) == 2

        wait_for(both_answer, 30, lambda: f"one port, but only {workers} answered")
        a.kill()
        assert b.process is not None and b.process.poll() is None, b.log_tail()
        by_b = {answered() for _ in range(20)}  # every new connection, on the same port
        assert len(by_b) == 1 and by_b < workers, (by_b, workers)
        solo = subprocess.run(
            [sys.executable, "-m", "auditor", "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert solo.returncode != 0, solo.stderr[-2000:]
        assert {answered()} == by_b
    finally:
        a.stop_all()
        b.stop_all()


def test_a_reuse_port_process_whose_port_was_taken_while_it_started_stops_with_the_reason(tmp_path: Path, receiver: Receiver) -> None:
    """`--reuse-port` binds at once but listens only when it can answer: if a process without the flag took the
    port meanwhile, listening fails, and the process must say so and stop, not run on without serving."""
    import fcntl

    scenario = build_scenario(tmp_path)
    config = write_config(tmp_path, scenario, receiver)
    catalog = tmp_path / "shared-port.db"
    env = replica_env(f"sqlite:///{catalog}")
    port = free_port()
    serve = [sys.executable, "-m", "auditor", "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    with open(tmp_path / f".{catalog.name}.upgrade.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the new catalog cannot be created yet: the first process is held in its start
        first = subprocess.Popen([*serve, "--reuse-port"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(3)  # it has bound the port by now, and waits for the lock
        other = subprocess.Popen(serve, env=replica_env(f"sqlite:///{tmp_path / 'other.db'}"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: _answers(port), 30, "the process without --reuse-port did not take the port")
            fcntl.flock(lock, fcntl.LOCK_UN)
            output, _ = first.communicate(timeout=60)
            assert first.returncode != 0 and "cannot listen" in output, output
            assert _answers(port)
        finally:
            for process in (first, other):
                if process.poll() is None:
                    process.kill()
                process.wait(10)


def fresh_healthz(port: int) -> httpx.Response | None:
    """/healthz on `port` over a new connection (None when nothing answers)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    except httpx.TransportError:
        return None


def _answers(port: int) -> bool:
    response = fresh_healthz(port)
    return response is not None and response.status_code in (200, 503)


def _open_at(url: str, start: float, results: Any) -> None:
    from auditor.catalog.repository import open_catalog

    while time.time() < start:
        time.sleep(0.001)
    try:
        open_catalog(url).close()
        results.put("ok")
    except Exception as e:  # noqa: BLE001 - reported to the parent
        results.put(f"{type(e).__name__}: {e}")


def test_replicas_starting_together_on_a_fresh_sqlite_file_all_come_up(tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")  # children share the imports: the race, not the start-up, is what is timed
    failures: list[str] = []
    for trial in range(2):  # one trial nearly always shows it (3 processes); stop at the first
        url = f"sqlite:///{tmp_path / str(trial) / 'auditor.db'}"
        results = context.Queue()
        start = time.time() + 0.3
        processes = [context.Process(target=_open_at, args=(url, start, results)) for _ in range(3)]
        for process in processes:
            process.start()
        try:
            outcomes = [results.get(timeout=60) for _ in processes]
        finally:
            for process in processes:
                process.join(10)
                if process.is_alive():
                    process.kill()
        failures += [o for o in outcomes if o != "ok"]
        if failures:
            break
    assert failures == []


def test_a_newer_audit_between_an_audit_and_its_alerts_is_not_undone(tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import auditor.alerting
    from auditor.config import load_settings
    from auditor.runtime import Runtime
    from tests.conftest import t

    alerts = '[[channels]]\nname = "oncall"\nkind = "webhook"\nurl = "http://127.0.0.1:9/hook"\n[[alerts]]\nname = "missed"\nwhen = "missing"\nchannels = ["oncall"]\n'
    config = one_export_config(tmp_path, tree, f"sqlite:///{tmp_path / 'c.db'}", alerts)
    settings = load_settings(config, {})
    tree.export("ds", t("2026-11-27T00:00"))
    tree.export("ds", t("2026-11-27T06:00"))
    a, b = Runtime(settings), Runtime(settings)  # two replicas
    try:
        a.audit(now=t("2026-11-27T08:00"))  # 03:00 is missing: one episode, one alert
        tree.export("ds", t("2026-11-27T03:00"), landed=t("2026-11-27T08:30"))  # it lands late
        real = auditor.alerting.raise_alerts

        def a_pauses_before_its_alerts(*args: Any, **kwargs: Any) -> Any:
            monkeypatch.setattr(auditor.alerting, "raise_alerts", real)
            with b.catalog.destination_locks(["d"], wait=False) as free:
                pass
            if free:  # nothing keeps replica b from auditing before a's alerts: it does, as of a later time, and sees the late export
                b.audit(now=t("2026-11-27T08:31"), wait=False)
            return real(*args, **kwargs)

        monkeypatch.setattr(auditor.alerting, "raise_alerts", a_pauses_before_its_alerts)
        a.audit(now=t("2026-11-27T08:29"))  # replica a still sees 03:00 missing
        b.audit(now=t("2026-11-27T08:40"))  # (b's audit, if it had to wait) and one more
        kinds = Counter(n.kind for n in a.catalog.notices())
        assert kinds == Counter(alert=1, recovery=1), [(n.id, n.kind, n.created_at) for n in a.catalog.notices()]
        assert len(a.catalog.episodes()) == 1
    finally:
        a.close()
        b.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A catalog URL of either kind, its schema at head."""
    from auditor.catalog import engine as schema

    url = f"sqlite:///{tmp_path / 'catalog.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = schema.make_engine(url)
    schema.upgrade(engine)
    engine.dispose()
    return url


def test_a_holder_that_answers_keeps_its_destination_past_the_lease(any_catalog: str) -> None:
    """An audit longer than the lease keeps its lock: the holder renews it while it lives."""
    from auditor.catalog.engine import make_engine
    from auditor.catalog.repository import Catalog

    holder, other = Catalog(make_engine(any_catalog), lock_lease=timedelta(seconds=2)), Catalog(make_engine(any_catalog), lock_lease=timedelta(seconds=2))
    try:
        with holder.destination_locks(["d"], wait=False) as got:
            assert got
            deadline = time.monotonic() + 5  # two and a half leases
            while time.monotonic() < deadline:
                with other.destination_locks(["d"], wait=False) as taken:
                    assert not taken, "another process took a destination whose holder is alive"
                time.sleep(0.25)
        with other.destination_locks(["d"], wait=False) as taken:
            assert taken  # released at the end
    finally:
        holder.close()
        other.close()


@pytest.mark.postgres
def test_serve_keeps_a_destination_whose_lock_ran_out_due_and_says_so_when_it_keeps_happening(tree: Tree, tmp_path: Path, postgres_url: str) -> None:
    """With no other replica, a lease can still run out (the interpreter held up, a connection cut by a proxy): that
    audit is history, so nothing recorded the present. The destination stays due, the next turn audits it again,
    and three such audits in a row make /healthz fail with the reason."""
    from auditor.audit import LOCK_LOST
    from auditor.runtime import Runtime
    from auditor.service.worker import Worker
    from tests.conftest import t

    settings = _one_export_settings(tmp_path, tree, postgres_url)
    tree.export("ds", t("2026-11-27T00:00"))
    runtime = Runtime(settings)
    now = [t("2026-11-27T08:00")]
    worker = Worker(runtime, clock=lambda: now[0])
    try:
        assert worker.run_once()
        first = runtime.catalog.live_as_of()["web"]
        real = runtime.catalog.record_audit

        def lease_runs_out(*args: Any, **kwargs: Any) -> Any:
            _lease_runs_out(runtime)
            return real(*args, **kwargs)

        runtime.catalog.record_audit = lease_runs_out  # type: ignore[method-assign]
        for turn in range(1, 4):
            now[0] = t("2026-11-27T08:16") + timedelta(seconds=turn)  # due at the first turn (audit_every 15m), and due again after
            assert worker.due(now[0]) == ["d"], turn
            assert worker.run_once()
            assert worker.latest is not None and any(LOCK_LOST in e.message for e in worker.latest.errors)
            assert runtime.catalog.live_as_of()["web"] == first  # nothing recorded the present
            assert worker.health()[0] is (turn < 3), (turn, worker.health())
        assert "its audit lock ran out in 3 audits in a row" in worker.health()[1]
        runtime.catalog.record_audit = real  # type: ignore[method-assign]
        now[0] += timedelta(seconds=1)
        assert worker.run_once() and runtime.catalog.live_as_of()["web"] == now[0]
        assert worker.health() == (True, "ok") and worker.due(now[0] + timedelta(seconds=1)) == []
    finally:
        runtime.close()


@pytest.mark.postgres
def test_serve_keeps_a_destination_due_while_the_catalog_is_away_and_audits_it_once_it_is_back(
    tree: Tree, tmp_path: Path, postgres_url: str, postgres_server: str,
) -> None:
    """An audit serve cannot record raises no alert and moves no present: it made one anyway (reading storage),
    dropped it, counted it as done and waited a whole interval. Now the loop does not audit while the catalog
    cannot be reached, nor count as done an audit the catalog lost on its way: the step fails (and backs off),
    three in a row make /healthz fail with the reason, and the destination is audited once the catalog is back."""
    from sqlalchemy import create_engine, text

    from auditor.errors import CatalogError
    from auditor.runtime import Runtime
    from auditor.service.worker import Worker
    from tests.conftest import t

    settings = _one_export_settings(tmp_path, tree, postgres_url)
    tree.export("ds", t("2026-11-27T00:00"))
    runtime = Runtime(settings)
    now = [t("2026-11-27T08:00")]
    worker = Worker(runtime, clock=lambda: now[0])
    database = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    try:
        assert worker.run_once()
        first = runtime.catalog.live_as_of()["web"]
        real = runtime.catalog.record_audit

        def catalog_lost_on_the_way(*args: Any, **kwargs: Any) -> Any:
            raise CatalogError("catalog operation failed: the connection was closed")

        runtime.catalog.record_audit = catalog_lost_on_the_way  # type: ignore[method-assign]
        now[0] = t("2026-11-27T08:16")
        worker.run_once()  # once (a replica frozen while it recorded): still due, counted, no step failure yet
        assert worker.errors["audit"] == 1 and worker.unrecorded["d"] == 1 and worker.due(now[0]) == ["d"] and worker.steps["audit"].failures == 0
        now[0] += timedelta(seconds=1)
        worker.run_once()  # twice in a row: the step fails, and backs off
        assert worker.errors["audit"] == 3 and "could not be recorded, twice in a row" in str(worker.steps["audit"].last_error)
        runtime.catalog.record_audit = real  # type: ignore[method-assign]
        with admin.connect() as conn:  # the database goes away: no new connection, every open one ended
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": database})
        audited = worker.latest
        for turn in (2, 3):
            now[0] += timedelta(minutes=10)  # past the step's backoff
            worker.run_once()
            assert worker.steps["audit"].failures == turn and worker.latest is audited  # no audit made while it cannot be recorded
            assert worker.health()[0] is (turn < 3), (turn, worker.health())
        assert "the audit waits for" in worker.health()[1]
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        now[0] += timedelta(minutes=10)
        # the deliver step failed on the catalog too, and waits out its backoff (up to 5 minutes): once an audit is
        # recorded again it tries at once, and /healthz does not go on failing for a catalog that answers
        worker.steps["deliver"].failures, worker.steps["deliver"].next_try = 3, now[0] + timedelta(minutes=5)
        worker.steps["deliver"].last_error = "CatalogError: cannot reach the catalog"
        assert worker.run_once() and runtime.catalog.live_as_of()["web"] == now[0] > first
        assert worker.health() == (True, "ok") and worker.steps["deliver"].failures == 0
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        runtime.close()


def test_a_replica_whose_audits_went_unrecorded_is_healthy_again_once_another_records_them(tree: Tree, tmp_path: Path) -> None:
    """Replica 1's recordings were lost four times (it says so on /healthz); the catalog answers again and replica 2
    audits the destination each time it is due, before replica 1 does: replica 1 stayed unhealthy for as long as it
    did not win a turn itself."""
    from auditor.errors import CatalogError
    from auditor.runtime import Runtime
    from auditor.service.worker import Worker
    from tests.conftest import t

    settings = _one_export_settings(tmp_path, tree, f"sqlite:///{tmp_path / 'w.db'}")
    tree.export("ds", t("2026-11-27T00:00"))
    one, two = Runtime(settings), Runtime(settings)
    now = [t("2026-11-27T08:00")]
    first, second = Worker(one, clock=lambda: now[0]), Worker(two, clock=lambda: now[0])
    try:
        assert first.run_once()
        real = one.catalog.record_audit

        def lost(*args: Any, **kwargs: Any) -> Any:
            raise CatalogError("catalog operation failed: the connection was closed")

        one.catalog.record_audit = lost  # type: ignore[method-assign]
        now[0] = t("2026-11-27T08:16")
        for _ in range(4):
            first.run_once()
            now[0] += timedelta(minutes=6)  # past any backoff
        assert not first.health()[0] and "could not be recorded" in first.health()[1]
        one.catalog.record_audit = real  # type: ignore[method-assign]
        for _ in range(2):
            assert second.run_once()  # the other replica audits it, just before this one's turn
            first.run_once()
            now[0] += timedelta(minutes=16)
        assert first.health() == (True, "ok"), first.health()
    finally:
        one.close()
        two.close()


WAITER = """
import sys
from datetime import timedelta
from auditor.catalog.engine import make_engine
from auditor.catalog.repository import Catalog
catalog = Catalog(make_engine(sys.argv[1]), lock_lease=timedelta(seconds=2))
with catalog.destination_locks(["d"], wait=True) as got:  # waits, as `auditor audit` does
    print("got", got, flush=True)
"""


@pytest.mark.postgres
def test_a_process_frozen_while_it_waits_for_a_destination_loses_it_one_lease_after_it_is_granted(postgres_url: str) -> None:
    """A process that froze while it waited for a destination is granted the lock when the holder lets go; frozen,
    it never renews it, and loses it one lease later instead of keeping it for as long as its connection lives."""
    import psycopg

    from auditor.catalog.engine import make_engine
    from auditor.catalog.repository import Catalog

    holder, other = Catalog(make_engine(postgres_url), lock_lease=timedelta(seconds=2)), Catalog(make_engine(postgres_url), lock_lease=timedelta(seconds=2))
    waiter = subprocess.Popen([sys.executable, "-c", WAITER, postgres_url], stdout=subprocess.PIPE, text=True)
    try:
        with holder.destination_locks(["d"], wait=False) as got, psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
            assert got

            def waiting() -> bool:
                query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
                return bool(db.execute(query).fetchone()[0])  # type: ignore[index]

            wait_for(waiting, 30, "the waiter never waited for the lock")
            os.kill(waiter.pid, signal.SIGSTOP)  # and freezes while it waits
        released = time.monotonic()  # the holder let go: the frozen waiter is granted the lock

        def taken() -> bool:
            with other.destination_locks(["d"], wait=False) as free:
                return free

        wait_for(taken, 15, "a process frozen while it waited kept the destination it was granted")
        print(f"taken {time.monotonic() - released:.1f} s after the holder let go (lease 2 s)")
    finally:
        os.kill(waiter.pid, signal.SIGCONT)
        waiter.kill()
        waiter.wait(10)
        holder.close()
        other.close()


STALLS_IN_RECORD = """
import sys, time
from auditor.audit import AuditOptions
from auditor.catalog import repository
from auditor.config import load_settings
from auditor.runtime import Runtime
from tests.conftest import t

real = repository.Catalog._lost_locks

def stalls(self, conn, names):  # inside record_audit's transaction, holding the lock that orders every writer
    found = real(self, conn, names)
    print("recording", flush=True)
    time.sleep(600)  # as frozen, for PostgreSQL: idle in a transaction
    return found

repository.Catalog._lost_locks = stalls
Runtime(load_settings(sys.argv[1], {})).audit(now=t("2026-11-27T08:00"), options=AuditOptions(only_exports=frozenset({"one"})))
"""


@pytest.mark.postgres
def test_a_process_frozen_while_it_records_an_audit_holds_up_the_others_for_one_lease_only(tmp_path: Path, postgres_url: str) -> None:
    """Recording an audit takes a lock that orders every writer. A process that freezes while it holds it is ended by
    PostgreSQL one lease later, its transaction undone: the audits of other processes, of any destination, go on."""
    from auditor.audit import AuditOptions
    from auditor.catalog import engine as schema
    from auditor.config import load_settings
    from auditor.runtime import Runtime
    from tests.conftest import t

    engine = schema.make_engine(postgres_url)
    schema.upgrade(engine)
    engine.dispose()
    parts = [f"[catalog]\nurl = \"{postgres_url}\"\nlock_lease = \"2s\"\n[validation]\nisolate = false\n"]
    for name in ("one", "two"):
        tree = Tree(tmp_path / name)
        tree.root.mkdir()
        tree.export("ds", t("2026-11-27T00:00"))
        parts.append(f'[[destinations]]\nname = "{name}"\nurl = "{tree.url}"\n[[exports]]\nname = "{name}"\ndestination = "{name}"\ndatasets = ["ds"]\nformat = "parquet"\n'
                     'schedule = { timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-27T09:00:00Z" }\n')
    config = tmp_path / "auditor.toml"
    config.write_text("".join(parts))
    stalled = subprocess.Popen([sys.executable, "-c", STALLS_IN_RECORD, str(config)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert stalled.stdout is not None and stalled.stdout.readline().strip() == "recording"
        os.kill(stalled.pid, signal.SIGSTOP)
        began = time.monotonic()
        with Runtime(load_settings(config, {})) as runtime:
            done: dict[str, Any] = {}
            worker = threading.Thread(target=lambda: done.update(report=runtime.audit(now=t("2026-11-27T08:01"), options=AuditOptions(only_exports=frozenset({"two"})))), daemon=True)
            worker.start()
            worker.join(20)
            assert not worker.is_alive(), "an audit of another destination waited on a frozen process's recording for 20 s"
            report = done["report"]
            assert report is not None and "two" in report.live and report.errors == ()
            print(f"the other destination's audit recorded {time.monotonic() - began:.1f} s after the freeze (lease 2 s)")
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
        stalled.kill()
        stalled.wait(10)


def one_export_config(tmp_path: Path, tree: Tree, catalog_url: str, more: str = "", catalog: str = "") -> Path:
    """A configuration of one 3-hourly export "web" of dataset ds to destination d (the tree), with `more` tables
    and `catalog` settings."""
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "{catalog_url}"
{catalog}
[validation]
isolate = false
{more}
[[destinations]]
name = "d"
url = "{tree.url}"
[[exports]]
name = "web"
destination = "d"
datasets = ["ds"]
format = "parquet"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-27T09:00:00Z" }}
"""
    )
    return config


HOLD = """
import sys, time
from datetime import timedelta
from auditor.catalog.engine import make_engine
from auditor.catalog.repository import Catalog
catalog = Catalog(make_engine(sys.argv[1]), lock_lease=timedelta(seconds=float(sys.argv[2])))
with catalog.destination_locks(["d"], wait=True) as got:
    print("held" if got else "not held", flush=True)
    time.sleep(600)
"""


def test_a_holder_that_ends_lets_go_of_its_destination_at_once_and_a_frozen_one_after_a_lease(any_catalog: str) -> None:
    """A process that ends (SIGKILL: no cleanup) lets go of its destinations at once, however long the lease: the
    catalog's session ends with it (PostgreSQL), the system lets go of its lock file (SQLite). One frozen keeps them
    for one lease; woken, it finds them lost."""
    from auditor.catalog.engine import make_engine
    from auditor.catalog.repository import Catalog

    other = Catalog(make_engine(any_catalog), lock_lease=timedelta(seconds=2))
    try:
        for how, lease in (("killed", "600"), ("frozen", "2")):
            holder = subprocess.Popen([sys.executable, "-c", HOLD, any_catalog, lease], stdout=subprocess.PIPE, text=True)
            try:
                assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
                with other.destination_locks(["d"], wait=False) as taken:
                    assert not taken, "taken from a live holder"
                os.kill(holder.pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
                began = time.monotonic()
                while True:
                    with other.destination_locks(["d"], wait=False) as taken:
                        if taken:
                            break
                    assert time.monotonic() - began < 30, f"a {how} holder kept its destination for 30 s"
                    time.sleep(0.1)
                waited = time.monotonic() - began
                if how == "killed":
                    assert waited < 1.5, f"{waited:.1f} s for the destination of a process that ended (lease 600 s)"
                else:
                    assert 1.0 < waited < 6, f"{waited:.1f} s for the destination of a frozen holder (lease 2 s)"
            finally:
                if holder.poll() is None:
                    os.kill(holder.pid, signal.SIGCONT)
                    holder.kill()
                holder.wait(10)
    finally:
        other.close()


def _one_export_settings(tmp_path: Path, tree: Tree, postgres_url: str) -> Any:
    from auditor.catalog import engine as schema
    from auditor.config import load_settings

    engine = schema.make_engine(postgres_url)
    schema.upgrade(engine)
    engine.dispose()
    return load_settings(one_export_config(tmp_path, tree, postgres_url, catalog='lock_lease = "2s"'), {})


def _lease_runs_out(runtime: Any) -> None:
    """What becomes of the lock of a holder that stopped renewing it: PostgreSQL ends its session, and its locks with
    it; on SQLite its row is not renewed for a lease (and is free to take)."""
    from sqlalchemy import text

    lease = runtime.catalog._leases["d"]
    if runtime.catalog.engine.dialect.name == "sqlite":
        lease._stop.set()  # frozen: it renews no more
        with runtime.catalog.engine.begin() as conn:
            conn.execute(text("UPDATE audit_leases SET renewed_at = renewed_at - 3600 WHERE destination = 'd'"))
        return
    with runtime.catalog.engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lease.pid}).scalar_one()  # signals it, and returns

        def gone() -> bool:
            found = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": lease.pid}).scalar_one()
            conn.commit()  # pg_stat_activity is read once per transaction: the next look is a new one
            return not found

        wait_for(gone, 10, f"backend {lease.pid} did not end")


def _seen_stale(runtime: Any) -> None:
    """On SQLite a process takes a lease not renewed for a lease once it has seen it so for half a lease: b looks first."""
    if runtime.catalog.engine.dialect.name != "sqlite":
        return
    with runtime.catalog.destination_locks(["d"], wait=False) as taken:
        assert not taken
    time.sleep(runtime.catalog.lock_lease.total_seconds() / 2 + 0.1)


@pytest.mark.parametrize("order", ["the other records first", "the one that lost it records first"])
def test_an_audit_whose_lock_ran_out_is_history_and_writes_no_file_rows(tree: Tree, tmp_path: Path, any_catalog: str, order: str) -> None:
    """Replica a's lease runs out (it froze) after it read the catalog's file rows; b takes the destination, reads
    the rows under its lock and finds a file gone. Whenever a records, before b or after (b's clock is even a minute
    behind a's), a's audit is history, says why, raises nothing, and writes no file rows: b trusts the rows it read
    under its lock, and the present is b's."""
    from auditor.audit import LOCK_LOST
    from auditor.runtime import Runtime
    from tests.conftest import t

    settings = _one_export_settings(tmp_path, tree, any_catalog)
    tree.export("ds", t("2026-11-27T00:00"))
    victim = tree.export("ds", t("2026-11-27T03:00"))[0]
    key = victim.relative_to(tree.root).as_posix()
    a, b = Runtime(settings), Runtime(settings)
    try:
        assert a.audit(now=t("2026-11-27T08:00")) is not None
        assert key in a.catalog.known_files("d")
        real_a, real_b = a.catalog.record_audit, b.catalog.record_audit
        recorded: dict[str, Any] = {}

        def a_froze_before_it_recorded(*a_args: Any, **a_kwargs: Any) -> Any:
            _lease_runs_out(a)
            victim.unlink()

            def b_records(*args: Any, **kwargs: Any) -> Any:
                if order == "the one that lost it records first":
                    recorded["a"] = real_a(*a_args, **a_kwargs)  # a runs again while b holds the lock, and records
                return real_b(*args, **kwargs)

            b.catalog.record_audit = b_records  # type: ignore[method-assign]
            _seen_stale(b)
            recorded["b"] = b.audit(now=t("2026-11-27T08:09"), wait=False)  # the lock is free: b audits, and sees the file gone
            if "a" not in recorded:
                recorded["a"] = real_a(*a_args, **a_kwargs)
            return recorded["a"]

        a.catalog.record_audit = a_froze_before_it_recorded  # type: ignore[method-assign]
        report = a.audit(now=t("2026-11-27T08:10"))
        assert recorded["b"] is not None and "web" in recorded["b"].live
        assert report is not None and report.live == frozenset() and any(LOCK_LOST in e.message for e in report.errors), report.errors
        assert key not in a.catalog.known_files("d"), "the present says a file is there that the live audit found gone"
        stored = a.catalog.audit(report.audit_id)
        assert stored is not None and not stored.live_exports  # the ledger keeps it, as history
    finally:
        a.close()
        b.close()


@pytest.mark.postgres
def test_concurrent_claims_hand_each_notice_to_one_claimer(postgres_url: str) -> None:
    from auditor.catalog.engine import make_engine, upgrade
    from auditor.catalog.repository import open_catalog

    engine = make_engine(postgres_url)
    upgrade(engine)
    engine.dispose()
    catalog = open_catalog(postgres_url)
    try:
        now = datetime.now(UTC)
        channels = [f"channel-{i:03d}" for i in range(200)]
        assert catalog.open_episode("burst|web|ds|-", rule="burst", export="web", dataset="ds", scheduled=None, message="200 notices", payload={},
                                    channels=channels, now=now, audit_id=None, )
        pending = {n.id for n in catalog.notices(limit=1000, state="pending")}
        assert len(pending) == 200

        claims: dict[str, list[int]] = {f"h{i}": [] for i in range(8)}
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)

        def claimer(holder: str) -> None:
            try:
                barrier.wait(10)
                while True:
                    got = catalog.claim_notices(now + timedelta(seconds=1), holder=holder, lease=timedelta(minutes=2), limit=50)
                    if not got:
                        return
                    claims[holder].extend(n.id for n in got)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=claimer, args=(h,)) for h in claims]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        everything = [i for ids in claims.values() for i in ids]
        duplicates = [i for i, n in Counter(everything).items() if n > 1]
        assert duplicates == [], f"claimed twice: {duplicates}"
        assert set(everything) == pending
        assert sum(bool(ids) for ids in claims.values()) >= 2, {h: len(ids) for h, ids in claims.items()}  # they really contended

        assert {n.id for n in catalog.notices(limit=1000, state="pending")} == pending  # claimed, not sent: still pending, under lease
        assert catalog.claim_notices(now + timedelta(seconds=2), holder="late", lease=timedelta(minutes=2), limit=500) == []  # the leases hold
    finally:
        catalog.close()


def test_on_sqlite_a_process_waiting_for_its_next_destination_keeps_the_one_it_holds(tmp_path: Path) -> None:
    """P holds d1 and waits for d2 longer than the lease: its lease on d1 is renewed meanwhile (it was not, and a third
    process took d1 from a live holder)."""
    from auditor.catalog import engine as schema
    from auditor.catalog.repository import Catalog

    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = schema.make_engine(url)
    schema.ensure_schema(engine)
    engine.dispose()
    p, q, r = (Catalog(schema.make_engine(url), lock_lease=timedelta(seconds=2)) for _ in range(3))
    q_holds, q_lets_go, p_got = threading.Event(), threading.Event(), threading.Event()

    def q_holds_d2() -> None:
        with q.destination_locks(["d2"], wait=False) as got:
            assert got
            q_holds.set()
            q_lets_go.wait(20)

    def p_takes_both() -> None:
        with p.destination_locks(["d1", "d2"], wait=True) as got:
            assert got
            p_got.set()

    threads = [threading.Thread(target=q_holds_d2, daemon=True), threading.Thread(target=p_takes_both, daemon=True)]
    threads[0].start()
    assert q_holds.wait(10)
    threads[1].start()
    try:
        time.sleep(4)  # two leases: P holds d1 and waits for d2 all along
        with r.destination_locks(["d1"], wait=False) as taken:
            assert not taken, "a third process took d1 from a live process waiting for d2"
    finally:
        q_lets_go.set()
    assert p_got.wait(10)
    for thread in threads:
        thread.join(10)
    for catalog in (p, q, r):
        catalog.close()


def test_on_sqlite_a_holder_kept_from_renewing_by_a_long_write_keeps_its_destination(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock for longer than the lease (a long recording): the holder cannot renew
    meanwhile, and a process asking for its destination took it the moment the write ended."""
    import sqlite3

    from auditor.catalog import engine as schema
    from auditor.catalog.repository import Catalog

    database = tmp_path / "c.db"
    url = f"sqlite:///{database}"
    engine = schema.make_engine(url)
    schema.ensure_schema(engine)
    engine.dispose()
    holder = subprocess.Popen([sys.executable, "-c", HOLD.replace('["d"]', '["d2"]'), url, "2"], stdout=subprocess.PIPE, text=True)
    other = Catalog(schema.make_engine(url), lock_lease=timedelta(seconds=2))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        writer = sqlite3.connect(database, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        asked: list[bool] = []
        stop = threading.Event()

        def ask() -> None:
            while not stop.is_set():
                with other.destination_locks(["d2"], wait=False) as taken:
                    asked.append(taken)
                time.sleep(0.1)

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        time.sleep(5)  # two and a half leases
        writer.execute("COMMIT")
        writer.close()
        time.sleep(3)
        stop.set()
        asking.join(30)
        assert asked and not any(asked), "taken from a live holder that a long write kept from renewing"
    finally:
        holder.kill()
        holder.wait(10)
        other.close()


def test_serve_started_while_its_postgres_catalog_refuses_connections_serves_unhealthy_and_audits_once_it_answers(
    tmp_path: Path, postgres_url: str, postgres_server: str, receiver: Receiver
) -> None:
    """`auditor serve` started while its database server does not answer (both started together, it restarts) exited
    at once with code 2, leaving the audits to a supervisor's restart policy. It now serves: /healthz answers 503 with
    the reason while the catalog cannot be reached, and the worker audits, alerts and turns healthy once it answers.
    A catalog that needs an upgrade still stops the start (a person must act)."""
    from sqlalchemy import create_engine, text

    from auditor.catalog import engine as schema

    scenario = build_scenario(tmp_path)
    config = write_config(tmp_path, scenario, receiver)
    env = replica_env(postgres_url)
    logs = tmp_path / "logs"
    logs.mkdir()
    database = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    replica = Replica("a", config, env, logs)
    try:
        needs_upgrade = subprocess.run([sys.executable, "-m", "auditor", "serve", "--config", str(config), "--port", str(free_port())],
                                       env=env, capture_output=True, text=True, timeout=60, check=False)
        assert needs_upgrade.returncode == 2 and "auditor db upgrade" in " ".join(needs_upgrade.stderr.split()), needs_upgrade.stderr
        engine = schema.make_engine(postgres_url)
        schema.upgrade(engine)
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
        replica.start()
        answered: dict[str, Any] = {}

        def unhealthy() -> bool:
            answered.update(replica.health() or {})
            return answered.get("code") == 503

        wait_for(unhealthy, 30, lambda: f"no 503 from /healthz: {answered}\n{replica.log_tail()}")
        assert "cannot reach the catalog" in answered["error"], answered
        time.sleep(3)  # a few turns of the loop without a catalog: still up, nothing announced
        assert replica.process is not None and replica.process.poll() is None and receiver.snapshot() == []
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        wait_for(lambda: set(receiver.keys("alert")) >= scenario.missing, 90, lambda: f"not announced once the catalog answered:\n{replica.log_tail()}")
        wait_for(lambda: (replica.health() or {}).get("code") == 200, 30, lambda: f"not healthy again:\n{replica.log_tail()}")
        assert receiver.keys("alert") == Counter(scenario.missing)
        assert "serving meanwhile" in " ".join(replica.log_tail(200).split())
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        replica.stop_all()
