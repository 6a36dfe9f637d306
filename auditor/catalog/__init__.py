"""The catalog: every backup, window and finding, in SQLite or PostgreSQL."""

from __future__ import annotations
