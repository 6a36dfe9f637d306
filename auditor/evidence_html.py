"""The evidence report: a self-contained, printable HTML page an external auditor can keep.

It is a pure function of the recorded report (the canonical JSON, embedded in the page) and the
audit's id, so `auditor evidence verify FILE` can re-render it from the catalog and compare bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader, select_autoescape

from auditor.evidence import canonical, sha256

STATUSES = ("ok", "late", "empty", "pending", "invalid", "missing", "unknown")
# a report recorded by an earlier release may lack sections (method, assurance …): they render empty, not as an error
ENVIRONMENT = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"]), keep_trailing_newline=True, undefined=ChainableUndefined,
)
CALENDAR_FILTERS = {"slice_time": lambda iso: iso[11:16], "slice_day": lambda iso: iso[:10]}  # the calendar macro's, wherever it renders
ENVIRONMENT.filters.update(CALENDAR_FILTERS)


def rpo(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h" if seconds >= 86400 else f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def render_evidence(report: Mapping[str, Any], *, audit_id: int | None) -> str:
    """The evidence page for one recorded report."""
    body = canonical(report)
    scheduled = sorted(w["scheduled"] for e in report.get("exports", []) for w in e.get("windows", []))
    embedded = body.decode().replace("<", "\\u003c")  # JSON stays JSON (only strings hold "<"); the page stays one script element
    return ENVIRONMENT.get_template("evidence.html").render(
        standalone=True, report=report, audit_id=audit_id, digest=sha256(body), body=_safe(embedded), statuses=STATUSES, rpo=rpo,
        period=(scheduled[0] if scheduled else None,),
    )


def embedded_report(page: str) -> dict[str, Any] | None:
    """The report JSON an evidence page carries, if it is one."""
    start = page.find('<script type="application/json" id="report">')
    if start < 0:
        return None
    start = page.index(">", start) + 1
    end = page.find("</script>", start)
    try:
        found = json.loads(page[start:end])
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def calendar_macro() -> Any:
    """The calendar heatmap macro, for the dashboard's pages."""
    return ENVIRONMENT.get_template("evidence.html").module.calendar  # type: ignore[attr-defined]


class _safe(str):
    """Already JSON with '</' escaped: not HTML-escaped again (it sits in a script element)."""

    def __html__(self) -> str:
        return str(self)
