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
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
