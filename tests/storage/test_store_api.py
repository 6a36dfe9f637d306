"""The storage seam is read-only by construction, and a missing backend names its extra."""

from __future__ import annotations

import pytest

from auditor.errors import StorageError
from auditor.storage import PROTOCOLS, open_store
from auditor.storage.fsspec_store import FsspecStore


def test_the_store_exposes_no_way_to_write_move_or_delete() -> None:
    public = {name for name in dir(FsspecStore) if not name.startswith("_")}
    assert public == {"list", "list_prefixes", "walks", "read_range", "open", "count", "bytes_read", "account_endpoint"}  # (a property: where it reads)


def test_a_backend_whose_package_is_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROTOCOLS, "s3", ("no_such_s3_package", "s3"))
    with pytest.raises(StorageError, match=r"pip install 'export-auditor\[s3\]'"):
        open_store("s3://bucket/path", {})


def test_an_unknown_protocol_is_a_clear_error() -> None:
    with pytest.raises(StorageError, match="unsupported storage protocol 'ftp'"):
        open_store("ftp://host/path", {})


@pytest.mark.parametrize(
    "url, secret",
    [
        ("sftp://user:hunter2@host/path", "hunter2"),
        ("https://acct.blob.core.windows.net/c?sv=2022&sig=abc%2Fdef&sp=rl", "abc%2Fdef"),
    ],
)
def test_urls_are_redacted_in_errors(url: str, secret: str) -> None:
    from auditor.storage import redact, scrub

    assert secret not in redact(url)
    assert secret not in scrub(f"GET {url} failed")
