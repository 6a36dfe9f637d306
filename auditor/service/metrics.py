"""Prometheus metrics, rendered from the catalog (so every auditor process reports the same), plus
this process's worker counters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from auditor.catalog.repository import Catalog
    from auditor.service.worker import Worker


class _CatalogCollector(Collector):
    def __init__(self, catalog: Catalog, worker: Worker | None, now: datetime) -> None:
        self.catalog, self.worker, self.now = catalog, worker, now

    def collect(self) -> Iterator[Metric]:
        windows = GaugeMetricFamily("auditor_windows", "Export windows by their latest status", labels=["export", "dataset", "status"])
        rpo = GaugeMetricFamily("auditor_rpo_seconds", "Seconds since the last restorable point", labels=["export", "dataset"])
        for state in self.catalog.datasets():
            for status, count in state.windows.items():
                windows.add_metric([state.export, state.dataset_id, status], count)
            seconds = state.rpo_seconds(self.now)
            if seconds is not None:
                rpo.add_metric([state.export, state.dataset_id], seconds)
        yield windows
        yield rpo
        audits = self.catalog.audits(1)
        last = GaugeMetricFamily("auditor_last_audit_timestamp_seconds", "When the last audit finished (Unix time)")
        duration = GaugeMetricFamily("auditor_last_audit_duration_seconds", "How long the last audit took")
        if audits and audits[0].finished_at:
            last.add_metric([], audits[0].finished_at.timestamp())
            duration.add_metric([], max(0.0, (audits[0].finished_at - audits[0].started_at).total_seconds()))
        yield last
        yield duration
        sweep = GaugeMetricFamily("auditor_last_full_sweep_as_of_seconds", "As-of time of each destination's last full listing (Unix time)", labels=["destination"])
        for destination in self.catalog.destinations():
            if destination.last_full_sweep is not None:
                sweep.add_metric([destination.name], destination.last_full_sweep.timestamp())
        yield sweep
        deep = GaugeMetricFamily("auditor_deep_verified_ratio", "Share of data files whose every byte has been verified")
        files, verified = self.catalog.deep_coverage()
        deep.add_metric([], verified / files if files else 0.0)
        yield deep
        failed = GaugeMetricFamily("auditor_notices_failed", "Alert notices given up (undelivered)")
        failed.add_metric([], len(self.catalog.notices(1000, state="failed")))
        yield failed
        if self.worker is not None:
            errors = CounterMetricFamily("auditor_worker_errors", "Errors in the service loop's steps since this process started", labels=["step"])
            for step in ("audit", "deliver"):
                errors.add_metric([step], self.worker.errors.get(step, 0))
            yield errors
            loop = GaugeMetricFamily("auditor_worker_last_loop_timestamp_seconds", "When this process's service loop last completed a turn")
            if self.worker.last_loop is not None:
                loop.add_metric([], self.worker.last_loop.timestamp())
            yield loop


def render_metrics(catalog: Catalog, worker: Worker | None, *, now: datetime) -> str:
    registry = CollectorRegistry()
    registry.register(_CatalogCollector(catalog, worker, now))
    return generate_latest(registry).decode()
