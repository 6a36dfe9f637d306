"""Findings: what every check returns, as data."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(str, enum.Enum):
    """How much a finding matters: errors make a window invalid, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One problem found in storage.

    >>> Finding("file.empty", Severity.ERROR, "s3://b/p/part-0.parquet", "file is empty")
    """

    code: str
    severity: Severity
    path: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity.value, "path": self.path, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Finding:
        return cls(data["code"], Severity(data["severity"]), data["path"], data["message"])


def error(code: str, path: str, message: str) -> Finding:
    return Finding(code, Severity.ERROR, path, message)


def warning(code: str, path: str, message: str) -> Finding:
    return Finding(code, Severity.WARNING, path, message)
