"""Benchmark: restore lookups from a catalog of a million files, on SQLite and on PostgreSQL.

Run: .venv/bin/python bench/catalog_bench.py [--files 1022000] [--datasets 50] [--exports 10] [--per-window 6]
     [--backend both|sqlite|postgresql] [--lookups 1000] [--clients 20] [--requests 250]
     [--build-only] [--reaudit] [--profile FILE] [--keep DIR [--reuse]]

Builds an estate the way AEP writes it, straight into each catalog THROUGH THE PRODUCT'S OWN PATH:
`--datasets` datasets spread over `--exports` exports (each on its own destination), every
dataset exported every 3 hours (first full, then incrementals) for as many windows as make
`--files` files, each window a folder of `--per-window` gzip-Parquet files and a manifest
(default: 50 datasets × 2,920 windows (a year) × 7 files = 1,022,000 files). The files are put in an
in-memory fsspec destination (memory://), one export at a time, and audited by `Runtime.audit`
(listing, sorting into windows, reconcile, report, `Catalog.record_audit`), then dropped. Only
the validator is shared: files with the same bytes get the verdict the real validator gave the
first of them (every data file here has the same bytes; manifests are parsed one by one).

Then, on each backend, in this one run:
- the floor: one single-row primary-key SELECT through the catalog's engine (a connection checked
  out of its pool per query, as each catalog read does), p50 and p99;
- restore lookups (`plan_restore`, what `auditor restore --at` and /api/restore answer) for an
  8-window chain (a full + 7 incrementals: 8 folders, 48 data files), random datasets, one client:
  p50 / p99 against the floor (goal: p99 ≤ 20 ms); a whole-year chain is printed for scale;
- the same lookups over HTTP from `--clients` concurrent clients against the service's app in
  uvicorn in its own process (bench/api_load.py), beside GET /healthz measured the same way
  (goal: p99 ≤ 40 ms);
- the plans of the lookup queries (EXPLAIN after VACUUM ANALYZE; EXPLAIN QUERY PLAN on SQLite, without
  statistics, as the product leaves it): no lookup may read a table of 1,000 rows or more whole.
PostgreSQL runs in a scratch database created and dropped here (--postgres-admin).

The build also meters the catalog's write path: each `Catalog.record_audit` in wall and CPU seconds (this
process: on a loaded machine CPU is the steadier figure; PostgreSQL's own work is not in it), its write
statements and the rows they changed, by table. `--build-only` stops after the build; `--reaudit` audits each
export a second time, unchanged, and reports what recording that audit wrote (windows are stamped with the
audit that judged them; nothing else should change); `--profile FILE` runs the build under cProfile (CPU time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
from sqlalchemy import Engine, create_engine, event, text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: api_load beside this file
from api_load import hammer, percentiles, serve_app

from auditor.audit import AuditOptions, InProcessChecker
from auditor.catalog.engine import make_engine, upgrade
from auditor.catalog.repository import Catalog
from auditor.config import Settings, load_settings
from auditor.errors import StorageError
from auditor.exporter import encode_records, spark_name
from auditor.restore import plan_restore
from auditor.runtime import Runtime
from auditor.validate import FileVerdict, Source, data_suffix

START = datetime(2025, 1, 1, tzinfo=UTC)
STEP = timedelta(hours=3)
CHAIN = 8  # windows in the measured restore chain: a full and 7 incrementals
WARNED = 10  # every 10th window has a finding (a warning): findings is a big table too
TOKEN = "bench-catalog-read-token"
AEP_DESTINATION = "d0420d72-756c-4159-9e7f-7d3e2f8b501e"


@dataclass(frozen=True)
class Estate:
    datasets: int
    exports: int
    windows: int
    per_window: int  # data files per window (plus one manifest)

    @property
    def files(self) -> int:
        return self.datasets * self.windows * (self.per_window + 1)

    @property
    def as_of(self) -> datetime:
        """Just before the next window: every window of the year is due and judged."""
        return START + self.windows * STEP - timedelta(minutes=1)

    def dataset_ids(self, export: int) -> list[str]:
        return [f"{d:024x}" for d in range(self.datasets) if d % self.exports == export]


def estate_of(files: int, datasets: int, exports: int, per_window: int) -> Estate:
    windows = max(CHAIN, round(files / datasets / (per_window + 1)))
    return Estate(datasets, min(exports, datasets), windows, per_window)


def write_config(path: Path, estate: Estate, catalog_url: str) -> None:
    """The auditor's config for the estate: one destination (memory://) per export."""
    parts = [f'[catalog]\nurl = "{catalog_url}"\n', f'[service]\ntokens = [{{ name = "bench", token = "{TOKEN}" }}]\n']
    for e in range(estate.exports):
        ids = ", ".join(f'"{d}"' for d in estate.dataset_ids(e))
        parts.append(
            f"""
[[destinations]]
name = "d{e:02d}"
url = "memory://estate/d{e:02d}"

[[exports]]
name = "e{e:02d}"
destination = "d{e:02d}"
datasets = [{ids}]
format = "parquet"
compression = "gzip"
manifest = true
grace = "1h"
schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 3, startTime = "{START:%Y-%m-%dT%H:%M:%SZ}" }}
"""
        )
    path.write_text("\n".join(parts))


def drop_export(fs: Any, export: int) -> None:
    """Forget one export's files (MemoryFileSystem.rm is quadratic in the files it holds)."""
    prefix = f"/estate/d{export:02d}/"
    for key in [k for k in fs.store if k.startswith(prefix)]:
        del fs.store[key]
    fs.pseudo_dirs[:] = [d for d in fs.pseudo_dirs if not d.startswith(prefix)]


def put_export(fs: Any, estate: Estate, export: int, data: bytes) -> int:
    """Write one export's folders into the in-memory destination; returns the file count."""
    count = 0
    for dataset in estate.dataset_ids(export):
        for w in range(estate.windows):
            when = START + w * STEP
            folder = f"{dataset}/exportTime={when:%Y%m%d%H%M}"
            root = f"/estate/d{export:02d}/{folder}"
            rng = random.Random(f"{dataset}-{w}")
            sink = root if w % WARNED else f"/elsewhere/{w}"  # one window in WARNED: a warning (manifest.sink_path), still good
            results = []
            for index in range(estate.per_window):
                name = spark_name(index, ".gz.parquet", rng)
                fs.pipe_file(f"{root}/{name}", data)
                results.append({"sinkPath": sink, "name": name, "size": len(data)})
            run_id = f"{rng.getrandbits(64):016x}"
            manifest = {"flowRunId": run_id, "scheduledTime": f"{when:%Y-%m-%dT%H:%M:%SZ}", "exportResults": results}
            fs.pipe_file(f"{root}/manifest-{AEP_DESTINATION}-{run_id}.json", json.dumps(manifest, separators=(",", ":")).encode())
            count += estate.per_window + 1
    return count


class SameBytesChecker(InProcessChecker):
    """The real validator, once per distinct file content: the estate's data files all share their bytes."""

    def __init__(self) -> None:
        self.verdicts: dict[tuple[str, int, bool, str], FileVerdict] = {}
        self.validated = 0

    def check(self, source: Source, name: str, *, deep: bool) -> FileVerdict:
        tail = source.read_range(max(0, source.size - 64), source.size)
        key = (data_suffix(name) or "", source.size, deep, hashlib.sha256(tail).hexdigest())
        found = self.verdicts.get(key)
        if found is None:
            found = self.verdicts[key] = super().check(source, name, deep=deep)
            self.validated += 1
        return found

    def check_many(self, items: Sequence[tuple[Source, str]], *, deep: bool) -> list[FileVerdict | StorageError]:
        answers: list[FileVerdict | StorageError] = []
        for source, name in items:
            try:
                answers.append(self.check(source, name, deep=deep))
            except StorageError as e:
                answers.append(e)
        return answers


@dataclass
class WriteCost:
    """What Catalog.record_audit cost over some audits: seconds (wall and this process's CPU), write statements, rows written by table."""

    seconds: float = 0.0
    cpu: float = 0.0
    statements: int = 0
    rows: Counter[str] = field(default_factory=Counter)

    def line(self, files: int) -> str:
        tables = ", ".join(f"{table} {count:,}" for table, count in self.rows.most_common())
        return (f"record_audit {self.seconds:.1f} s wall, {self.cpu:.1f} s CPU ({files / max(self.cpu, 1e-9):,.0f} files per CPU-second), "
                f"{self.statements:,} write statements, {sum(self.rows.values()):,} rows written ({tables or 'none'})")


_WRITE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)


@contextmanager
def write_cost(catalog: Catalog, cost: WriteCost) -> Iterator[None]:
    """Meter every record_audit of `catalog`: time it, count the statements that write and the rows they changed (by table)."""
    original = catalog.record_audit
    writing = [False]

    def listen(_conn: Any, cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool) -> None:
        m = _WRITE.match(statement)
        if writing[0] and m is not None:
            cost.statements += 1
            cost.rows[m.group(1).lower()] += max(cursor.rowcount, 0)

    def metered(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        writing[0] = True
        try:
            return original(*args, **kwargs)
        finally:
            writing[0] = False
            cost.seconds += time.perf_counter() - wall
            cost.cpu += time.process_time() - cpu

    event.listen(catalog.engine, "after_cursor_execute", listen)
    catalog.record_audit = metered  # type: ignore[method-assign]
    try:
        yield
    finally:
        catalog.record_audit = original  # type: ignore[method-assign]
        event.remove(catalog.engine, "after_cursor_execute", listen)


def build(settings: Settings, estate: Estate, *, say: Callable[[str], None] = print, reaudit: bool = False) -> float:
    """Audit the estate into the catalog, one export at a time; returns the seconds it took.
    `reaudit`: audit each export a second time, unchanged, and report what that audit's record cost."""
    data = encode_records([{"id": j, "city": f"city-{j % 7}", "revenue": j / 7} for j in range(50)], file_format="parquet", compression="gzip")
    fs = fsspec.filesystem("memory")
    checker = SameBytesChecker()
    total = cpu = 0.0
    first, again = WriteCost(), WriteCost()
    with Runtime(settings, checker=checker) as runtime:
        for e in range(estate.exports):
            drop_export(fs, e)
            count = put_export(fs, estate, e, data)
            options = AuditOptions(only_exports=frozenset({f"e{e:02d}"}))
            started, process = time.perf_counter(), time.process_time()
            with write_cost(runtime.catalog, first):
                report = runtime.audit(now=estate.as_of, options=options)
            elapsed = time.perf_counter() - started
            total += elapsed
            cpu += time.process_time() - process
            assert report is not None and report.status == "compliant" and not report.errors, (report.status if report else None, report.errors if report else None)
            windows = sum(len(x.windows) for x in report.exports)
            say(f"  audit of export e{e:02d}: {count} files, {windows} windows, {elapsed:.1f} s ({count / elapsed:,.0f} files/s)")
            if reaudit:
                with write_cost(runtime.catalog, again):
                    report = runtime.audit(now=estate.as_of, options=options)
                assert report is not None and report.status == "compliant", report.status if report else None
            drop_export(fs, e)
    say(f"  build: {total:.1f} s wall, {cpu:.1f} s CPU in this process ({estate.files / max(cpu, 1e-9):,.0f} files per CPU-second); {first.line(estate.files)}")
    if reaudit:
        say(f"  re-audit of every export, unchanged: {again.line(estate.files)}")
    return total


@contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server, dropped afterwards."""
    name = f"auditor_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def analyze(engine: Engine) -> None:
    """VACUUM ANALYZE on PostgreSQL (what autovacuum soon does by itself: statistics and the visibility map
    index-only scans need); a SQLite catalog is measured as the product leaves it, without statistics."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


def floor_lookups(engine: Engine, count: int, max_id: int) -> list[float]:
    """Seconds of single-row primary-key SELECTs, each on a connection checked out of the pool."""
    rng = random.Random(7)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with engine.connect() as conn:
            conn.execute(text("SELECT id, status FROM windows WHERE id = :id"), {"id": rng.randint(1, max_id)}).one()
        times.append(time.perf_counter() - started)
    return times


def lookups(settings: Settings, catalog: Catalog, estate: Estate, count: int, windows: int) -> list[float]:
    """Seconds of restore lookups of a `windows`-window chain of random datasets (each must be complete)."""
    rng = random.Random(11)
    at = START + (windows - 1) * STEP
    times = []
    for _ in range(count):
        dataset = f"{rng.randrange(estate.datasets):024x}"
        started = time.perf_counter()
        plan = plan_restore(settings, catalog, dataset, at)
        times.append(time.perf_counter() - started)
        assert plan.complete and len(plan.steps) == windows and sum(len(s.files) for s in plan.steps) == windows * estate.per_window, plan.reason
    return times


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) run on `engine` meanwhile."""
    seen: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def lookup_statements(settings: Settings, catalog: Catalog, estate: Estate) -> dict[str, tuple[str, Any]]:
    """The SQL of every lookup the product makes for a restore, by what it is for."""
    dataset = f"{0:024x}"
    at = START + (CHAIN - 1) * STEP
    with captured(catalog.engine) as seen:
        plan_restore(settings, catalog, dataset, at)
    names = ["answering audit", "windows up to T", "files of the chain's folders"]
    found = dict(zip(names, seen, strict=True))
    audit = catalog.audit(catalog.datasets("e00", dataset, counts=False)[0].audit_id or 0)
    for label, call in (
        ("findings of a window", lambda: catalog.window_findings("e00", dataset, at)),
        ("window counts by status", lambda: catalog.datasets("e00", dataset)),
        ("status history of a window", lambda: catalog.window_history("e00", dataset, at)),
        ("audit by report digest", lambda: catalog.find_report(audit.report_sha256 or "" if audit else "")),
    ):
        with captured(catalog.engine) as seen:
            call()
        found[label] = seen[0]
    return found


def explain(engine: Engine, statement: str, parameters: Any) -> list[tuple[str, str | None, str | None]]:
    """(node, table, index) of each scan in the plan of one statement."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar_one()
            nodes: list[tuple[str, str | None, str | None]] = []

            def walk(node: dict[str, Any]) -> None:
                if "Scan" in node["Node Type"]:
                    nodes.append((node["Node Type"], node.get("Relation Name"), node.get("Index Name")))
                for child in node.get("Plans", []):
                    walk(child)

            walk(plan[0]["Plan"])
            return nodes
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        return [(str(row[-1]), None, None) for row in rows if str(row[-1]).startswith(("SCAN", "SEARCH"))]


def seq_scans(nodes: Sequence[tuple[str, str | None, str | None]], counts: dict[str, int]) -> list[str]:
    """The big tables (1,000 rows or more) a plan reads whole: PostgreSQL Seq Scan; SQLite SCAN without an index."""
    found = []
    for node, table, _index in nodes:
        name = table if node == "Seq Scan" else (node.split()[1] if node.startswith("SCAN ") and " INDEX " not in node else None)
        if name is not None and counts.get(name, 0) >= 1000:
            found.append(name)
    return found


def summary(latencies: Sequence[float]) -> tuple[float, float]:
    p50, p99 = percentiles(latencies)
    return p50 * 1000, p99 * 1000


def measure(label: str, url: str, estate: Estate, args: argparse.Namespace, work: Path, *, built: bool = False) -> None:
    config = work / f"{label}.toml"
    write_config(config, estate, url)
    settings = load_settings(config, dict(os.environ))
    print(f"\n== {label}: {estate.files:,} files = {estate.datasets} datasets × {estate.windows} windows × ({estate.per_window} gzip Parquet + 1 manifest), {estate.exports} exports")
    if built:
        print(f"  reusing the catalog built before at {url}")
    else:
        upgrade(make_engine(url))
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile(time.process_time)  # CPU seconds: the machine may be loaded
            seconds = profiler.runcall(build, settings, estate, reaudit=args.reaudit)
            profiler.dump_stats(args.profile)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats("repository|sqlalchemy|sqlite3|psycopg", 40)
        else:
            seconds = build(settings, estate, reaudit=args.reaudit)
        print(f"  built in {seconds:.1f} s through Runtime.audit → Catalog.record_audit ({estate.files / seconds:,.0f} files/s)")
    if args.build_only:
        return
    catalog = Catalog(make_engine(url))
    try:
        counts = catalog.table_counts()
        print(f"  catalog: {counts['files']:,} files, {counts['windows']:,} windows, {counts['export_folders']:,} folders, {counts['findings']:,} findings, {counts['audits']} audits")
        assert counts["files"] == estate.files, counts
        analyze(catalog.engine)
        print("  plans" + (" (after VACUUM ANALYZE):" if catalog.engine.dialect.name == "postgresql" else " (no statistics):"))
        bad = []
        for what, (statement, parameters) in lookup_statements(settings, catalog, estate).items():
            nodes = explain(catalog.engine, statement, parameters)
            shown = "; ".join(f"{n} on {t} using {i}" if i else (f"{n} on {t}" if t else n) for n, t, i in nodes)
            print(f"    {what:<30} {shown}")
            bad += seq_scans(nodes, counts)
        plan_restore(settings, catalog, f"{0:024x}", START)  # warm the pool and the caches
        floor = summary(floor_lookups(catalog.engine, args.lookups, counts["windows"]))
        chain = summary(lookups(settings, catalog, estate, args.lookups, CHAIN))
        year = summary(lookups(settings, catalog, estate, max(10, args.lookups // 20), estate.windows))
        print(f"  floor: one single-row primary-key SELECT (pooled connection): p50 {floor[0]:.2f} ms, p99 {floor[1]:.2f} ms")
        print(f"  restore lookup, {CHAIN}-window chain ({CHAIN * estate.per_window} files), one client, {args.lookups} lookups: p50 {chain[0]:.2f} ms, p99 {chain[1]:.2f} ms (goal p99 <= 20 ms)")
        print(f"  RATIO {label} restore lookup / floor: p50 {chain[0] / floor[0]:.1f}, p99 {chain[1] / floor[1]:.1f}")
        print(f"  (for scale) restore lookup of a whole chain ({estate.windows} windows, {estate.windows * estate.per_window:,} files): p50 {year[0]:.1f} ms, p99 {year[1]:.1f} ms")
        with serve_app(config, TOKEN, clock=estate.as_of) as base:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            at = (START + (CHAIN - 1) * STEP).strftime("%Y-%m-%dT%H:%M:%SZ")
            health = hammer(lambda _c, _i: f"{base}/healthz", args.clients, args.requests, headers)
            restore = hammer(lambda c, i: f"{base}/api/restore?dataset={(c * args.requests + i) % estate.datasets:024x}&at={at}", args.clients, args.requests, headers)
            assert restore.errors == 0, f"{restore.errors} lookups failed"
            h, r = (health.p50_ms, health.p99_ms), (restore.p50_ms, restore.p99_ms)
            print(f"  floor: GET /healthz, {args.clients} concurrent clients ({health.client}): p50 {h[0]:.1f} ms, p99 {h[1]:.1f} ms")
            print(
                f"  GET /api/restore ({CHAIN}-window chain), {args.clients} concurrent clients: p50 {r[0]:.1f} ms, p99 {r[1]:.1f} ms, "
                f"{restore.requests / restore.seconds:.0f} req/s, {restore.requests} requests, slowest {restore.max_ms or 0:.0f} ms (goal p99 <= 40 ms)"
            )
            print(f"  RATIO {label} API restore / healthz under {args.clients} clients: p50 {r[0] / h[0]:.1f}, p99 {r[1] / h[1]:.1f}")
        if bad:
            raise SystemExit(f"{label}: lookups read whole tables: {bad}")
    finally:
        catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=1_022_000, help="about this many files in the estate (default 1,022,000)")
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--exports", type=int, default=10, help="exports (each on its own destination) the datasets are spread over")
    parser.add_argument("--per-window", type=int, default=6, help="data files per window (plus one manifest)")
    parser.add_argument("--backend", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--postgres-admin", default=os.environ.get("AUDITOR_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--lookups", type=int, default=1000, help="single-client lookups measured (and floor queries)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=250, help="requests per client (5,000 in all: the p99 of 1,000 is autocannon's start of run, see bench/api_load.py)")
    parser.add_argument("--keep", type=Path, help="keep the catalogs: the SQLite file in this folder, the PostgreSQL database auditor_bench_kept")
    parser.add_argument("--reuse", action="store_true", help="measure the catalogs --keep left (same scale options), without building")
    parser.add_argument("--build-only", action="store_true", help="build the catalog(s) and stop: no lookups")
    parser.add_argument("--reaudit", action="store_true", help="audit each export a second time, unchanged, and report what recording it cost")
    parser.add_argument("--profile", help="cProfile the build into this file (and print the catalog's share)")
    args = parser.parse_args()
    estate = estate_of(args.files, args.datasets, args.exports, args.per_window)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; estate: {estate.files:,} files, {estate.datasets * estate.windows:,} windows")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.backend in ("both", "sqlite"):
            database = work / "catalog.db"
            if not args.reuse:
                database.unlink(missing_ok=True)
            measure("SQLite", f"sqlite:///{database}", estate, args, work, built=args.reuse)
        if args.backend in ("both", "postgresql"):
            if args.keep:
                url = args.postgres_admin.rsplit("/", 1)[0] + "/auditor_bench_kept"
                if not args.reuse:
                    with create_engine(args.postgres_admin, isolation_level="AUTOCOMMIT").connect() as conn:
                        conn.execute(text('DROP DATABASE IF EXISTS "auditor_bench_kept" WITH (FORCE)'))
                        conn.execute(text('CREATE DATABASE "auditor_bench_kept"'))
                measure("PostgreSQL", url, estate, args, work, built=args.reuse)
            else:
                with scratch_postgres(args.postgres_admin) as url:
                    measure("PostgreSQL", url, estate, args, work)


if __name__ == "__main__":
    main()
