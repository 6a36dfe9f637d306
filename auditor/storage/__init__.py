"""Open a destination by URL; the protocol table names the extra to install for each backend."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from auditor.errors import StorageError
from auditor.storage.base import ObjectInfo, Store, redact, scrub

# protocol -> (module that implements it, the pip extra that installs it); read lazily, like
# fsspec's known_implementations.
PROTOCOLS: dict[str, tuple[str | None, str | None]] = {
    "file": (None, None),
    "local": (None, None),
    "memory": (None, None),
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
    "sftp": ("paramiko", "sftp"),
}


def open_store(url: str, options: Mapping[str, Any] | None = None) -> Store:
    """Build the read-only store for a destination URL.

    Raises StorageError for an unknown protocol or a backend whose extra is not installed.
    """
    from auditor.storage.fsspec_store import FsspecStore

    protocol = url.split("://", 1)[0].lower() if "://" in url else "file"
    if protocol not in PROTOCOLS:
        raise StorageError(f"unsupported storage protocol {protocol!r} (supported: {', '.join(sorted(PROTOCOLS))})", url=redact(url))
    module, extra = PROTOCOLS[protocol]
    if module is not None and importlib.util.find_spec(module) is None:
        raise StorageError(f"{protocol}:// needs the {module} package: pip install 'export-auditor[{extra}]'", url=redact(url))
    return FsspecStore(url, dict(options or {}))


__all__ = ["PROTOCOLS", "ObjectInfo", "Store", "open_store", "redact", "scrub"]
