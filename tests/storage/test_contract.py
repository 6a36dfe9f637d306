"""One storage contract, every backend: the same listing, reads and audit verdicts on each real server."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor.audit import AuditOptions
from auditor.catalog.repository import open_catalog
from auditor.errors import StorageError
from auditor.exporter import sample_records, write_export
from auditor.storage import open_store
from tests.conftest import audit_once
from tests.storage.conftest import Backend, daily_export, local_backend, missing_root, sftp_backend


def parquet_bytes(rows: int) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(rows))}), out, compression="gzip")
    return out.getvalue()


def test_listing_gives_every_object_with_size_time_and_checksum(backend: Backend) -> None:
    backend.put("ds/exportTime=202611270000/part-00000.gz.parquet", parquet_bytes(10))
    backend.put("ds/exportTime=202611270000/part-00001.gz.parquet", parquet_bytes(20))
    backend.put("ds/exportTime=202611270300/_SUCCESS", b"")
    store = open_store(backend.url, backend.options)

    objects = store.list()

    assert [o.key for o in objects] == ["ds/exportTime=202611270000/part-00000.gz.parquet", "ds/exportTime=202611270000/part-00001.gz.parquet", "ds/exportTime=202611270300/_SUCCESS"]
    assert [o.size for o in objects] == [len(parquet_bytes(10)), len(parquet_bytes(20)), 0]
    now = datetime.now(UTC)
    assert all(o.modified is not None and abs(o.modified - now) < timedelta(minutes=5) for o in objects)
    assert all(o.url.startswith(backend.url.split("@")[0].split("://")[0] + "://") for o in objects)
    if backend.has_etag:
        assert all(o.etag for o in objects)
    assert store.bytes_read == 0  # listing reads no object contents


def test_ranged_and_streaming_reads(backend: Backend) -> None:
    data = bytes(range(256)) * 100
    backend.put("ds/blob.bin", data)
    store = open_store(backend.url, backend.options)
    assert store.read_range("ds/blob.bin", 100, 108) == data[100:108]
    assert store.read_range("ds/blob.bin", len(data) - 8, len(data)) == data[-8:]
    with store.open("ds/blob.bin") as handle:
        assert handle.read() == data
    assert store.bytes_read == 16 + len(data)


def test_a_root_that_does_not_exist_is_a_storage_error(backend: Backend) -> None:
    missing, options = missing_root(backend)
    with pytest.raises(StorageError):
        open_store(missing, options).list()


def _tree(backend: Backend, day: datetime) -> None:
    """Four daily windows: landed, missing, truncated file, manifest size wrong."""
    write = {"file_format": "parquet", "compression": "gzip", "parts": 2, "manifest": True, "storage_options": backend.write_options}
    target = f"{backend.writer.protocol[0] if isinstance(backend.writer.protocol, tuple) else backend.writer.protocol}://{backend.write_root}"
    if backend.name.startswith("sftp") or backend.name == "file":
        target = Path(backend.write_root).as_uri()
    else:
        write["storage_options"] = backend.writer.storage_options
    write_export(target, "ds", day - timedelta(days=3), sample_records("ds", day, 20), **write)  # type: ignore[arg-type]
    truncated = write_export(target, "ds", day - timedelta(days=1), sample_records("ds", day, 20), **write)  # type: ignore[arg-type]
    data = backend.writer.cat_file(f"{backend.write_root}/{truncated[0].key}")
    backend.put(truncated[0].key, data[: len(data) // 2])
    manifest = json.loads(backend.writer.cat_file(f"{backend.write_root}/{truncated[-1].key}"))
    for entry in manifest["exportResults"]:
        if entry["name"] == truncated[0].key.rsplit("/", 1)[-1]:
            entry["size"] = len(data) // 2
    backend.put(truncated[-1].key, json.dumps(manifest).encode())
    wrong = write_export(target, "ds", day, sample_records("ds", day, 20), **write)  # type: ignore[arg-type]
    manifest = json.loads(backend.writer.cat_file(f"{backend.write_root}/{wrong[-1].key}"))
    manifest["exportResults"][0]["size"] += 1
    backend.put(wrong[-1].key, json.dumps(manifest).encode())


def _settings(backend: Backend, tmp_path: Path, day: datetime) -> object:
    return daily_export(backend.url, backend.options, tmp_path, start=day - timedelta(days=3), end=day + timedelta(days=1))


def test_an_audit_gives_the_same_verdicts_on_every_backend_and_writes_nothing(backend: Backend, tmp_path: Path) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    _tree(backend, day)
    before = backend.digest()
    settings = _settings(backend, tmp_path, day)

    def now() -> datetime:  # past today's slot's 1 h deadline even when the test runs between 00:00 and 01:00 UTC
        return max(datetime.now(UTC), day + timedelta(hours=1)) + timedelta(minutes=1)

    report = audit_once(settings, now=now(), options=AuditOptions(deep=True))  # type: ignore[arg-type]

    windows = report.exports[0].windows
    # objects were written just now, after each slot's 1 h deadline: landed means "late" here
    assert [w.status.value for w in windows] == ["late", "missing", "invalid", "invalid"], [w.findings for w in windows]
    assert {f.code for f in windows[2].findings if f.is_error} == {"parquet.bad_magic"}
    assert {f.code for f in windows[3].findings if f.is_error} == {"manifest.size_mismatch"}
    assert windows[0].records == 20 and windows[0].files == 2
    assert report.errors == ()
    assert backend.digest() == before

    second = audit_once(settings, now=now(), options=AuditOptions(deep=True))  # type: ignore[arg-type]
    assert second.assurance.bytes_read == 0 and second.assurance.read_files == 0
    assert [w.status for w in second.exports[0].windows] == [w.status for w in windows]
    assert open_catalog(settings.catalog.url).table_counts()["files"] == 9  # type: ignore[attr-defined]


def test_a_file_that_lands_in_a_folder_listed_earlier_in_the_process_can_be_opened(backend: Backend) -> None:
    """`auditor serve` audits again and again in one process, and fsspec keeps one filesystem per set of options:
    a file that lands in a folder an earlier audit listed is listed and opened by the next audit's store."""
    folder = "ds/exportTime=202611270000"
    backend.put(f"{folder}/part-00000.gz.parquet", b"first")
    earlier = open_store(backend.url, backend.options)
    assert [o.key for o in earlier.list()] == [f"{folder}/part-00000.gz.parquet"]
    with earlier.open(f"{folder}/part-00000.gz.parquet") as handle:
        assert handle.read() == b"first"
    backend.put(f"{folder}/part-00001.gz.parquet", b"second")
    later = open_store(backend.url, backend.options)  # the next audit's store, as the runtime builds one per audit
    assert [o.key for o in later.list()] == [f"{folder}/part-00000.gz.parquet", f"{folder}/part-00001.gz.parquet"]
    with later.open(f"{folder}/part-00001.gz.parquet") as handle:
        assert handle.read() == b"second"


def test_a_root_gone_since_an_earlier_listing_in_the_same_process_is_a_storage_error(backend: Backend) -> None:
    """fsspec keeps one filesystem per set of options for the life of the process (`auditor serve`), and gcsfs
    answered whether the root was there from an earlier audit's listing: with the bucket deleted (or the server
    down) and every window settled, an incremental audit listed nothing and was `compliant`, where it is `unknown`."""
    backend.put("ds/exportTime=202611270000/part-00000.gz.parquet", parquet_bytes(10))
    assert [o.key for o in open_store(backend.url, backend.options).list()] == ["ds/exportTime=202611270000/part-00000.gz.parquet"]
    bucket = backend.write_root.split("/", 1)[0]
    backend.writer.rm(backend.write_root if backend.name in ("file", "sftp-key", "sftp-password") else bucket, recursive=True)
    store = open_store(backend.url, backend.options)
    with pytest.raises(StorageError):
        store.list_prefixes([])  # every window settled: nothing to list, only whether the root is there
    with pytest.raises(StorageError):
        store.list_prefixes(["ds/exportTime=20261127"])



@pytest.fixture(params=["file", pytest.param("sftp-key", marks=pytest.mark.sftp)])
def linkable(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The backends that hold symbolic links."""
    return local_backend(tmp_path) if request.param == "file" else sftp_backend(request.getfixturevalue("sshd"))


def test_a_symbolic_link_is_not_followed_and_the_report_says_so(linkable: Backend, tmp_path: Path) -> None:
    """A dataset folder linked in from another volume, or a data file linked into a real folder, was passed over in
    silence: its windows were missing (or invalid) with nothing in `unexpected` and nothing in `errors`."""
    import os
    import shutil

    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    elsewhere = f"{linkable.write_root}-volume2"
    write = {"file_format": "parquet", "compression": "gzip", "parts": 2, "manifest": True}
    write_export(Path(elsewhere).as_uri(), "ds", day, sample_records("ds", day, 20), **write)  # type: ignore[arg-type]
    os.symlink(f"{elsewhere}/ds", f"{linkable.write_root}/ds")  # the first day's dataset folder: a link
    settings = daily_export(linkable.url, linkable.options, tmp_path, start=day, end=day + timedelta(days=1))
    now = datetime.now(UTC) + timedelta(minutes=1)  # after the files were written (a file modified after the as-of time is not there yet)
    report = audit_once(settings, now=now)
    assert [w.status.value for e in report.exports for w in e.windows] == ["missing"]  # nothing stored under the destination
    assert [(u.path.rsplit("/", 1)[-1], u.reason.split(":")[0]) for u in report.unexpected] == [("ds", "a symbolic link")], report.unexpected

    os.unlink(f"{linkable.write_root}/ds")  # a real folder now, one data file of it a link to its bytes elsewhere
    shutil.copytree(f"{elsewhere}/ds", f"{linkable.write_root}/ds")
    [linked] = sorted(Path(linkable.write_root).glob("ds/*/part-00000*"))
    linked.unlink()
    os.symlink(next(Path(elsewhere).glob(f"ds/*/{linked.name}")), linked)
    report = audit_once(settings, now=now + timedelta(minutes=1))
    assert [w.status.value for e in report.exports for w in e.windows] == ["invalid"]  # the manifest names a file not stored there
    assert [(u.path.rsplit("/", 1)[-1], u.reason.split(":")[0]) for u in report.unexpected] == [(linked.name, "a symbolic link")], report.unexpected


def test_a_download_into_the_audited_folder_is_refused_however_the_url_names_it(linkable: Backend, tmp_path: Path) -> None:
    """An SFTP target equal to the audited destination was written into (its opened path has no user, host or port, so
    it matched no destination); a local one spelled file:/<path> emptied a backup file."""
    from auditor.ledger import FileState, WindowState
    from auditor.restore import RestorePlan, Step, download

    key = "ds/exportTime=202611270300/part-0.parquet"
    linkable.put(key, parquet_bytes(10))
    scheduled = datetime(2026, 11, 27, 3, tzinfo=UTC)
    store = open_store(linkable.url, linkable.options)
    [listed] = store.list()
    window = WindowState("e", "ds", scheduled, "ok", "ds/exportTime=202611270300", 1, listed.size, None, scheduled, 1)
    plan = RestorePlan("e", "d", "ds", scheduled, True, (Step(window, f"{linkable.url}/ds/exportTime=202611270300", (FileState(key, listed.url, listed.size, None, None),)),),
                       None, (), None, scheduled, None)
    before = linkable.digest()
    targets = [linkable.url, f"{linkable.url}/restored"]
    if linkable.name == "file":
        targets += [f"file:{linkable.write_root}", f"file:{linkable.write_root}/restored"]
    for target in targets:
        with pytest.raises(StorageError, match="never writes to the storage it audits"):
            download(plan, store, target, audited=[linkable.url])  # as the CLI calls it
    assert linkable.digest() == before
