"""The notifier contract and the retry loop that honours permanent failures."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from auditor.errors import AuditorError


class AlertError(AuditorError):
    """A delivery failed; `permanent` failures are not retried (the channel is misconfigured)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Notifier:
    def notify(self, message: str, payload: Mapping[str, Any]) -> None:
        """Deliver one notice. Raises AlertError on failure, returns None on success."""
        raise NotImplementedError


def deliver(notifier: Notifier, message: str, payload: Mapping[str, Any], *, retries: int, sleep: Callable[[float], None] = time.sleep) -> tuple[int, AlertError | None]:
    """Try once plus `retries` times with backoff; returns (attempts, the last error or None)."""
    for attempt in range(retries + 1):
        try:
            notifier.notify(message, payload)
            return attempt + 1, None
        except AlertError as e:
            if e.permanent or attempt == retries:
                return attempt + 1, e
            sleep(min(30.0, 0.5 * 2**attempt))
    raise AssertionError("unreachable")
