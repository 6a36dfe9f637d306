"""A generic webhook: the notice as JSON, signed with HMAC-SHA256 when the channel has a secret.

`X-Auditor-Signature: t=<unix seconds>,v1=<hex>` where v1 = HMAC-SHA256(secret, "<t>." + body) and
the body carries `notice_id`: a receiver checks the signature, refuses a `t` far from its clock
(a replay) and drops a `notice_id` it has seen (a retry whose first answer was lost).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from auditor.alerts.base import AlertError, Notifier, keep_out_of_logs


def signature(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, now: float, tolerance: float = 300) -> bool:
    """What a receiver does: the signature matches and its timestamp is recent."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = signature(secret, body, timestamp).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(parts.get("v1", ""), expected)


class WebhookNotifier(Notifier):
    def __init__(self, url: str, secret: str | None = None, timeout: float = 10.0) -> None:
        self.url, self.secret, self.timeout = url, secret, timeout
        keep_out_of_logs(url)

    def notify(self, message: str, payload: Mapping[str, Any], *, notice_id: int, sent_at: datetime) -> None:
        body = json.dumps({"text": message, **payload, "notice_id": notice_id}, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-Auditor-Notice-Id": str(notice_id)}
        if self.secret:
            headers["X-Auditor-Signature"] = signature(self.secret, body, int(sent_at.timestamp()))
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.TransportError as e:
            raise AlertError(f"webhook unreachable: {type(e).__name__}") from e
        if response.status_code >= 500 or response.status_code == 429:
            raise AlertError(f"webhook answered {response.status_code}")
        if response.status_code >= 400:
            raise AlertError(f"webhook refused the notice: {response.status_code}", permanent=True)
