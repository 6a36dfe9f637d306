"""The notifier contract: one attempt per call; the delivery loop (auditor.alerting) retries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from auditor.errors import AuditorError


class AlertError(AuditorError):
    """A delivery failed; `permanent` failures are not retried (the channel is misconfigured)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Notifier:
    def notify(self, message: str, payload: Mapping[str, Any], *, notice_id: int, sent_at: datetime) -> None:
        """Deliver one notice once. Raises AlertError on failure, returns None on success."""
        raise NotImplementedError
