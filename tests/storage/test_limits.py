"""Bounded timeouts and retries on every backend: `retries = 0` works, a store that cannot be reached
costs an audit seconds (windows `unknown`), and bad limits are configuration errors."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import pytest

from auditor.config import settings_from_mapping
from auditor.errors import ConfigError, StorageError
from auditor.storage import open_store
from tests import servers
from tests.storage.conftest import s3_backend
from tests.storage.test_faults import audit, build_tree, settings_for, statuses

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
BUDGET = 20.0  # seconds an audit of one unreachable destination may take (the default limits promise ~30 at worst)


@pytest.mark.s3
@pytest.mark.parametrize("retries", [0, 1, 10])
def test_an_s3_destination_with_any_retries_value_is_audited(moto: servers.Moto, tmp_path: Path, retries: int) -> None:
    backend = s3_backend(moto)
    build_tree(backend)

    report = audit(settings_for(backend.url, {**backend.options, "retries": retries}, tmp_path))

    assert report.errors == (), report.errors  # retries = 0 was a TypeError inside s3fs: S3 disabled entirely
    assert statuses(report) == ["late", "ok"]


def unreachable(protocol: str) -> tuple[str, dict[str, Any]]:
    port = servers.free_port()  # nothing listens there: every connection is refused
    if protocol in ("az", "abfs"):
        return f"{protocol}://aep/exports", {"connection_string": servers.azurite_connection_string(f"http://127.0.0.1:{port}/{servers.AZURITE_ACCOUNT}")}
    if protocol == "dlz":
        return "az://aep/exports", {"sas_url": f"http://127.0.0.1:{port}/{servers.AZURITE_ACCOUNT}/aep?sv=2024-08-04&sr=c&sp=rl&sig=c2VjcmV0"}
    if protocol == "s3":
        return "s3://aep/exports", {"endpoint_url": f"http://127.0.0.1:{port}", "key": "k", "secret": "s"}
    if protocol == "gs":
        return "gs://aep/exports", {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "project": "p"}
    return f"sftp://auditor@127.0.0.1:{port}/exports", {"password": "p", "insecure_accept_any_host_key": True}


MODULES = {"az": "adlfs", "abfs": "adlfs", "dlz": "adlfs", "s3": "s3fs", "gs": "gcsfs", "sftp": "paramiko"}


@pytest.mark.parametrize("protocol", list(MODULES))
def test_an_audit_of_a_store_that_refuses_connections_ends_unknown_within_seconds(tmp_path: Path, protocol: str) -> None:
    if importlib.util.find_spec(MODULES[protocol]) is None:
        pytest.skip(f"{MODULES[protocol]} is not installed")
    url, options = unreachable(protocol)
    settings = settings_for(url, options, tmp_path)

    started = time.monotonic()
    report = audit(settings)
    took = time.monotonic() - started

    assert statuses(report) == ["unknown", "unknown"] and report.exit_code == 3
    assert took < BUDGET, f"{protocol}: an unreachable store held the audit {took:.1f} s"


@pytest.mark.parametrize("protocol", ["az", "sftp"])
def test_retries_zero_fails_fast(protocol: str) -> None:
    if importlib.util.find_spec(MODULES[protocol]) is None:
        pytest.skip(f"{MODULES[protocol]} is not installed")
    url, options = unreachable(protocol)
    started = time.monotonic()
    with pytest.raises(StorageError):
        open_store(url, {**options, "retries": 0}).list()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "options",
    [{"retries": -1}, {"retries": 11}, {"retries": "2"}, {"retries": True}, {"retries": 1.5}, {"connect_timeout": 0}, {"read_timeout": "soon"}, {"read_timeout": 10**9}],
    ids=lambda o: repr(o),
)
def test_bad_limits_are_configuration_errors_naming_the_option(options: dict[str, Any]) -> None:
    data = {
        "destinations": [{"name": "d", "url": "s3://aep/exports", "options": options}],
        "exports": [{"name": "e", "destination": "d", "datasets": ["ds"], "format": "json", "schedule": {"timeUnit": "day", "interval": 1, "startTime": 0}}],
    }
    with pytest.raises(ConfigError, match=r"destinations\[0\]\.options: (retries|connect_timeout|read_timeout) must be") as raised:
        settings_from_mapping(data, {})
    assert "got" not in str(raised.value)  # storage options are never echoed
    with pytest.raises(StorageError, match="must be"):
        open_store("memory://x", options)
