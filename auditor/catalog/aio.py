"""Catalog reads on the service's event loop, for a PostgreSQL catalog.

A restore lookup is four short reads. Run in the API's thread pool, twenty concurrent lookups are
twenty threads taking turns at the interpreter lock with the event loop. Here the same synchronous
read code runs on a connection of SQLAlchemy's asyncio engine through `AsyncConnection.run_sync`:
each read waits for PostgreSQL on the event loop (a greenlet switch), no thread is involved and
other requests go on meanwhile. Measured under 20 clients on a million-file catalog, one server
process, the start-up heap frozen in both (bench/catalog_bench.py and the same load by hand):
716-722 against 419 lookups a second, p99 26-37 against 83 ms, 1.07-1.16 against 2.25 ms of
server CPU a lookup. A plan of a very long chain is built on the loop too (a 1,500-window, 20-file
one took 236 ms against 180 ms in a thread, and requests behind it waited).

SQLite is not served this way: its reads are local and the route already runs them inline.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from auditor.catalog.engine import LOOP_POOL
from auditor.catalog.repository import Catalog, _reason
from auditor.errors import CatalogUnreachable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")


class LoopReads:
    """Reads of one catalog on the event loop the service serves from (an asyncio engine's connections belong to the
    loop that opened them); `available` says whether this catalog can have them (PostgreSQL through psycopg, with
    greenlet installed)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._engine: AsyncEngine | None = None
        self.available = _supported(catalog)

    async def run(self, read: Callable[[Catalog], T]) -> T:
        """`read` on one pooled connection (autocommit: reads only, no BEGIN or ROLLBACK travels)."""
        try:
            if self._engine is None:
                from sqlalchemy.ext.asyncio import create_async_engine

                self._engine = create_async_engine(self._catalog.engine.url, pool_pre_ping=True, pool_size=LOOP_POOL, max_overflow=0)
            async with self._engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await conn.run_sync(lambda sync: read(self._catalog.on(sync)))
        except SQLAlchemyError as e:  # the connection could not be made, or given back
            raise CatalogUnreachable(f"cannot reach the catalog: {_reason(e)}") from e

    async def close(self) -> None:
        """Close the pooled connections (the service's shutdown, on the loop that opened them)."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


def _supported(catalog: Catalog) -> bool:
    dialect = catalog.engine.dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg" and importlib.util.find_spec("greenlet") is not None  # SQLAlchemy's asyncio bridge
