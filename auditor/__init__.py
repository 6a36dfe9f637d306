"""export-auditor: prove that AEP dataset exports landed intact and on time."""

from __future__ import annotations

__version__ = "0.1.0"
