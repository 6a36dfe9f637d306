"""What differs per backend before fsspec sees the options: the few places a backend really differs.

- Azure / Data Landing Zone: a `sas_url` (the DLZ credentials' SASUri) becomes a connection string,
  which works for real accounts and for local emulators alike.
- SFTP: host keys are checked against a known_hosts file by default, never silently accepted.
- S3: bounded retries with backoff unless the caller set their own.
- Every backend: our own `retries` option bounds fsspec-level retries where the backend has them.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from auditor.errors import StorageError

AZURE = ("az", "abfs", "abfss")
DEFAULT_S3_CONFIG = {"retries": {"total_max_attempts": 4, "mode": "standard"}, "connect_timeout": 10, "read_timeout": 60}


def backend_options(protocol: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options for the fsspec constructor, attributes to set on the filesystem afterwards)."""
    options = dict(options)
    attributes: dict[str, Any] = {}
    if protocol in AZURE and "sas_url" in options:
        options["connection_string"] = _sas_connection_string(str(options.pop("sas_url")))
    if protocol == "sftp":
        options["host_key_policy"] = _host_key_policy(options)
    if protocol in ("s3", "s3a"):
        options.setdefault("config_kwargs", DEFAULT_S3_CONFIG)
        attributes["retries"] = int(options.pop("retries", 3))
    elif "retries" in options:
        attributes["retries"] = int(options.pop("retries"))
    return options, attributes


def _sas_connection_string(sas_url: str) -> str:
    parts = urlsplit(sas_url)
    if not parts.scheme or not parts.netloc or not parts.query:
        raise StorageError("options.sas_url is not a SAS URL (https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=…&sig=…)")
    segments = [s for s in parts.path.split("/") if s]
    # emulators put the account in the path (http://127.0.0.1:10000/devstoreaccount1/container)
    account_path = f"/{segments[0]}" if len(segments) > 1 and not parts.netloc.endswith(".core.windows.net") else ""
    return f"BlobEndpoint={parts.scheme}://{parts.netloc}{account_path};SharedAccessSignature={parts.query}"


def _host_key_policy(options: dict[str, Any]) -> Any:
    import paramiko

    known_hosts = options.pop("known_hosts", None)
    if options.pop("insecure_accept_any_host_key", False):
        return paramiko.AutoAddPolicy()
    path = str(known_hosts) if known_hosts else os.path.expanduser("~/.ssh/known_hosts")

    class KnownHostsPolicy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
        """Accept a server only if its host key is in the known_hosts file (as `ssh` does by default)."""

        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            try:
                known = paramiko.HostKeys(path)
            except OSError as e:
                raise paramiko.SSHException(f"cannot read known_hosts file {path}: {e.strerror}") from None
            entry = known.lookup(hostname)
            if entry is None:
                raise paramiko.SSHException(f"host key of {hostname} is not in {path}: refusing to connect (options.known_hosts)")
            expected = entry.get(key.get_name())
            if expected is None or expected.asbytes() != key.asbytes():
                raise paramiko.SSHException(f"host key of {hostname} does not match {path}: refusing to connect")

    return KnownHostsPolicy()
