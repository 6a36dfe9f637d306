"""The composition root: turns Settings into adapters once per process and owns their close().

The CLI, `auditor serve`, the demo, benchmarks and tests build a Runtime and go through it: one
catalog engine per process (disposed on close), one pool of validation workers, one Flow Service
client. `audit()` is the whole use case: runs from the Flow Service (or the catalog's when it is
down), the audit itself under each destination's lock, the record in the catalog, and alerts for
the exports where the audit was live.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from auditor.audit import CLOCK_TOLERANCE, AuditOptions, Checker, InProcessChecker, Progress, run_audit
from auditor.config import Settings
from auditor.errors import CatalogError, CatalogUnreachable, FlowsError, StorageError
from auditor.report import AuditError, AuditReport
from auditor.storage import Store, open_store, scrub

if TYPE_CHECKING:
    from auditor.catalog.repository import Catalog
    from auditor.flows.client import FlowsClient
    from auditor.flows.models import Flow, Run

log = logging.getLogger("auditor")

_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = True


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while an audit runs (threads share one count).

    An audit holds millions of long-lived objects (catalog rows, the listing) and makes almost no
    reference cycles, so every full collection rescans them all for nothing: on a 204,400-file
    estate the collector cost 8 of 27 CPU seconds of a re-audit and freed 10 objects. Memory is
    still returned by reference counting; one collection runs when the last audit ends.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        _gc_pauses += 1
        if _gc_pauses == 1:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()
                gc.collect(1)


class Unavailable:
    """A destination whose store could not even be built: every call reports why."""

    bytes_read = 0

    def __init__(self, url: str, error: StorageError) -> None:
        self.url, self._error = url, error

    def count(self, size: int) -> None:
        pass

    def list(self, prefix: str = "", *, intern: Any = None) -> list[Any]:
        raise self._error

    def list_prefixes(self, prefixes: Any) -> Any:
        raise self._error

    def read_range(self, key: str, start: int, end: int) -> bytes:
        raise self._error

    def open(self, key: str) -> Any:
        raise self._error


class Runtime:
    """Everything one auditor process needs, built lazily from Settings, closed once."""

    def __init__(self, settings: Settings, *, checker: Checker | None = None, cluster: str | None = None) -> None:
        self.settings = settings
        self.cluster = cluster or settings.validation.cluster  # a Dask scheduler for deep checks (`--cluster` wins)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # who claims notices and locks
        self._catalog: Catalog | None = None
        self._catalog_problem: str | None = None
        self._catalog_unreachable = False  # the last try failed to connect (not a schema to upgrade, nor someone else's file)
        self._checker = checker
        self._checker_stack = ExitStack()
        self._client: FlowsClient | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- adapters ---------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        """The catalog; raises CatalogError when it cannot be reached (tried again on the next call)."""
        catalog = self.catalog_or_none()
        if catalog is None:
            raise (CatalogUnreachable if self._catalog_unreachable else CatalogError)(self._catalog_problem or "the catalog is not available")
        return catalog

    def catalog_or_none(self) -> Catalog | None:
        with self._lock:
            if self._catalog is None:
                from auditor.catalog.engine import ensure_schema, make_engine
                from auditor.catalog.repository import Catalog

                engine = make_engine(self.settings.catalog.url)
                try:
                    ensure_schema(engine)
                except CatalogError as e:
                    engine.dispose()
                    self._catalog_problem, self._catalog_unreachable = str(e), isinstance(e, CatalogUnreachable)
                    return None
                self._catalog, self._catalog_problem = Catalog(engine, lock_lease=self.settings.catalog.lock_lease), None
            return self._catalog

    @property
    def catalog_problem(self) -> str | None:
        return self._catalog_problem

    def checker(self) -> Checker:
        """Isolated validation workers unless `validation.isolate` is off (started once); with a
        cluster address, deep checks go to that Dask cluster (isolated on its workers in any case)."""
        with self._lock:
            if self._checker is None:
                from auditor.validate.sandbox import Limits, Sandbox

                v = self.settings.validation
                limits = Limits(memory_bytes=v.memory_mb << 20, timeout_seconds=v.timeout_seconds, min_throughput=v.min_throughput_mb * (1 << 20))
                local: Checker = self._checker_stack.enter_context(Sandbox(workers=v.workers or None, limits=limits)) if v.isolate else InProcessChecker()
                if self.cluster:
                    from auditor.cluster import ClusterChecker

                    local = self._checker_stack.enter_context(ClusterChecker(self.cluster, local=local, limits=limits))
                self._checker = local
            return self._checker

    def flows_client(self) -> FlowsClient:
        """The Flow Service client (one per process); raises FlowsError without a [flow_service] section."""
        with self._lock:
            if self._client is None:
                from auditor.flows.client import FlowsClient

                service = self.settings.flow_service
                if service is None:
                    raise FlowsError("no [flow_service] section in the configuration")
                self._client = FlowsClient(
                    service.base_url, ims_url=service.ims_url, client_id=service.client_id, client_secret=service.client_secret, org_id=service.org_id,
                    sandbox=service.sandbox, scopes=service.scopes, retries=service.retries,
                )
            return self._client

    def stores(self) -> dict[str, Store]:
        """A store per destination (built per audit: a Data Landing Zone SAS is fetched fresh each time)."""
        stores: dict[str, Store] = {}
        for destination in self.settings.destinations:
            try:
                stores[destination.name] = open_store(destination.url, self._with_dlz_credentials(destination.options))
            except StorageError as e:
                stores[destination.name] = Unavailable(e.url, e)
        return stores

    def store(self, destination: str) -> Store:
        return self.stores()[destination]

    def _with_dlz_credentials(self, options: dict[str, Any]) -> dict[str, Any]:
        if not options.get("dlz_credentials"):
            return options
        rest = {k: v for k, v in options.items() if k != "dlz_credentials"}
        if self.settings.flow_service is None:
            raise StorageError("options.dlz_credentials needs a [flow_service] section")
        try:
            credentials = self.flows_client().dlz_credentials(self.settings.flow_service.landing_zone_url)
        except FlowsError as e:
            raise StorageError(f"cannot fetch the Data Landing Zone credentials: {e}") from e
        if not credentials.get("SASUri"):
            raise StorageError("the Data Landing Zone credentials have no SASUri")
        return {**rest, "sas_url": credentials["SASUri"]}

    def fingerprint(self) -> str:
        """A digest of the configuration as loaded, with every value that came from a reference hidden."""
        from auditor.evidence import fingerprint

        secrets = [t.token for t in self.settings.service.tokens] + [c.secret or "" for c in self.settings.channels] + [c.url for c in self.settings.channels]
        secrets.append(self.settings.catalog.url)  # may carry a password
        if self.settings.flow_service is not None:
            secrets.append(self.settings.flow_service.client_secret)
        for destination in self.settings.destinations:
            secrets += [str(v) for k, v in destination.options.items() if k not in {"endpoint_url", "account_name", "project", "retries", "timeout"}]
        return fingerprint(self.settings.model_dump(mode="json"), secrets)

    # -- the use case --------------------------------------------------------------

    def fetch_runs(self, exports: frozenset[str] | None = None) -> tuple[dict[str, list[Run]] | None, dict[str, Flow] | None, list[AuditError]]:
        """Runs and flows of every export in scope that names its flow; the catalog's runs when the API is down."""
        flow_ids = sorted({e.flow_id for e in self.settings.exports if e.flow_id and (exports is None or e.name in exports)})
        if self.settings.flow_service is None or not flow_ids:
            return None, None, []
        runs: dict[str, list[Run]] = {}
        flows: dict[str, Flow] = {}
        problems: list[AuditError] = []
        unread: list[str] = []  # flows whose runs come from the catalog
        for index, flow_id in enumerate(flow_ids):
            try:
                client = self.flows_client()
                flow = client.flow(flow_id)
                runs[flow_id] = client.runs(flow_id)
                flows[flow_id] = flow
            except FlowsError as e:
                names = ", ".join(sorted(x.name for x in self.settings.exports if x.flow_id == flow_id))
                if e.status_code == 404:  # this one flow is gone (deleted in AEP): the others are read as usual
                    unread.append(flow_id)
                    problems.append(AuditError("flow service", f"dataflow {flow_id} (export {names}) cannot be read ({e}): deleted in AEP? Its windows are "
                                                               "judged with the runs the catalog recorded before; `auditor flows sync` updates the exports"))
                    continue
                unread += flow_ids[index:]  # the service itself failed: the flows not read yet are not tried, one by one, through its retries
                problems.append(AuditError("flow service", f"runs could not be read now, so windows are judged with the runs the catalog recorded before: {e}"))
                break
            except Exception as e:  # an answer of a shape no one foresaw: its runs are unread, the audit goes on
                log.exception("the Flow Service's answer for dataflow %s could not be understood", flow_id)
                unread += flow_ids[index:]
                problems.append(AuditError("flow service", "runs could not be read now (an answer could not be understood: "
                                                           f"{type(e).__name__}: {scrub(str(e))[:200]}), so windows are judged with the runs the catalog recorded before"))
                break
        if unread:
            catalog = self.catalog_or_none()
            kept: dict[str, list[Run]] = {}
            if catalog is not None:
                try:
                    kept = dict(catalog.runs_of(unread))
                except CatalogError:
                    kept = {}
            runs.update(kept)
            if not runs:
                return None, flows or None, problems
        return runs, flows, problems

    def audit(
        self, *, now: datetime, options: AuditOptions | None = None, progress: Progress | None = None, wait: bool = True, unless_live_since: datetime | None = None,
        recorded: bool = False, queued_at: datetime | None = None,
    ) -> AuditReport | None:
        """Audit the exports in scope as of `now`, record it, raise alerts where it was live.

        Each destination is audited by one process at a time: with `wait` off, returns None when
        another process holds any destination in scope. With `unless_live_since`, returns None when,
        once the locks are held, every export in scope has a live audit newer than that (another
        process audited it meanwhile). With `recorded`, raises CatalogError rather than audit while
        the catalog cannot be reached (an audit it cannot record raises no alert: serve's loop waits). The notices
        of its alerts are queued at `queued_at` (the clock they are delivered by), else `now`.
        """
        options = replace(options or AuditOptions(), workers=self.settings.validation.threads)
        scope = frozenset(e.name for e in self.settings.exports if options.only_exports is None or e.name in options.only_exports)
        catalog = self.catalog_or_none()
        if catalog is None and recorded:
            raise CatalogError(f"{self._catalog_problem or 'the catalog could not be reached'}: the audit waits for it")
        with ExitStack() as held:
            held.enter_context(cyclic_gc_paused())
            if catalog is not None:
                destinations = sorted({e.destination for e in self.settings.exports if e.name in scope})
                try:
                    got = held.enter_context(catalog.destination_locks(destinations, wait=wait))
                except CatalogError as e:
                    if recorded:
                        raise CatalogError(f"{e}: the audit waits for the catalog") from e
                    got, catalog = True, None  # the catalog is away: nothing will be recorded, so nothing to serialise
                    self._catalog_problem = "the catalog could not be reached"
                if not got:
                    return None
                if unless_live_since is not None and catalog is not None:
                    latest = catalog.live_as_of()
                    ahead = now + CLOCK_TOLERANCE  # a present from ahead of this clock is no reason to wait: this audit replaces it
                    if all(unless_live_since < (latest.get(name) or unless_live_since) <= ahead for name in scope):
                        return None
            runs, flows, problems = self.fetch_runs(scope)
            report = run_audit(
                self.settings, stores=self.stores(), catalog=catalog, now=now, started=datetime.now(UTC), options=replace(options, only_exports=scope),
                progress=progress, checker=self.checker(), runs=runs, flows=flows, fingerprint=self.fingerprint(), problems=problems,
            )
            problems = []  # recorded with the report
            if catalog is not None and report.live and self.settings.alerts:  # still under the lock: no stale audit raises alerts
                try:
                    from auditor.alerting import raise_alerts

                    raise_alerts(self.settings, catalog, report, live=report.live_datasets, now=now, audit_id=report.audit_id, queued_at=queued_at)
                except CatalogError as e:
                    problems.append(AuditError("catalog", f"alerts could not be raised: {e}"))
        if catalog is None:
            problems.append(AuditError("catalog", f"{self._catalog_problem}; nothing was recorded"))
        return replace(report, errors=(*report.errors, *problems)) if problems else report

    def deliver(self, now: datetime, *, wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
        """Send the notices that are due (claimed, so no other process sends them too)."""
        from auditor.alerting import deliver_due

        if not self.settings.channels:
            return 0
        return deliver_due(self.settings, self.catalog, now, holder=self.holder, wall_clock=wall_clock)

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._client is not None:
                self._client.close()
            self._checker_stack.close()
            if self._catalog is not None:
                self._catalog.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
