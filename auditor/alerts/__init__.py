"""Alerts: rules that decide (pure), notifiers that deliver (imported lazily by kind)."""

from __future__ import annotations

import importlib
from typing import Any

# kind -> "module:Class", imported on first use (like healthchecks' TRANSPORTS)
NOTIFIERS = {
    "webhook": "auditor.alerts.webhook:WebhookNotifier",
    "apprise": "auditor.alerts.apprise_channel:AppriseNotifier",
}


def notifier_for(kind: str, **options: Any) -> Any:
    module, _, name = NOTIFIERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)(**options)
