"""Shared fixtures: a fixed NOW, export-tree builders, config files and catalog databases."""

from __future__ import annotations

import hashlib
import http.cookiejar
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

# before gcsfs is imported anywhere: its default extended filesystem tries gRPC against the emulator
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from auditor.exporter import sample_records, write_export

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
# One client for the tests' own requests to local servers: httpx.get() and its kin build a client per call and load
# the CA bundle each time (~60 ms of CPU). It keeps no cookies: each request carries exactly what it is given.
HTTP = httpx.Client(cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])))
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def _forget_remembered_secrets() -> Iterator[None]:
    """Each test starts with the credentials it gives the auditor only: the process-wide registry `scrub` replaces
    (auditor.storage.base.remember_secret) would otherwise carry one test's passwords ("testing", a user name) into
    another's messages."""
    from auditor.storage import base

    kept = base._known
    yield
    base._known = kept


def t(text: str) -> datetime:
    """'2026-11-27T03:00' -> tz-aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def missing_server(reason: str) -> None:
    """Skip locally, fail in CI: CI must have every server."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


class Tree:
    """An export tree in a local folder, written the way AEP writes it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    def export(self, dataset: str, when: datetime, *, landed: datetime | None = None, count: int = 30, **kwargs: Any) -> list[Path]:
        written = write_export(self.url, dataset, when, sample_records(dataset, when, count), **kwargs)
        paths = [self.root / w.key for w in written]
        stamp = landed or when + timedelta(minutes=10)
        for path in paths:
            touch(path, stamp)
        return paths

    def put(self, key: str, data: bytes, when: datetime) -> Path:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        touch(path, when)
        return path

    def rewrite(self, path: Path, data: bytes) -> None:
        """Change a file's bytes but keep its modification time (as a silent corruption would)."""
        stat = path.stat()
        path.write_bytes(data)
        os.utime(path, (stat.st_atime, stat.st_mtime))

    def digest(self) -> dict[str, str]:
        return {str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(self.root.rglob("*")) if p.is_file()}


def touch(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    root = tmp_path / "exports"
    root.mkdir()
    return Tree(root)


def _postgres_admin_url() -> str:
    return os.environ.get("AUDITOR_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the PostgreSQL server on 127.0.0.1:5432."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    url = _postgres_admin_url()
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except (SQLAlchemyError, ImportError) as e:
        missing_server(f"PostgreSQL is not reachable at {url}: {e}")
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server for one test; dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"auditor_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each catalog test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("postgres_url"))


CATALOG_BENCH = Path(__file__).resolve().parents[1] / "bench" / "catalog_bench.py"


@pytest.fixture(scope="module")
def catalog_bench() -> Any:
    """bench/catalog_bench.py as a module (bench/ is not a package), for tests that build its estates."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("catalog_bench", CATALOG_BENCH)
    assert spec is not None and spec.loader is not None
    module = sys.modules["catalog_bench"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def built_estate(bench: Any, estate: Any, catalog_url: str, tmp_path: Path) -> tuple[Any, Any, Path]:
    """(settings, catalog, config path): one of catalog_bench's estates written to a config, upgraded, audited through
    Runtime.audit into the catalog; the caller closes the catalog."""
    from auditor.catalog.engine import make_engine, upgrade
    from auditor.catalog.repository import Catalog
    from auditor.config import load_settings

    config = tmp_path / "estate.toml"
    bench.write_config(config, estate, catalog_url)
    engine = make_engine(catalog_url)
    upgrade(engine)
    engine.dispose()  # its connection closed now, not whenever the collector finds the engine
    settings = load_settings(config, dict(os.environ))
    bench.build(settings, estate, say=lambda _line: None)
    return settings, Catalog(make_engine(catalog_url)), config


@contextmanager
def small_estate(bench: Any, catalog_url: str, tmp_path: Path) -> Iterator[tuple[Any, Any, Any, Path]]:
    """(settings, catalog, estate, config path): 2 datasets × 12 windows × 2 files of catalog_bench's audited into
    the catalog (built_estate); the catalog is closed afterwards."""
    estate = bench.Estate(datasets=2, exports=2, windows=12, per_window=2)
    settings, catalog, config = built_estate(bench, estate, catalog_url, tmp_path)
    try:
        yield settings, catalog, estate, config
    finally:
        catalog.close()


def write_config(path: Path, catalog: str, *, destinations: list[dict[str, Any]], exports: list[dict[str, Any]], isolate: bool = False) -> Any:
    """A config file written from plain values (TOML by tomli_w, not by hand) and loaded as the CLI loads it."""
    import tomli_w

    from auditor.config import load_settings

    document = {"catalog": {"url": catalog}, "validation": {"isolate": isolate}, "destinations": destinations, "exports": exports}
    path.write_text(tomli_w.dumps(document))
    return load_settings(path, {})


def audit_once(settings: Any, *, now: datetime, options: Any = None) -> Any:
    """One audit through the composition root, as the CLI runs it (adapters closed afterwards)."""
    from auditor.runtime import Runtime

    with Runtime(settings) as runtime:
        report = runtime.audit(now=now, options=options)
    assert report is not None
    return report
