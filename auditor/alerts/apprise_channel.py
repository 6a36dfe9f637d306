"""Any Apprise URL (Slack, Teams, e-mail, …) as an alert channel."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from auditor.alerts.base import AlertError, Notifier, keep_out_of_logs


class AppriseNotifier(Notifier):
    def __init__(self, url: str, **_: Any) -> None:
        import apprise

        keep_out_of_logs(url)
        self._apprise = apprise.Apprise()
        if not self._apprise.add(url):
            raise AlertError("the Apprise URL is not valid", permanent=True)

    def notify(self, message: str, payload: Mapping[str, Any], *, notice_id: int, sent_at: datetime) -> None:
        if not self._apprise.notify(title=str(payload.get("title", "export-auditor")), body=message):
            raise AlertError("Apprise could not deliver the notice")
