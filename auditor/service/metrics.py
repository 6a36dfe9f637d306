"""Prometheus metrics, rendered from the catalog (so every auditor process reports the same)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _CatalogCollector(Collector):
    def __init__(self, catalog: Any, worker: Any, now: datetime) -> None:
        self.catalog, self.worker, self.now = catalog, worker, now

    def collect(self) -> Any:
        windows = GaugeMetricFamily("auditor_windows", "Export windows by their latest status", labels=["export", "dataset", "status"])
        rpo = GaugeMetricFamily("auditor_rpo_seconds", "Seconds since the last restorable point", labels=["export", "dataset"])
        for row in self.catalog.export_rows():
            for status, count in row["windows"].items():
                windows.add_metric([row["name"], row["dataset_id"], status], count)
            if row["restorable_until"]:
                until = datetime.fromisoformat(row["restorable_until"])
                rpo.add_metric([row["name"], row["dataset_id"]], (self.now - until).total_seconds())
        yield windows
        yield rpo
        audits = self.catalog.audits(1)
        last = GaugeMetricFamily("auditor_last_audit_timestamp_seconds", "When the last audit finished (Unix time)")
        duration = GaugeMetricFamily("auditor_last_audit_duration_seconds", "How long the last audit took")
        if audits and audits[0]["finished_at"]:
            finished = datetime.fromisoformat(audits[0]["finished_at"])
            started = datetime.fromisoformat(audits[0]["started_at"])
            last.add_metric([], finished.timestamp())
            duration.add_metric([], max(0.0, (finished - started).total_seconds()))
        yield last
        yield duration
        deep = GaugeMetricFamily("auditor_deep_verified_ratio", "Share of data files whose every byte has been verified")
        files, verified = self.catalog.deep_coverage()
        deep.add_metric([], verified / files if files else 0.0)
        yield deep


def render_metrics(catalog: Any, worker: Any, *, now: datetime) -> str:
    registry = CollectorRegistry()
    registry.register(_CatalogCollector(catalog, worker, now))
    return generate_latest(registry).decode()
