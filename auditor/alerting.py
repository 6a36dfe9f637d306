"""Alerts as episodes, and their delivery: claimed, backed off, bounded by age.

`raise_alerts` turns a live audit's report into episode changes: a condition that starts holding
opens an episode (one alert per channel), one that stops closes it (one recovery per channel), and
the same condition later opens a new episode. The catalog guarantees one open episode per
condition and one notice per episode, channel and kind, whatever the number of processes.

`deliver_due` claims due notices (a lease, so two processes never send the same one), sends each
once, and records the outcome: delivered, retried later with exponential backoff, or given up when
the notice is older than the channel's `give_up_after` (or the channel refuses it for good).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from auditor.alerts import notifier_for
from auditor.alerts.base import AlertError, Notifier
from auditor.alerts.rules import conditions, recovered
from auditor.config import ChannelSettings, Settings
from auditor.ledger import Episode, Notice, WindowState
from auditor.reconcile import Status
from auditor.report import AuditReport, iso

log = logging.getLogger("auditor.alerts")
LEASE = timedelta(minutes=2)  # renewed before each send; far longer than one send (the webhook timeout is 10 s)
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)


class AlertCatalog(Protocol):
    def windows(self, export: str, dataset: str | None = None, start: datetime | None = None, end: datetime | None = None, *, known: bool = False) -> list[WindowState]: ...

    def open_episodes(self, exports: Iterable[str] | None = None) -> dict[str, Episode]: ...

    def datasets_live_as_of(self) -> dict[tuple[str, str], datetime | None]: ...

    def open_episode(self, key: str, *, rule: str, export: str, dataset: str, scheduled: datetime | None, message: str, payload: Mapping[str, Any],
                     channels: Sequence[str], now: datetime, audit_id: int | None, queued_at: datetime | None = None) -> bool: ...

    def close_episode(self, key: str, *, message: str, payload: Mapping[str, Any], channels: Sequence[str], now: datetime, audit_id: int | None,
                      queued_at: datetime | None = None) -> bool: ...

    def claim_notices(self, now: datetime, *, holder: str, lease: timedelta, limit: int = 10, channels: Iterable[str] | None = None,
                      others_after: timedelta | None = None) -> list[Notice]: ...

    def renew_lease(self, notice_id: int, *, holder: str, lease: timedelta) -> bool: ...

    def record_attempt(self, notice_id: int, *, holder: str, now: datetime, error: str | None, permanent: bool, retry_at: datetime | None) -> str: ...


def raise_alerts(
    settings: Settings, catalog: AlertCatalog, report: AuditReport, *, live: Iterable[tuple[str, str]], now: datetime, audit_id: int | None,
    queued_at: datetime | None = None,
) -> tuple[int, int]:
    """Open and close episodes for the (export, dataset) pairs this audit was live for; returns (opened, closed).
    Episodes are dated `now` (the audit's as-of time); their notices are queued at `queued_at` (the clock notices
    are delivered by: a back-dated audit's notices are new all the same), else `now`.

    Episodes of conditions nobody monitors any more (a rule, export or dataset removed from the
    configuration) are closed without a notice, so the same condition alerts again if it returns.
    """
    scope = set(live)
    if not scope:
        return 0, 0
    closed = _close_unmonitored(settings, catalog, now, audit_id)
    if not settings.alerts:
        return 0, closed
    mine = AuditReport(report.as_of, tuple(e for e in report.exports if (e.name, e.dataset_id) in scope), report.unexpected, report.errors, report.assurance, report.audit_id)
    unknown_since: dict[tuple[str, str, datetime], datetime] = {}
    for export in mine.exports:
        if any(w.status is Status.UNKNOWN for w in export.windows):
            for w in catalog.windows(export.name, export.dataset_id):
                if w.status == "unknown":
                    unknown_since[(export.name, w.dataset_id, w.scheduled)] = w.status_since
    rules = {r.name: r for r in settings.alerts}
    found = conditions(mine, settings.alerts, unknown_since=unknown_since)
    opened = sum(
        catalog.open_episode(
            c.key, rule=c.rule, export=c.export, dataset=c.dataset_id, scheduled=c.scheduled, message=c.message, payload=c.payload,
            channels=rules[c.rule].channels, now=now, audit_id=audit_id, queued_at=queued_at,
        )
        for c in found
    )
    current = {c.key for c in found}
    for key, episode in sorted(catalog.open_episodes({e for e, _ in scope}).items()):
        rule = rules.get(episode.rule)
        if key in current or rule is None or (episode.export, episode.dataset_id) not in scope:
            continue
        if episode.scheduled is not None and episode.scheduled > mine.as_of:  # a window whose time has not come: opened under a clock that ran ahead
            early = f"the window of {iso(episode.scheduled)} has not come yet: it was judged by an audit made while a clock ran ahead"
            closed += catalog.close_episode(key, message=early, payload={}, channels=[], now=now, audit_id=audit_id)
            continue
        message = recovered(mine, episode.rule, episode.export, episode.dataset_id, episode.scheduled, when=rule.when)
        if message is None:
            continue
        payload = {"title": f"export-auditor: {episode.rule} recovered", "rule": episode.rule, "export": episode.export, "dataset_id": episode.dataset_id,
                   "scheduled": iso(episode.scheduled)}
        closed += catalog.close_episode(key, message=message, payload=payload, channels=rule.channels, now=now, audit_id=audit_id, queued_at=queued_at)
    return opened, closed


UNMONITORED_AFTER = timedelta(days=3)  # a dataset or rule this configuration does not name, seen by a live audit this recently, is another's to watch
UNCLAIMED_AFTER = timedelta(days=1)  # a notice to a channel this configuration does not name, due this long and not tried: no process delivers it


def _close_unmonitored(settings: Settings, catalog: AlertCatalog, now: datetime, audit_id: int | None) -> int:
    """Close the episodes nobody monitors any more. A dataset of an export this configuration does not name (the export,
    or the dataset in it) may be another configuration's on the same catalog (a job auditing some of them, serve all):
    its episodes close only once no live audit has looked at it for UNMONITORED_AFTER (closed at once, the next audit of
    it alerted again). So does an episode of a rule this configuration does not name (another configuration's rules,
    serve's beside a compliance job's): it closes once no live audit has found its condition holding for that long
    (closed at once, a missing window paged again after every audit of the other configuration)."""
    rules = {r.name: r for r in settings.alerts}
    datasets = {(e.name, d) for e in settings.exports for d in e.datasets}
    live: dict[tuple[str, str], datetime | None] | None = None
    closed = 0
    for key, episode in catalog.open_episodes().items():
        rule = rules.get(episode.rule)
        dataset = (episode.export, episode.dataset_id)
        if rule is not None and dataset in datasets and (not rule.exports or episode.export in rule.exports):
            continue
        if rule is None and (episode.seen_at or episode.opened_at) > now - UNMONITORED_AFTER:
            continue
        if rule is not None and dataset not in datasets:
            live = catalog.datasets_live_as_of() if live is None else live
            last = live.get(dataset)
            if last is not None and last > now - UNMONITORED_AFTER:
                continue
        what = "the rule" if rule is None else ("the dataset" if dataset not in datasets else "the rule's exports")
        closed += catalog.close_episode(key, message=f"no longer monitored: {what} changed in the configuration", payload={}, channels=[], now=now, audit_id=audit_id)
    return closed


def retry_delay(attempts: int, notice_id: int) -> timedelta:
    """Exponential backoff (30 s, 1 min, 2 min … capped at 1 h) with a fixed per-notice spread of up to 10 %."""
    base: timedelta = min(MAX_RETRY, FIRST_RETRY * (2 ** min(attempts, 16)))
    spread = (zlib.crc32(str(notice_id).encode()) % 1000) / 10000
    return base * (1 + spread)


def deliver_due(
    settings: Settings,
    catalog: AlertCatalog,
    now: datetime,
    *,
    holder: str,
    notifier: Callable[[ChannelSettings], Notifier] | None = None,
    wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Send every due notice this process can claim; returns how many it attempted."""
    channels = {c.name: c for c in settings.channels}
    build = notifier or _notifier
    # a notice to a channel this configuration does not name is another's to send (configurations on one catalog):
    # claimed only once it has been due UNCLAIMED_AFTER without an attempt (a process naming its channel retries hourly)
    claimed = catalog.claim_notices(now, holder=holder, lease=LEASE, channels=channels, others_after=UNCLAIMED_AFTER)
    for notice in claimed:
        if not catalog.renew_lease(notice.id, holder=holder, lease=LEASE):
            continue  # the lease ran out while earlier notices were sent: another process may have it now
        channel = channels.get(notice.channel)
        if channel is None:
            gone = f"no configuration delivering from this catalog has tried the channel for {UNCLAIMED_AFTER.days} day(s): none names it"
            catalog.record_attempt(notice.id, holder=holder, now=now, error=gone, permanent=True, retry_at=None)
            continue
        error: AlertError | None = None
        try:
            build(channel).notify(notice.message, {**notice.payload, "notice_id": notice.id, "kind": notice.kind}, notice_id=notice.id, sent_at=wall_clock())
        except AlertError as e:
            error = e
        except Exception as e:  # a notifier bug must not stop the others
            log.exception("notifier %s failed", channel.kind)
            error = AlertError(f"the notifier failed: {type(e).__name__}")
        if error is None:
            catalog.record_attempt(notice.id, holder=holder, now=now, error=None, permanent=False, retry_at=None)
            continue
        # tried again until the notice is give_up_after old, the last time then (a backoff past it gave up early)
        deadline = notice.created_at + channel.give_up_after
        retry_at: datetime | None = min(now + retry_delay(notice.attempts, notice.id), deadline) if now < deadline else None
        state = catalog.record_attempt(notice.id, holder=holder, now=now, error=str(error), permanent=error.permanent, retry_at=retry_at)
        log.warning("notice %s to %s: %s (%s)", notice.id, notice.channel, error, "will retry" if state == "pending" else "given up")
    return len(claimed)


def _notifier(channel: ChannelSettings) -> Notifier:
    if channel.kind == "webhook":
        return notifier_for(channel.kind, url=channel.url, secret=channel.secret)  # type: ignore[no-any-return]
    return notifier_for(channel.kind, url=channel.url)  # type: ignore[no-any-return]
