"""What differs per backend before fsspec sees the options: the few places a backend really differs.

- Azure / Data Landing Zone: a `sas_url` (the DLZ credentials' SASUri) becomes a connection string,
  which works for real accounts and for local emulators alike.
- SFTP: host keys are checked against a known_hosts file by default, never silently accepted.
- Every backend: bounded timeouts and retries, from three options of our own (popped before fsspec
  sees the rest), so that a store that cannot be reached costs an audit seconds, not minutes:

  `retries` (default 2)            retries after the first attempt of one request, 0 to 10
  `connect_timeout` (default 3 s)  to open a connection
  `read_timeout` (default 10 s)    to wait for the next bytes of an answer

  S3: botocore retries each request (standard mode: throttling, 5xx, connection errors) up to
  `retries` times; s3fs's own wrapper adds at most one more pass, for a failure while reading a
  body (which botocore cannot retry). GCS: gcsfs's request retries (six, with up to 32 s of
  backoff, fixed in the library) are replaced by `retries`. Azure: the storage SDK's retry policy
  (three retries 15 to 24 s apart, 20 s connection timeout) is replaced by `retries` with 2 s,
  2.75 s, 3.9 s … of backoff. SFTP: paramiko's connect, banner, auth and channel timeouts, and `retries`
  connection attempts after the first for errors of the network (never for a refused host key or
  a failed login).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from auditor.errors import StorageError

AZURE = ("az", "abfs", "abfss")
S3 = ("s3", "s3a")
GCS = ("gs", "gcs")
MAX_RETRIES = 10
MAX_TIMEOUT = 600.0


@dataclass(frozen=True)
class Limits:
    """How long and how often one request to a store may be tried."""

    retries: int = 2
    connect_timeout: float = 3.0
    read_timeout: float = 10.0


DEFAULT_LIMITS = Limits()


def limits_problem(options: dict[str, Any]) -> str | None:
    """What is wrong with the `retries` / `connect_timeout` / `read_timeout` options (values never shown)."""
    if "retries" in options:
        value = options["retries"]
        if type(value) is not int or not 0 <= value <= MAX_RETRIES:
            return f"options.retries must be a whole number from 0 to {MAX_RETRIES}"
    for name in ("connect_timeout", "read_timeout"):
        if name in options:
            value = options[name]
            if type(value) not in (int, float) or not 0 < value <= MAX_TIMEOUT:
                return f"options.{name} must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}"
    return None


def backend_options(protocol: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Callable[[Any], None] | None]:
    """(options for the fsspec constructor, attributes to set on the filesystem, a hook to call on it)."""
    options = dict(options)
    problem = limits_problem(options)
    if problem:
        raise StorageError(problem)
    limits = Limits(
        retries=options.pop("retries", DEFAULT_LIMITS.retries),
        connect_timeout=float(options.pop("connect_timeout", DEFAULT_LIMITS.connect_timeout)),
        read_timeout=float(options.pop("read_timeout", DEFAULT_LIMITS.read_timeout)),
    )
    attributes: dict[str, Any] = {}
    hook: Callable[[Any], None] | None = None
    if protocol in S3:
        # fsspec keeps one filesystem per set of options for the life of the process, and s3fs's listings cache never
        # refreshes a folder it has cached (a later find lists afresh but leaves the cached folder as it was): a file
        # that lands in a folder an earlier audit listed could not be opened by `auditor serve` until it restarted
        # (gcsfs and adlfs open such a file: tests/storage/test_contract.py)
        options.setdefault("use_listings_cache", False)
    if protocol in AZURE:
        if "sas_url" in options:
            options["connection_string"] = _sas_connection_string(str(options.pop("sas_url")))
        options.setdefault("connection_timeout", limits.connect_timeout)
        options.setdefault("read_timeout", limits.read_timeout)

        def hook(fs: Any) -> None:
            _bound_azure(fs, limits)

    elif protocol in S3:
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("retries", {"total_max_attempts": limits.retries + 1, "mode": "standard"})
        config.setdefault("connect_timeout", limits.connect_timeout)
        config.setdefault("read_timeout", limits.read_timeout)
        options["config_kwargs"] = config
        attributes["retries"] = 1 + min(limits.retries, 1)  # s3fs counts attempts: 0 would mean none at all
    elif protocol in GCS:
        options.setdefault("requests_timeout", _aiohttp_timeout(limits))

        def hook(fs: Any) -> None:
            _bound_gcs(fs, limits)

    elif protocol == "sftp":
        options["host_key_policy"] = _host_key_policy(options)
        options.setdefault("timeout", limits.connect_timeout)
        options.setdefault("banner_timeout", limits.connect_timeout)
        options.setdefault("auth_timeout", limits.read_timeout)
        options.setdefault("channel_timeout", limits.read_timeout)

        def hook(fs: Any) -> None:
            channel = fs.ftp.get_channel() if getattr(fs, "ftp", None) is not None else None
            if channel is not None:
                channel.settimeout(limits.read_timeout)  # a server that stops answering mid-listing

    return options, attributes, hook


def limits_of(options: dict[str, Any]) -> Limits:
    """The limits a destination's options ask for (defaults where they say nothing)."""
    return Limits(
        retries=int(options.get("retries", DEFAULT_LIMITS.retries)),
        connect_timeout=float(options.get("connect_timeout", DEFAULT_LIMITS.connect_timeout)),
        read_timeout=float(options.get("read_timeout", DEFAULT_LIMITS.read_timeout)),
    )


def _aiohttp_timeout(limits: Limits) -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(total=None, connect=limits.connect_timeout, sock_connect=limits.connect_timeout, sock_read=limits.read_timeout)


def _bound_azure(fs: Any, limits: Limits) -> None:
    """Give adlfs's service client our retry policy and timeouts (adlfs builds it with the SDK's
    defaults: three retries 15-24 s apart, which holds an audit ~3 minutes on a refused connection)."""
    if getattr(fs, "_auditor_limits", None) == limits:
        return
    from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

    old = fs.service_client
    policy = ExponentialRetry(initial_backoff=0.5, increment_base=1.5, retry_total=limits.retries, random_jitter_range=0.5)  # type: ignore[arg-type]  # waits 2, 2.75, 3.9 s …  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {
        "credential": old.credential,
        "retry_policy": policy,
        "connection_timeout": limits.connect_timeout,
        "read_timeout": limits.read_timeout,
        "_location_mode": getattr(old, "_location_mode", None) or "primary",
    }
    if getattr(old, "secondary_hostname", None):
        kwargs["secondary_hostname"] = old.secondary_hostname
    fs.service_client = BlobServiceClient(account_url=old.url, **kwargs)
    fs._auditor_limits = limits


def _bound_gcs(fs: Any, limits: Limits) -> None:
    """Replace gcsfs's request retries (six attempts, up to 32 s apart, fixed when the library is
    imported) with `retries` attempts after the first, 0.5 to 4 s apart; what is retried stays
    gcsfs's own choice (its is_retriable)."""
    if getattr(fs, "_auditor_limits", None) == limits:
        return
    from gcsfs.retry import is_retriable

    inner = getattr(type(fs)._request, "__wrapped__", None)
    if inner is None:  # another gcsfs: leave its own retries
        return

    async def _request(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(limits.retries + 1):
            if attempt:
                await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 4.0) * (0.5 + random.random() / 2))  # jittered
            try:
                return await inner(fs, *args, **kwargs)
            except Exception as e:
                if attempt == limits.retries or isinstance(e, FileNotFoundError) or not is_retriable(e):
                    raise
        raise AssertionError("unreachable")

    fs._request = _request
    fs._auditor_limits = limits


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
