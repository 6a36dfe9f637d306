"""Which conditions each alert rule sees in a report (pure)."""

from __future__ import annotations

from datetime import timedelta

from auditor.alerts.rules import conditions, recovered
from auditor.config import AlertRuleSettings
from auditor.findings import warning
from auditor.reconcile import RestorePoint, Status, Window, WindowResult
from auditor.report import AuditReport, ExportResult
from tests.conftest import t

NOW = t("2026-11-28T12:00")


def report(*statuses: Status, until: str | None = "2026-11-27T00:00", active: bool = True, warnings: tuple = ()) -> AuditReport:  # type: ignore[type-arg]
    windows = tuple(WindowResult(Window("web", "ds", t("2026-11-27T00:00") + timedelta(hours=3 * i), t("2026-11-27T01:00")), s) for i, s in enumerate(statuses))
    point = RestorePoint(t(until) if until else None, None)
    return AuditReport(NOW, (ExportResult("web", "d", "ds", True, windows, point, NOW, active, warnings),))


def rule(when: str, **extra: object) -> AlertRuleSettings:
    return AlertRuleSettings.model_validate({"name": when, "when": when, "channels": ["c"], **extra})


def test_missing_and_invalid_windows_each_have_their_own_key() -> None:
    found = conditions(report(Status.OK, Status.MISSING, Status.INVALID, Status.MISSING), [rule("missing"), rule("invalid")], unknown_since={})
    assert [c.key for c in found] == ["missing|web|ds|2026-11-27T03:00:00Z", "missing|web|ds|2026-11-27T09:00:00Z", "invalid|web|ds|2026-11-27T06:00:00Z"]


def test_unknown_alerts_only_after_the_set_time() -> None:
    since = {("web", "ds", t("2026-11-27T00:00")): NOW - timedelta(minutes=30)}
    assert conditions(report(Status.UNKNOWN), [rule("unknown", unknown_for="1h")], unknown_since=since) == []
    since = {("web", "ds", t("2026-11-27T00:00")): NOW - timedelta(hours=2)}
    assert len(conditions(report(Status.UNKNOWN), [rule("unknown", unknown_for="1h")], unknown_since=since)) == 1


def test_rpo_alerts_only_for_running_schedules_above_the_threshold() -> None:
    assert len(conditions(report(Status.OK, until="2026-11-27T00:00"), [rule("rpo", rpo_above="24h")], unknown_since={})) == 1  # 36 h
    assert conditions(report(Status.OK, until="2026-11-28T00:00"), [rule("rpo", rpo_above="24h")], unknown_since={}) == []  # 12 h
    assert conditions(report(Status.OK, until="2026-11-27T00:00", active=False), [rule("rpo", rpo_above="24h")], unknown_since={}) == []


def test_a_flow_about_to_stop_alerts() -> None:
    ending = (warning("export.ending", "web", "the schedule ends soon"),)
    assert [c.key for c in conditions(report(Status.OK, warnings=ending), [rule("ending")], unknown_since={})] == ["ending|web|ds|-"]


def test_rules_can_be_limited_to_exports() -> None:
    assert conditions(report(Status.MISSING), [rule("missing", exports=["other"])], unknown_since={}) == []


def test_recovery_is_announced_only_when_the_window_is_good() -> None:
    window = ("missing", "web", "ds", t("2026-11-27T00:00"))
    assert recovered(report(Status.UNKNOWN), *window) is None
    assert recovered(report(Status.INVALID), *window) is None  # missing -> invalid is no recovery
    assert "landed late" in (recovered(report(Status.LATE), *window) or "")
    assert "no new data" in (recovered(report(Status.EMPTY), *window) or "")
    assert "can be read again (missing)" in (recovered(report(Status.MISSING), "unreadable", "web", "ds", t("2026-11-27T00:00"), when="unknown") or "")


def test_nothing_restorable_is_an_unbounded_rpo() -> None:
    found = conditions(report(Status.MISSING, Status.OK, until=None), [rule("rpo", rpo_above="24h")], unknown_since={})
    assert [c.key for c in found] == ["rpo|web|ds|-"] and "nothing is restorable" in found[0].message
    assert conditions(report(Status.PENDING, until=None), [rule("rpo", rpo_above="24h")], unknown_since={}) == []  # nothing settled yet
