"""A generic webhook: the notice as JSON, signed with HMAC-SHA256 when the channel has a secret."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import httpx

from auditor.alerts.base import AlertError, Notifier


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier(Notifier):
    def __init__(self, url: str, secret: str | None = None, timeout: float = 10.0) -> None:
        self.url, self.secret, self.timeout = url, secret, timeout

    def notify(self, message: str, payload: Mapping[str, Any]) -> None:
        body = json.dumps({"text": message, **payload}, sort_keys=True).encode()
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers["X-Auditor-Signature"] = signature(self.secret, body)
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.TransportError as e:
            raise AlertError(f"webhook unreachable: {type(e).__name__}") from e
        if response.status_code >= 500 or response.status_code == 429:
            raise AlertError(f"webhook answered {response.status_code}")
        if response.status_code >= 400:
            raise AlertError(f"webhook refused the notice: {response.status_code}", permanent=True)
