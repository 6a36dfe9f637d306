"""`auditor serve`: periodic audits, alerts, an HTTP API and Prometheus metrics in one process."""

from __future__ import annotations
