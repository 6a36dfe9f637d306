"""Alembic environment: the engine comes from the caller (auditor.catalog.engine), the models from tables."""

from __future__ import annotations

from alembic import context

from auditor.catalog.tables import metadata

target_metadata = metadata


def run_migrations() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        from auditor.catalog.engine import make_engine

        url = context.config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no engine and no sqlalchemy.url: run migrations through `auditor db upgrade`")
        engine = make_engine(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # batch migrations copy and drop tables that others refer to: no checks while they do
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


run_migrations()
