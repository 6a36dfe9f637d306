"""The service's loop, built from steps that return whether they did work (tests call the steps)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from auditor.alerts import notifier_for
from auditor.alerts.base import AlertError, deliver
from auditor.alerts.rules import conditions, recovered
from auditor.config import Settings
from auditor.errors import AuditorError
from auditor.reconcile import Status
from auditor.report import AuditReport

AuditFn = Callable[[Settings, datetime, frozenset[str]], AuditReport]


class Worker:
    """Audits each destination on its own interval, turns verdicts into alerts, delivers them."""

    def __init__(
        self,
        settings: Settings,
        catalog: Any,
        audit: AuditFn,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings, self.catalog, self.audit, self.clock, self.sleep = settings, catalog, audit, clock, sleep
        self.last_audit: dict[str, datetime] = {}
        self.latest: AuditReport | None = None
        self.last_duration = 0.0
        self._lock = threading.Lock()

    def due(self, now: datetime) -> list[str]:
        return [d.name for d in self.settings.destinations if d.name not in self.last_audit or now - self.last_audit[d.name] >= d.audit_every]

    def audit_due(self, now: datetime, *, force: bool = False) -> bool:
        """Audit the exports of every destination whose interval has passed (all with `force`)."""
        with self._lock:
            destinations = [d.name for d in self.settings.destinations] if force else self.due(now)
            exports = frozenset(e.name for e in self.settings.exports if e.destination in destinations)
            if not exports:
                return False
            started = time.monotonic()
            report = self.audit(self.settings, now, exports)
            self.last_duration = time.monotonic() - started
            for name in destinations:
                self.last_audit[name] = now
            self.latest = report
            self.queue_alerts(report, now)
            return True

    def queue_alerts(self, report: AuditReport, now: datetime) -> None:
        """New conditions alert once per channel; cleared ones send one recovery notice."""
        if not self.settings.alerts:
            return
        unknown_since: dict[tuple[str, str, datetime], datetime] = {}
        for export in report.exports:
            if any(w.status is Status.UNKNOWN for w in export.windows):
                for (dataset, scheduled), row in self.catalog.window_states(export.name).items():
                    if row["status"] == "unknown" and row["status_since"] is not None:
                        since = row["status_since"]
                        unknown_since[(export.name, dataset, scheduled)] = since.replace(tzinfo=UTC) if since.tzinfo is None else since
        found = conditions(report, self.settings.alerts, unknown_since=unknown_since)
        ever, open_keys = self.catalog.alert_keys()
        rules = {r.name: r for r in self.settings.alerts}
        notices = [
            _notice(c.key, c.rule, c.export, c.dataset_id, c.scheduled, channel, "alert", c.message, dict(c.payload), now)
            for c in found
            if c.key not in ever
            for channel in rules[c.rule].channels
        ]
        audited = {e.name for e in report.exports}
        current = {c.key for c in found}
        for key in sorted(open_keys - current):
            rule, export, dataset, scheduled = key.split("|")
            if export not in audited or rule not in rules:
                continue
            message = recovered(report, key)
            if message is None:
                continue
            self.catalog.resolve(key, now)
            when = datetime.fromisoformat(scheduled) if scheduled != "-" else None
            payload = {"title": f"export-auditor: {rule} recovered", "rule": rule, "export": export, "dataset_id": dataset, "scheduled": None if scheduled == "-" else scheduled}
            notices += [_notice(key, rule, export, dataset, when, channel, "recovery", message, payload, now) for channel in rules[rule].channels]
        if notices:
            self.catalog.add_notices(notices)

    def deliver_pending(self, now: datetime) -> bool:
        """Send every pending notice; record the outcome of each (never raises)."""
        pending = self.catalog.pending_notices()
        channels = {c.name: c for c in self.settings.channels}
        for notice in pending:
            channel = channels.get(notice["channel"])
            if channel is None:
                self.catalog.record_delivery(notice["id"], attempts=0, error="the channel is no longer configured", permanent=True, when=now)
                continue
            try:
                notifier = notifier_for(channel.kind, url=channel.url, secret=channel.secret) if channel.kind == "webhook" else notifier_for(channel.kind, url=channel.url)
                attempts, error = deliver(notifier, notice["message"], notice["payload"], retries=channel.retries, sleep=self.sleep)
            except AlertError as e:
                attempts, error = 1, e
            self.catalog.record_delivery(notice["id"], attempts=attempts, error=str(error) if error else None, permanent=bool(error and error.permanent), when=now)
        return bool(pending)

    def run_once(self) -> bool:
        now = self.clock()
        try:
            audited = self.audit_due(now)
        except AuditorError:
            audited = False
        delivered = self.deliver_pending(now)
        return audited or delivered

    def run_forever(self, stop: threading.Event, *, pause: float = 1.0) -> None:
        while not stop.is_set():
            self.run_once()
            stop.wait(pause)


def _notice(key: str, rule: str, export: str, dataset: str, scheduled: datetime | None, channel: str, kind: str, message: str, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "key": key, "rule": rule, "export": export, "dataset_id": dataset, "scheduled": scheduled, "channel": channel, "kind": kind,
        "message": message, "payload": payload, "created_at": now, "resolved_at": None, "state": "pending", "attempts": 0, "last_error": None, "delivered_at": None,
    }
