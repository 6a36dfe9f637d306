"""The single exception tree of the auditor.

Exceptions mean the auditor itself cannot do its job; problems found in the audited
storage are `Finding` values, never exceptions.

    AuditorError
    ├── ConfigError      bad file or environment value; names the key and the value
    ├── LayoutError      invalid folder-name template
    ├── ScheduleError    invalid schedule (scheduleParams)
    ├── StorageError     cannot list or read after retries; carries .url (redacted)
    ├── CatalogError     the catalog database cannot be reached or is out of date
    └── FlowsError       the Flow Service API refused or failed; carries .status_code, .transient
"""

from __future__ import annotations


class AuditorError(Exception):
    """Base class of every error the auditor raises on purpose."""


class ConfigError(AuditorError):
    """The configuration file or an environment value is wrong."""


class LayoutError(AuditorError):
    """A folder-name template cannot be used."""


class ScheduleError(AuditorError):
    """A schedule is not one AEP can run."""


class StorageError(AuditorError):
    """A destination could not be listed or read."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class CatalogError(AuditorError):
    """The catalog database failed or needs an upgrade."""


class CatalogUnreachable(CatalogError):
    """The catalog database could not be reached (a connection failed): worth trying again later."""


class FlowsError(AuditorError):
    """A Flow Service (or IMS) call failed; Adobe's own message is kept."""

    def __init__(self, message: str, *, status_code: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.transient = transient
