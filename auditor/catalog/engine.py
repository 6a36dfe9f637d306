"""Engines and schema migrations for the catalog.

Alembic is imported only to migrate: a catalog already at `HEAD` is recognised by reading its
`alembic_version` row (importing Alembic costs a CLI run about 0.3 s of its start-up).
"""

from __future__ import annotations

import fcntl
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from auditor.errors import CatalogError, CatalogUnreachable
from auditor.storage.base import remember_secret, scrub

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(str(resources.files("auditor.migrations")))  # top-level migrations/, installed as auditor.migrations
SUPPORTED = ("sqlite", "postgresql")
POOL_THREADS = 40  # anyio's default thread limiter: how many requests can be in a thread at once
# A process's PostgreSQL connections, 40 at most (two replicas fit PostgreSQL's default max_connections of 100,
# with room for the CLI): the threads' pool keeps PG_POOL and opens PG_OVERFLOW more in a burst (closed when given
# back); the API's restore lookups read on the event loop through a pool of LOOP_POOL kept connections and no more
# (auditor.catalog.aio): each new connection is a backend forked by the server, and a pool smaller than the lookups'
# concurrency closed its overflow after every burst and opened it again (under 20 clients that churn set their p99).
# Readers beyond a pool's limit wait for a connection (30 s), never open one past the budget.
PG_POOL = 10
PG_OVERFLOW = 10
LOOP_POOL = 20
HEAD = "0015"  # the newest migration in MIGRATIONS (a test holds the two together)
WAL_ATTEMPTS = 200  # tries (50 ms apart) to switch a SQLite catalog to write-ahead logging


DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}  # what `pip install 'export-auditor[postgres]'` brings


def make_engine(url: str) -> Engine:
    """An engine for the catalog URL; SQLite files get their folder created.

    Raises CatalogError (never ImportError) for a URL that is not SQLAlchemy's, a database other
    than SQLite or PostgreSQL, or a driver that is not installed; the URL's password is never shown.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise CatalogError("catalog.url is not a SQLAlchemy URL (sqlite:///path/auditor.db or postgresql+psycopg://user:password@host/db)") from e
    if parsed.password:
        remember_secret(str(parsed.password))  # out of every message scrubbed, however a driver words its error
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise CatalogError(f"catalog.url: {backend!r} is not supported (use sqlite or postgresql)")
    try:
        if backend == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # a pooled connection per request thread (the API's thread pool holds 40): beyond the pool, each request
            # would open a connection and set its pragmas, then close it again
            engine = create_engine(parsed, connect_args={"timeout": 30}, pool_size=POOL_THREADS, max_overflow=8)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(parsed, pool_pre_ping=True, pool_size=PG_POOL, max_overflow=PG_OVERFLOW)
    except (ImportError, NoSuchModuleError) as e:
        raise CatalogError(_driver_problem(backend, _driver_name(parsed, backend), e)) from None
    except OSError as e:
        raise CatalogError(f"catalog.url: the SQLite file's folder cannot be created: {e.strerror}") from None


def _driver_name(parsed: URL, backend: str) -> str:
    try:
        return str(parsed.get_driver_name())
    except Exception:  # noqa: BLE001 - an unknown driver cannot even name itself
        return parsed.drivername.partition("+")[2] or DRIVERS[backend]


def _driver_problem(backend: str, driver: str, error: BaseException) -> str:
    module = getattr(error, "name", None) or driver
    if backend == "postgresql" and driver == "psycopg":
        return f"catalog.url: PostgreSQL needs the psycopg driver ({module} is not installed): pip install 'export-auditor[postgres]'"
    if backend == "postgresql":
        return (
            f"catalog.url: the PostgreSQL driver {driver!r} is not available ({module} is not installed); "
            "use postgresql+psycopg://… and pip install 'export-auditor[postgres]'"
        )
    return f"catalog.url: the SQLite driver {driver!r} is not available ({module} is not installed); use sqlite:///path/auditor.db"


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _reason(error: Exception) -> str:
    """A database error as the catalog's messages quote it: the driver's own words, no secret, 300 characters at most."""
    return scrub(str(getattr(error, "orig", None) or error))[:300]


def _write_ahead_logging(engine: Engine) -> None:
    """Readers (the API, the dashboard) go on while an audit writes: a SQLite catalog, once known to be one, is
    switched to write-ahead logging (kept in the file). Switching answers "database is locked" at once, without
    the busy timeout, while another process switches it too (replicas starting together): that is waited out."""
    for attempt in range(WAL_ATTEMPTS):
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            return
        except SQLAlchemyError as e:
            if "locked" not in str(e) or attempt == WAL_ATTEMPTS - 1:
                raise CatalogUnreachable(f"cannot reach the catalog: {_reason(e)}") from e
            time.sleep(0.05)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the catalog schema to `revision` (what `auditor db upgrade` runs), all of it or none: on SQLite the driver
    commits each schema change as it runs, so an upgrade cut short (the process killed) left columns added and the
    version where it was, and every start after failed on the next ALTER; the upgrade is one SQLite transaction now."""
    from alembic import command

    migrating = _transactional(engine) if engine.dialect.name == "sqlite" else engine
    try:
        command.upgrade(alembic_config(migrating), revision)
    except SQLAlchemyError as e:
        raise CatalogError(f"cannot upgrade the catalog: {_reason(e)}") from e
    finally:
        if migrating is not engine:
            migrating.dispose()


def _transactional(engine: Engine) -> Engine:
    """An engine on the same SQLite file whose transactions are SQLite's own, schema changes included (SQLAlchemy's
    recipe for pysqlite): the driver's own transaction handling off, BEGIN sent with each transaction; foreign keys
    off for the connection before any (batch migrations copy and drop tables that others refer to)."""
    migrating = create_engine(engine.url, connect_args={"timeout": 30}, poolclass=NullPool)

    @event.listens_for(migrating, "connect")
    def connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None
        dbapi.execute("PRAGMA foreign_keys=OFF")

    @event.listens_for(migrating, "begin")
    def begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return migrating


def schema_state(engine: Engine) -> tuple[str | None, str]:
    """(current revision of the database, head revision of the code)."""
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None, HEAD
            versions = [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]
    except SQLAlchemyError as e:
        raise CatalogUnreachable(f"cannot reach the catalog: {_reason(e)}") from e
    if len(versions) > 1:
        raise CatalogError(f"the catalog's schema has several heads ({', '.join(sorted(versions))}): it was not migrated by this auditor")
    return (versions[0] if versions else None), HEAD


@contextmanager
def _upgrade_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on a file beside a SQLite catalog while its schema is upgraded."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    path = Path(database).expanduser()
    with open(path.with_name(f".{path.name}.upgrade.lock"), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_schema(engine: Engine) -> None:
    """SQLite upgrades itself; a shared database must be upgraded on purpose (`auditor db upgrade`)."""
    current, head = schema_state(engine)
    sqlite = engine.dialect.name == "sqlite"
    if current == head:
        if sqlite:
            _write_ahead_logging(engine)
        return
    if sqlite:
        if current is None:
            _refuse_foreign(engine)  # before the lock file is made beside it
        with _upgrade_lock(engine):  # two processes opening one old catalog: one upgrades, the other finds it done
            current = schema_state(engine)[0]
            if current is None:
                _refuse_foreign(engine)
                _create(engine)
            elif current != head:
                upgrade(engine)
        _write_ahead_logging(engine)
        return
    raise CatalogError(f"the catalog schema is at {current or 'nothing'}, the code needs {head}: run `auditor db upgrade`")


def _refuse_foreign(engine: Engine) -> None:
    """A SQLite file with tables but no catalog version is never altered: someone else's database, or a
    creation cut short by an older release (which made its tables one by one). Read after the tables: another
    process may have created the catalog since this one found no version, and a creation commits its tables and
    its version together, so tables seen here mean the version is there to be seen now."""
    foreign = _tables(engine) - {"alembic_version"}
    if foreign and schema_state(engine)[0] is None:
        raise CatalogError(
            f"the SQLite file at catalog.url holds tables ({', '.join(sorted(foreign)[:5])}) but no auditor catalog version: it is someone "
            "else's database, or a catalog whose creation was cut short; move it aside or name a new file"
        )


def _tables(engine: Engine) -> set[str]:
    """The tables the database holds."""
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    except SQLAlchemyError as e:
        raise CatalogUnreachable(f"cannot reach the catalog: {_reason(e)}") from e


def _create(engine: Engine) -> None:
    """A new catalog: the schema the migrations build, created from the table definitions at once and
    stamped with HEAD (what `alembic stamp` writes), instead of running every migration in turn (half a
    second of a first audit). A test holds the two schemas equal, indexes and their conditions included.

    One transaction, begun here: the driver would run each CREATE on its own, and a creation cut short
    would leave tables without a version (which the next start refuses to touch)."""
    from sqlalchemy.schema import CreateIndex, CreateTable

    from auditor.catalog.tables import metadata

    statements = []
    for table in metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=engine.dialect)))
        statements += [str(CreateIndex(index).compile(dialect=engine.dialect)) for index in sorted(table.indexes, key=lambda i: str(i.name))]
    statements.append("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        level = driver.isolation_level
        driver.isolation_level = None  # the driver's own transaction handling off: BEGIN and COMMIT are these
        try:
            driver.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    driver.execute(statement)
                driver.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD,))
                driver.execute("COMMIT")
            except BaseException:
                driver.execute("ROLLBACK")
                raise
        finally:
            driver.isolation_level = level
    except sqlite3.Error as e:
        raise CatalogError(f"cannot create the catalog: {_reason(e)}") from e
    finally:
        raw.close()
