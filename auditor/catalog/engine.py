"""Engines and schema migrations for the catalog."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from auditor.errors import CatalogError
from auditor.storage.base import scrub

MIGRATIONS = Path(str(resources.files("auditor.migrations")))  # top-level migrations/, installed as auditor.migrations
SUPPORTED = ("sqlite", "postgresql")


def make_engine(url: str) -> Engine:
    """An engine for the catalog URL; SQLite files get their folder created."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise CatalogError(f"catalog.url {scrub(url)!r} is not a SQLAlchemy URL") from e
    if parsed.get_backend_name() not in SUPPORTED:
        raise CatalogError(f"catalog.url: {parsed.get_backend_name()!r} is not supported (use sqlite or postgresql)")
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    # readers (the API, the dashboard) go on while an audit writes: write-ahead logging
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the catalog schema to `revision` (what `auditor db upgrade` runs)."""
    try:
        command.upgrade(alembic_config(engine), revision)
    except SQLAlchemyError as e:
        raise CatalogError(f"cannot upgrade the catalog: {scrub(str(e.orig if hasattr(e, 'orig') else e))[:300]}") from e


def schema_state(engine: Engine) -> tuple[str | None, str]:
    """(current revision of the database, head revision of the code)."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head() or ""
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as e:
        raise CatalogError(f"cannot reach the catalog: {scrub(str(getattr(e, 'orig', e)))[:300]}") from e
    return current, head


def ensure_schema(engine: Engine) -> None:
    """SQLite upgrades itself; a shared database must be upgraded on purpose (`auditor db upgrade`)."""
    current, head = schema_state(engine)
    if current == head:
        return
    if engine.dialect.name == "sqlite":
        upgrade(engine)
        return
    raise CatalogError(f"the catalog schema is at {current or 'nothing'}, the code needs {head}: run `auditor db upgrade`")
