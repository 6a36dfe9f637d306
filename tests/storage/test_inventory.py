"""An S3 Inventory report as the source of a scheduled full sweep, on the moto S3 server: the sweep reads the
report instead of listing the bucket, catches a file deleted from an old window (and breaks the restore chain
that needs it), lists what the report cannot speak for, and falls back to a listing, saying why, when the report
is stale, corrupt or of another bucket."""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor.audit import AuditOptions
from auditor.config import Settings, settings_from_mapping
from auditor.errors import ConfigError
from auditor.exporter import INVENTORY_SCHEMA, s3_inventory_report
from auditor.inventory import InventoryError, read_inventory
from auditor.restore import plan_restore
from auditor.runtime import Runtime
from auditor.storage import open_store
from tests import servers
from tests.storage.conftest import Backend, s3_backend, unique, window_objects

pytestmark = pytest.mark.s3

STEP = timedelta(hours=3)
WINDOWS = 48  # six days of 3-hourly windows
PARTS = 24  # 48 × (24 + 1) = 1,200 objects: a full listing is two pages, more than the open windows' prefixes


class Estate:
    """One dataset's six days of exports in an S3 bucket (seeded straight into moto), and an inventory bucket."""

    def __init__(self, moto: servers.Moto, tmp_path: Path) -> None:
        self.moto = moto
        self.backend: Backend = s3_backend(moto)
        self.bucket = self.backend.write_root.split("/", 1)[0]
        self.reports = unique("inventory")
        self.backend.writer.mkdir(self.reports)
        self.base = f"reports/{self.bucket}/daily"  # destination-prefix/source-bucket/config-ID
        written = datetime.now(UTC)  # S3 stamps objects with the time they were put: every window below has landed (late)
        self.first = written.replace(hour=written.hour - written.hour % 3, minute=0, second=0, microsecond=0) - WINDOWS * STEP
        self.slots = [self.first + i * STEP for i in range(WINDOWS)]
        objects = {f"exports/{key}": data for key, data in window_objects(self.slots, PARTS, f"{self.bucket}/exports").items()}
        moto.seed(self.bucket, objects)
        self.now = datetime.now(UTC) + timedelta(minutes=1)  # the simulated clock starts after the last put
        self.settings = self._settings(tmp_path)

    def _settings(self, tmp_path: Path, *, catalog: str | None = None, more_exports: tuple[dict[str, Any], ...] = (), **inventory: Any) -> Settings:
        destination = {
            "name": "d",
            "url": self.backend.url,
            "options": self.backend.options,
            "full_sweep_every": "1d",
            "listing_horizon": "12h",
            "inventory": {"url": f"s3://{self.reports}/{self.base}", **inventory},
        }
        schedule = {"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "hour", "interval": 3, "startTime": self.first.isoformat(), "endTime": (self.slots[-1] + STEP).isoformat()}
        export = {"name": "e", "destination": "d", "datasets": ["ds"], "format": "parquet", "manifest": True, "grace": "1h", "schedule": schedule}
        exports = [export, *({**export, **more} for more in more_exports)]
        catalog = catalog or f"sqlite:///{tmp_path / 'catalog.db'}"
        return settings_from_mapping({"catalog": {"url": catalog}, "validation": {"isolate": False}, "destinations": [destination], "exports": exports}, {})

    def window_files(self, slot: datetime) -> list[str]:
        return sorted(p for p in self.backend.writer.find(f"{self.backend.write_root}/ds/exportTime={slot:%Y%m%d%H%M}") if p.endswith(".parquet"))

    def write_report(
        self, as_of: datetime, *, rows: list[list[str]] | None = None, tamper: Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]] | None = None, file_format: str = "CSV",
    ) -> str:
        """An S3 Inventory report of the bucket as it is now (or of `rows`), filed under `as_of` as S3 files it."""
        if rows is None:
            rows = [
                [self.bucket, quote_plus(path.split("/", 1)[1], safe="/"), str(info["size"]), f"{info['LastModified']:%Y-%m-%dT%H:%M:%S.000Z}", info["ETag"].strip('"')]
                for path, info in sorted(self.backend.writer.find(self.bucket, detail=True).items())
            ]
        report = s3_inventory_report(self.bucket, self.reports, self.base, as_of, rows, tamper=tamper, file_format=file_format)
        for key, data in report.items():
            self.backend.writer.pipe_file(f"{self.reports}/{key}", data)
        return f"{self.reports}/{self.base}/{as_of:%Y-%m-%dT%H-%MZ}"


@pytest.fixture
def estate(moto: servers.Moto, tmp_path: Path) -> Estate:
    return Estate(moto, tmp_path)


class ListRequests:
    """LIST requests moto served on one bucket, from moto's own request recorder."""

    def __init__(self, folder: Path, bucket: str) -> None:
        from moto.moto_api import recorder

        self._recorder, self._file, self._bucket = recorder, folder / "requests.jsonl", bucket
        recorder._location = str(self._file)
        recorder.reset_recording()
        recorder.start_recording()

    def take(self) -> list[str]:
        """The prefix of each listing request on the bucket since the last call."""
        lines = [json.loads(line) for line in self._file.read_text().splitlines()] if self._file.exists() else []
        self._recorder.reset_recording()
        asked = [urlsplit(r["url"]) for r in lines if r["method"] == "GET" and f"/{self._bucket}" in r["url"]]
        return [parse_qs(url.query).get("prefix", [""])[0] for url in asked if "list-type=" in url.query]

    def stop(self) -> None:
        self._recorder.stop_recording()
        self._recorder.reset_recording()


def _listed_the_open_windows(listing: dict[str, Any]) -> None:
    """An audit between sweeps lists the windows that can still change, or the whole bucket where that costs no
    more requests (1,200 objects: 3; the open windows of an hour after midnight, with one that stays open because it
    is bad, can take 3 prefixes): never the inventory."""
    assert listing["source"] == "listing"
    assert listing["mode"] == "incremental" or "a full listing costs no more requests (3)" in listing["reason"], listing


def _statuses(report: Any) -> dict[datetime, str]:
    return {w.window.scheduled: w.status.value for e in report.exports for w in e.windows}


@pytest.mark.parametrize("file_format", ["CSV", "Parquet"])
def test_a_scheduled_sweep_reads_the_inventory_catches_a_deleted_file_and_breaks_the_restore_chain(estate: Estate, tmp_path: Path, file_format: str) -> None:
    requests = ListRequests(tmp_path, estate.bucket)
    try:
        with Runtime(estate.settings) as runtime:
            first = runtime.audit(now=estate.now)
            assert first is not None and first.method["listing"]["d"]["source"] == "listing"  # no sweep yet: a listing
            assert set(_statuses(first).values()) == {"late"}
            assert requests.take() == ["exports/", "exports/"]  # 1,200 objects: the root listed in two pages

            # a file of an old, settled window goes; S3's next daily report (its scan an hour later) no longer lists it
            doomed = estate.slots[5]
            estate.backend.writer.rm_file(estate.window_files(doomed)[0])
            report_time = (estate.now + timedelta(hours=2)).replace(second=0, microsecond=0)  # files written an hour before a scan may be missing from it
            estate.write_report(report_time, file_format=file_format)

            # between sweeps nothing is listed but the open windows, and the old window is taken as it was
            second = runtime.audit(now=estate.now + timedelta(hours=6))
            assert second is not None and second.method["listing"]["d"]["mode"] == "incremental"
            assert _statuses(second)[doomed] == "late"
            requests.take()

            # a day after the last sweep, the sweep comes from the report: the deleted file is caught
            at = estate.now + timedelta(days=1, hours=1)
            swept = runtime.audit(now=at)
            assert swept is not None
            listing = swept.method["listing"]["d"]
            assert (listing["mode"], listing["source"]) == ("full", "inventory")
            assert listing["inventory_as_of"] == f"{report_time:%Y-%m-%dT%H:%M:%SZ}" and "from the inventory of" in listing["reason"]
            statuses = _statuses(swept)
            assert statuses[doomed] == "invalid"  # its manifest lists a file that is gone
            assert {s for slot, s in statuses.items() if slot != doomed} == {"late"}
            assert swept.assurance.read_files == 0  # every other file unchanged: nothing read again
            # the destination's root is not listed: only the days of the windows not settled when the report's scan began
            by_day: dict[str, list[datetime]] = {}
            for slot in estate.slots:
                if slot + timedelta(hours=13) > report_time:  # grace 1 h + horizon 12 h: not settled by the scan
                    by_day.setdefault(f"{slot:%Y%m%d}", []).append(slot)
            open_prefixes = {f"exports/ds/exportTime={day if len(slots) > 1 else f'{slots[0]:%Y%m%d%H%M}'}" for day, slots in by_day.items()}
            assert sorted(set(requests.take())) == sorted(open_prefixes)
            restore = plan_restore(estate.settings, runtime.catalog, "ds", estate.slots[-1])
            assert not restore.complete and restore.broken is not None and restore.broken.scheduled == doomed
            assert runtime.catalog.destinations()[0].last_full_sweep == at

            # the same verdicts as a live listing of the bucket
            live = runtime.audit(now=at + timedelta(minutes=5), options=AuditOptions(full_sweep=True))
            assert live is not None and live.method["listing"]["d"]["source"] == "listing"
            assert _statuses(live) == statuses
    finally:
        requests.stop()


def test_a_file_newer_than_the_report_keeps_the_catalogs_record(estate: Estate) -> None:
    """A report whose scan began before the files were written lists none of them: the sweep lists the windows
    that were not settled by then, takes the settled windows' files from the catalog (the report cannot speak for
    them), declares nothing gone, and still brings in what the report does list."""
    with Runtime(estate.settings) as runtime:
        assert runtime.audit(now=estate.now) is not None
        scan = (estate.now - timedelta(minutes=15)).replace(second=0, microsecond=0)  # before the last put
        stray = "exports/ds/exportTime=190001010000/stray.gz.parquet"
        estate.write_report(scan, rows=[[estate.bucket, stray, "7", f"{scan:%Y-%m-%dT%H:%M:%S.000Z}", "abc"]])
        swept = runtime.audit(now=estate.now + timedelta(days=1, hours=1))
        assert swept is not None
    listing = swept.method["listing"]["d"]
    assert (listing["mode"], listing["source"]) == ("full", "inventory"), listing["reason"]
    assert listing["prefixes"] >= 1  # the windows not settled when the report's scan began: listed
    assert set(_statuses(swept).values()) == {"late"}  # nothing declared gone
    assert [u.path.rsplit("/", 1)[1] for u in swept.unexpected] == ["exportTime=190001010000"], [(u.path[-26:], u.reason) for u in swept.unexpected]  # the row the report lists


CORRUPTIONS: dict[str, tuple[Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]], str]] = {
    "md5": (lambda m, d: ({**m, "files": [{**m["files"][0], "MD5checksum": "0" * 32}]}, d), "does not match its MD5"),
    "size": (lambda m, d: ({**m, "files": [{**m["files"][0], "size": m["files"][0]["size"] - 1}]}, d), "longer than the manifest says"),
    "not gzip": (lambda m, d: ({**m, "files": [{**m["files"][0], "size": 9, "MD5checksum": hashlib.md5(b"not gzip!").hexdigest()}]}, b"not gzip!"), "cannot be read"),
    "truncated": (
        lambda m, d: ({**m, "files": [{**m["files"][0], "size": len(d) // 2, "MD5checksum": hashlib.md5(d[: len(d) // 2]).hexdigest()}]}, d[: len(d) // 2]),
        "cannot be read",
    ),
    "orc": (lambda m, d: ({**m, "fileFormat": "ORC"}, d), "reads CSV and Parquet inventories"),
    "no key column": (lambda m, d: ({**m, "fileSchema": "Bucket, Size, LastModifiedDate"}, d), "no Key column"),
    "other bucket": (lambda m, d: ({**m, "sourceBucket": "someone-else"}, d), "not of the destination's bucket"),
    "wrong width": (lambda m, d: ({**m, "fileSchema": INVENTORY_SCHEMA + ", StorageClass"}, d), "fields, the schema has 6"),
    "no files": (lambda m, d: ({**m, "files": []}, d), "lists no data files"),
    "a file twice": (lambda m, d: ({**m, "files": m["files"] * 2}, d), "lists a data file twice"),  # memory: one file read N times
    "file elsewhere": (lambda m, d: ({**m, "files": [{**m["files"][0], "key": "elsewhere/x.csv.gz"}]}, d), "not under the report's folder"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_or_foreign_report_is_refused_with_its_reason(estate: Estate, corruption: str) -> None:
    tamper, reason = CORRUPTIONS[corruption]
    estate.write_report(estate.now.replace(second=0, microsecond=0), tamper=tamper)
    destination = estate.settings.destinations[0]
    with pytest.raises(InventoryError, match=reason):
        read_inventory(destination, open_store(destination.url, destination.options), estate.now)


def test_hostile_rows_are_refused_not_crashed_on(estate: Estate) -> None:
    destination = estate.settings.destinations[0]
    store = open_store(destination.url, destination.options)
    when = estate.now.replace(second=0, microsecond=0)
    for rows, reason in (
        ([[estate.bucket, "exports/a", "-5", "2026-01-01T00:00:00.000Z", "e"]], "not a number of bytes"),
        ([[estate.bucket, "exports/a", " 1_000 ", "2026-01-01T00:00:00.000Z", "e"]], "not a number of bytes"),  # int() would take it
        ([[estate.bucket, "exports/a", "\u0661\u0662", "2026-01-01T00:00:00.000Z", "e"]], "not a number of bytes"),  # Arabic-Indic digits
        ([[estate.bucket, "exports/a", "many", "2026-01-01T00:00:00.000Z", "e"]], "line 1"),
        ([[estate.bucket, "exports/a", "9" * 30, "2026-01-01T00:00:00.000Z", "e"]], "not a number of bytes an object can have"),
        ([[estate.bucket, "exports/a", "1", "2099-01-01T00:00:00.000Z", "e"]], "later than the report can know of"),  # would hide the file
        ([[estate.bucket, "exports/a", "1", "yesterday", "e"]], "line 1"),
        ([[estate.bucket, "exports/a", "1", "0001-01-01T00:00:00+14:00", "e"]], "line 1"),  # before year 1 in UTC: OverflowError
        ([[estate.bucket, "exports/a", "1", "2026-01-01T00:00:00", "e"]], "no time zone"),  # not read as the machine's local time
        ([["another-bucket", "exports/a", "1", "2026-01-01T00:00:00.000Z", "e"]], "names bucket"),
        ([[estate.bucket, "".join(random.Random(7).choices("abcdefghij/", k=200_000)), "1", "2026-01-01T00:00:00.000Z", "e"]], "cannot be read"),  # past csv's field limit
        ([[estate.bucket, "x" * 3_000_000, "1", "2026-01-01T00:00:00.000Z", "e"]], "line longer than"),  # one endless line
        ([[estate.bucket, "exports/a", "1", "2026-01-01T00:00:00.000Z", "e"]] * 300_000, "expands to more than"),  # a bomb of rows
    ):
        estate.write_report(when, rows=rows)
        with pytest.raises(InventoryError, match=reason):
            read_inventory(destination, store, estate.now)
    # a checksum file that does not match its manifest
    folder = estate.write_report(when)
    estate.backend.writer.pipe_file(f"{folder}/manifest.checksum", b"0" * 32)
    with pytest.raises(InventoryError, match="does not match its manifest.checksum"):
        read_inventory(destination, store, estate.now)


def test_a_stale_or_broken_report_falls_back_to_a_listing_and_says_why(estate: Estate, tmp_path: Path) -> None:
    with Runtime(estate.settings) as runtime:
        assert runtime.audit(now=estate.now) is not None
        estate.write_report((estate.now - timedelta(days=3)).replace(second=0, microsecond=0))  # older than max_age (2d)
        stale = runtime.audit(now=estate.now + timedelta(days=1, hours=1))
        assert stale is not None
        listing = stale.method["listing"]["d"]
        assert (listing["mode"], listing["source"]) == ("full", "listing") and "older than max_age" in listing["reason"]
        assert stale.errors == ()  # the audit itself is complete: the listing stood in
        estate.write_report((estate.now + timedelta(days=2)).replace(second=0, microsecond=0), tamper=CORRUPTIONS["not gzip"][0])
        broken = runtime.audit(now=estate.now + timedelta(days=2, hours=2))
        assert broken is not None
        listing = broken.method["listing"]["d"]
        assert listing["source"] == "listing" and "the inventory could not be used" in listing["reason"] and "cannot be read" in listing["reason"]
        assert set(_statuses(broken).values()) == {"late"}


def test_an_inventory_is_for_an_s3_destination_and_lives_in_s3() -> None:
    base = {"catalog": {"url": "sqlite://"}, "exports": []}
    with pytest.raises(ConfigError, match="only an s3:// or Azure"):
        settings_from_mapping({**base, "destinations": [{"name": "d", "url": "gs://b/x", "inventory": {"url": "s3://r/p"}}]}, {})
    with pytest.raises(ConfigError, match="an S3 Inventory lives in an S3 bucket"):
        settings_from_mapping({**base, "destinations": [{"name": "d", "url": "s3://b/x", "inventory": {"url": "gs://r/p"}}]}, {})


def test_a_versioned_report_gives_only_the_current_objects_of_the_destination(estate: Estate) -> None:
    destination = estate.settings.destinations[0]
    when = estate.now.replace(second=0, microsecond=0)
    stamp = "2026-11-30T10:00:00.000Z"
    b = estate.bucket
    rows = [
        [b, "exports/ds/a+b%2Bc.gz.parquet", "v1", "true", "false", "10", stamp, "e1"],  # URL-encoded: "a b+c"
        [b, "exports/ds/old.gz.parquet", "v1", "false", "false", "11", stamp, "e2"],  # an older version
        [b, "exports/ds/gone.gz.parquet", "v2", "true", "true", "0", stamp, ""],  # deleted: its latest version is a marker
        [b, "elsewhere/x.gz.parquet", "v1", "true", "false", "12", stamp, "e3"],  # outside the destination's folder
        [b, "exports", "v1", "true", "false", "13", stamp, "e4"],  # the folder's own name is not below it
        [b, "exports/ds/", "v1", "true", "false", "0", stamp, "e5"],  # a folder placeholder: an object "ds", as a listing gives it
    ]
    estate.write_report(when, rows=rows, tamper=lambda m, d: ({**m, "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag"}, d))
    inventory = read_inventory(destination, open_store(destination.url, destination.options), estate.now)
    assert [(o.key, o.size, o.etag) for o in inventory.objects] == [("ds/a b+c.gz.parquet", 10, "e1"), ("ds", 0, "e5")]
    assert inventory.objects[0].url == f"{destination.url}/ds/a b+c.gz.parquet" and inventory.rows == 4  # current objects: the bucket's others counted too
    assert inventory.as_of == when and inventory.objects[0].modified == datetime(2026, 11, 30, 10, tzinfo=UTC)


def test_a_report_folder_that_is_no_date_or_in_the_future_is_not_the_newest_report(estate: Estate) -> None:
    destination = estate.settings.destinations[0]
    real = estate.now.replace(second=0, microsecond=0) - timedelta(hours=2)
    estate.write_report(real)
    writer, base = estate.backend.writer, f"{estate.reports}/{estate.base}"
    for folder in ("2099-01-01T00-00Z", "2026-13-01T00-00Z", "\uff12\uff10\uff12\uff16-01-01T00-00Z"):  # the future, no date, full-width digits
        writer.pipe_file(f"{base}/{folder}/manifest.json", b"{}")
    inventory = read_inventory(destination, open_store(destination.url, destination.options), estate.now)
    assert inventory.as_of == real and len(inventory.objects) == WINDOWS * (PARTS + 1)


def test_a_window_repaired_after_the_report_keeps_its_repair(estate: Estate) -> None:
    """A window is bad when the report's scan runs; then its producer replaces the bad part under a new name and an
    audit sees the repair (the old part gone, the window late). The sweep from the older report brings back neither
    the old part (a later audit found it gone) nor drops the new one (newer than the report): the live verdicts."""
    window = estate.slots[5]
    writer = estate.backend.writer
    bad = estate.window_files(window)[0]
    good = writer.cat_file(bad)
    writer.pipe_file(bad, b"garbage, not parquet")
    with Runtime(estate.settings) as runtime:
        first = runtime.audit(now=estate.now)
        assert first is not None and _statuses(first)[window] == "invalid"
        estate.write_report(datetime.now(UTC).replace(second=0, microsecond=0))  # lists the bad part
        folder, name = bad.rsplit("/", 1)
        writer.rm_file(bad)
        writer.pipe_file(f"{folder}/part-99999-repaired.gz.parquet", good)
        [manifest] = [p for p in writer.find(folder) if "/manifest-" in p]
        document = json.loads(writer.cat_file(manifest))
        for entry in document["exportResults"]:
            if entry["name"] == name:
                entry["name"] = "part-99999-repaired.gz.parquet"
        writer.pipe_file(manifest, json.dumps(document).encode())
        repaired = runtime.audit(now=estate.now + timedelta(hours=6))
        assert repaired is not None and _statuses(repaired)[window] == "late"
        _listed_the_open_windows(repaired.method["listing"]["d"])
        last = runtime.catalog.destinations()[0].last_full_sweep
        assert last is not None
        at = last + timedelta(days=1, hours=1)  # the next sweep is due: from the report
        swept = runtime.audit(now=at)
        assert swept is not None
        assert swept.method["listing"]["d"]["source"] == "inventory"
        assert swept.errors == () and _statuses(swept)[window] == "late"  # not unknown from re-reading a part that is gone
        live = runtime.audit(now=at, options=AuditOptions(full_sweep=True))
        assert live is not None and _statuses(live) == _statuses(swept)


def test_a_report_that_lists_nothing_the_catalog_knows_is_not_used(estate: Estate) -> None:
    """An empty report of a destination whose files the catalog knows would call every window missing: it is not
    used, the sweep lists the bucket, and every window stays as it is."""
    with Runtime(estate.settings) as runtime:
        assert runtime.audit(now=estate.now) is not None
        estate.write_report((estate.now + timedelta(hours=2)).replace(second=0, microsecond=0), rows=[])
        swept = runtime.audit(now=estate.now + timedelta(days=1, hours=3))
        assert swept is not None
    listing = swept.method["listing"]["d"]
    assert listing["source"] == "listing" and "lists none of the" in listing["reason"]
    assert set(_statuses(swept).values()) == {"late"}


def test_a_refused_report_never_shows_the_destinations_credentials(estate: Estate) -> None:
    destination = estate.settings.destinations[0].model_copy(update={"url": estate.backend.url.replace("s3://", "s3://AKIAEXAMPLE:TOPSECRET123@")})
    estate.write_report(estate.now.replace(second=0, microsecond=0), tamper=CORRUPTIONS["other bucket"][0])
    with pytest.raises(InventoryError) as refused:
        read_inventory(destination, open_store(estate.backend.url, estate.backend.options), estate.now)
    assert "TOPSECRET123" not in str(refused.value) and "AKIAEXAMPLE" not in str(refused.value)


def _audit_in_a_process(settings: Settings, now: datetime, only: frozenset[str] | None) -> dict[str, Any]:
    """One audit in a process of its own (spawned: its own engine, fsspec instances and caches), as a restarted
    service or a second replica runs it; what the test reads of its report."""
    with Runtime(settings) as runtime:
        report = runtime.audit(now=now, options=AuditOptions(only_exports=only))
        assert report is not None
        last = {d.name: d.last_full_sweep for d in runtime.catalog.destinations()}
    return {
        "statuses": {(w.window.export, w.window.scheduled): w.status.value for e in report.exports for w in e.windows},
        "listing": report.method["listing"]["d"],
        "errors": [e.message for e in report.errors],
        "last_full_sweep": last["d"],
    }


@pytest.mark.postgres
def test_sweeps_from_the_inventory_over_time_in_separate_processes_on_postgresql_with_a_partial_scope(estate: Estate, postgres_url: str, tmp_path: Path) -> None:
    """Two exports of the dataset on one destination, a PostgreSQL catalog, every audit in a process of its own. An
    audit of one export sweeps from the report when the sweep is due and catches the deleted file for that export,
    but is no sweep of the destination (the other export's windows were not judged), so the next process's audit of
    both sweeps again, from the report, and records it; the one after that lists only the open windows and still
    finds the file gone. The restore chain breaks where the file went."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from auditor.catalog.engine import make_engine, upgrade

    settings = estate._settings(tmp_path, catalog=postgres_url, more_exports=({"name": "f", "manifest": False},))
    engine = make_engine(postgres_url)
    upgrade(engine)  # what `auditor db upgrade` runs: a shared catalog is upgraded on purpose
    engine.dispose()
    doomed = estate.slots[5]
    every = {(name, slot) for name in ("e", "f") for slot in estate.slots}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as processes:

        def audit(now: datetime, only: frozenset[str] | None = None) -> dict[str, Any]:
            return processes.submit(_audit_in_a_process, settings, now, only).result(timeout=120)

        first = audit(estate.now)
        assert first["listing"]["source"] == "listing" and set(first["statuses"].values()) == {"late"} and first["last_full_sweep"] == estate.now
        estate.backend.writer.rm_file(estate.window_files(doomed)[0])
        # the report a day later, when every window but the bad one (and the one after it, whose schema drift is
        # measured against it) is settled: the windows still open are the same at any time of day, so listing
        # them always costs less than the whole bucket and the sweep always comes from the report
        report_time = (estate.now + timedelta(days=1, hours=1)).replace(second=0, microsecond=0)
        estate.write_report(report_time)

        # then an audit of export e alone: the sweep is due, and comes from the report
        partial_at = report_time + timedelta(hours=1)
        partial = audit(partial_at, frozenset({"e"}))
        assert (partial["listing"]["mode"], partial["listing"]["source"]) == ("full", "inventory") and partial["errors"] == []
        assert {key for key, status in partial["statuses"].items() if status != "late"} == {("e", doomed)}
        assert partial["statuses"][("e", doomed)] == "invalid" and {name for name, _slot in partial["statuses"]} == {"e"}
        assert partial["last_full_sweep"] == estate.now  # export f's windows were not judged: no sweep of the destination

        # the next process audits both: still due, from the report again; f's window is caught too, and the sweep recorded
        whole_at = partial_at + timedelta(hours=1)
        whole = audit(whole_at)
        assert (whole["listing"]["mode"], whole["listing"]["source"]) == ("full", "inventory") and whole["errors"] == []
        assert set(whole["statuses"]) == every
        assert {key for key, status in whole["statuses"].items() if status != "late"} == {("e", doomed), ("f", doomed)}
        assert whole["statuses"][("f", doomed)] == "invalid" and whole["last_full_sweep"] == whole_at

        # then only the open windows are listed, and the window that lost a file is no settled good window to carry
        after_at = whole_at + timedelta(hours=3)
        after = audit(after_at)
        _listed_the_open_windows(after["listing"])
        assert after["last_full_sweep"] == (whole_at if after["listing"]["mode"] == "incremental" else after_at)
        assert {key for key, status in after["statuses"].items() if status != "late"} == {("e", doomed), ("f", doomed)}
    with Runtime(settings) as runtime:
        restore = plan_restore(settings, runtime.catalog, "ds", estate.slots[-1], export="e")
    assert not restore.complete and restore.broken is not None and restore.broken.scheduled == doomed


def test_a_versioned_parquet_report_gives_only_the_current_objects_and_keys_as_they_are(estate: Estate) -> None:
    """S3 writes a Parquet report's keys as they are (only CSV URL-encodes them), its flags as booleans and its times
    as timestamps; its data file is checked against the manifest's MD5 and decoded in a worker before it is read."""
    from auditor.validate.sandbox import Sandbox

    destination = estate.settings.destinations[0]
    when = estate.now.replace(second=0, microsecond=0)
    stamp = "2026-11-30T10:00:00+00:00"
    b = estate.bucket
    rows = [
        [b, "exports/ds/a+b%2Bc.gz.parquet", "v1", "true", "false", "10", stamp, "e1"],  # written decoded: "a b+c"
        [b, "exports/ds/old.gz.parquet", "v1", "false", "false", "11", stamp, "e2"],  # an older version
        [b, "exports/ds/gone.gz.parquet", "v2", "true", "true", "0", stamp, ""],  # deleted: its latest version is a marker
        [b, "elsewhere/x.gz.parquet", "v1", "true", "false", "12", stamp, "e3"],  # outside the destination's folder
    ]
    schema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag"
    report = s3_inventory_report(estate.bucket, estate.reports, estate.base, when, rows, schema=schema, file_format="Parquet")
    for key, data in report.items():
        estate.backend.writer.pipe_file(f"{estate.reports}/{key}", data)
    with Sandbox(workers=1) as sandbox:
        inventory = read_inventory(destination, open_store(destination.url, destination.options), estate.now, sandbox)
    assert [(o.key, o.size, o.etag, o.modified) for o in inventory.objects] == [("ds/a b+c.gz.parquet", 10, "e1", datetime(2026, 11, 30, 10, tzinfo=UTC))]
    assert inventory.rows == 2  # current objects: the bucket's others counted too
    tampered = s3_inventory_report(estate.bucket, estate.reports, estate.base, when, rows, schema=schema, file_format="Parquet",
                                   tamper=lambda m, d: ({**m, "files": [{**m["files"][0], "MD5checksum": "0" * 32}]}, d))
    for key, data in tampered.items():
        estate.backend.writer.pipe_file(f"{estate.reports}/{key}", data)
    with pytest.raises(InventoryError, match="does not match its MD5"):
        read_inventory(destination, open_store(destination.url, destination.options), estate.now)
    without_key = s3_inventory_report(estate.bucket, estate.reports, estate.base, when, [[r[0], *r[2:]] for r in rows],
                                      schema="Bucket, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag", file_format="Parquet")
    for key, data in without_key.items():
        estate.backend.writer.pipe_file(f"{estate.reports}/{key}", data)
    with pytest.raises(InventoryError, match="has no key column"):
        read_inventory(destination, open_store(destination.url, destination.options), estate.now)


def _parquet_report(estate: Estate, when: datetime, table: pa.Table, schema: str) -> None:
    """An S3 Parquet report of `table` as its data file (its columns as they are: flags as text, say)."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    data = sink.getvalue()

    def own_data(m: dict[str, Any], _d: bytes) -> tuple[dict[str, Any], bytes]:
        return {**m, "files": [{**m["files"][0], "size": len(data), "MD5checksum": hashlib.md5(data, usedforsecurity=False).hexdigest()}]}, data

    report = s3_inventory_report(estate.bucket, estate.reports, estate.base, when, [], schema=schema, file_format="Parquet", tamper=own_data)
    for key, blob in report.items():
        estate.backend.writer.pipe_file(f"{estate.reports}/{key}", blob)


def test_flags_read_as_text_or_booleans_and_anything_else_refuses_the_report(estate: Estate) -> None:
    """IsLatest and IsDeleteMarker as text in a Parquet report mean what they say (read as "any value is true", an old
    version and a deletion marker passed for a deleted file); a flag that is neither true nor false refuses the report."""
    destination = estate.settings.destinations[0]
    store = open_store(destination.url, destination.options)
    when = estate.now.replace(second=0, microsecond=0)
    stamp = datetime(2026, 11, 30, 10, tzinfo=UTC)
    keys = ["exports/ds/kept.gz.parquet", "exports/ds/old.gz.parquet", "exports/ds/gone.gz.parquet"]
    schema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag"

    def table(latest: list[str], marker: list[str]) -> pa.Table:
        return pa.table({"bucket": [estate.bucket] * 3, "key": keys, "version_id": ["v1", "v1", "v2"], "is_latest": latest, "is_delete_marker": marker,
                         "size": pa.array([10, 11, 0], pa.int64()), "last_modified_date": pa.array([stamp] * 3, pa.timestamp("ms", tz="UTC")), "e_tag": ["e1", "e2", ""]})

    _parquet_report(estate, when, table(["true", "FALSE", "true"], ["false", "false", "True"]), schema)
    assert [o.key for o in read_inventory(destination, store, estate.now).objects] == ["ds/kept.gz.parquet"]
    for latest, marker in ((["true", "maybe", "true"], ["false", "false", "true"]), (["true", "false", "true"], ["false", "", "true"])):
        _parquet_report(estate, when, table(latest, marker), schema)
        with pytest.raises(InventoryError, match="neither true nor false"):
            read_inventory(destination, store, estate.now)
    b = estate.bucket
    for flags in (["yes", "false"], ["true", ""]):
        estate.write_report(when, rows=[[b, keys[0], "v1", *flags, "10", "2026-11-30T10:00:00.000Z", "e1"]], tamper=lambda m, d: ({**m, "fileSchema": schema}, d))
        with pytest.raises(InventoryError, match="neither true nor false"):
            read_inventory(destination, store, estate.now)


def test_a_report_of_every_version_without_its_flags_is_refused(estate: Estate) -> None:
    """Versions without IsLatest and IsDeleteMarker cannot be told from current objects: an old version would stand for a deleted file."""
    destination = estate.settings.destinations[0]
    store = open_store(destination.url, destination.options)
    when = estate.now.replace(second=0, microsecond=0)
    row = [estate.bucket, "exports/ds/a.gz.parquet", "v1", "10", "2026-11-30T10:00:00.000Z", "e1"]
    estate.write_report(when, rows=[row], tamper=lambda m, d: ({**m, "fileSchema": "Bucket, Key, VersionId, Size, LastModifiedDate, ETag"}, d))
    with pytest.raises(InventoryError, match="no IsLatest, IsDeleteMarker column"):
        read_inventory(destination, store, estate.now)
    stamp = datetime(2026, 11, 30, 10, tzinfo=UTC)
    table = pa.table({"bucket": [estate.bucket], "key": [row[1]], "version_id": ["v1"], "is_latest": [True], "size": pa.array([10], pa.int64()),
                      "last_modified_date": pa.array([stamp], pa.timestamp("ms", tz="UTC")), "e_tag": ["e1"]})
    _parquet_report(estate, when, table, "Bucket, Key, VersionId, IsLatest, Size, LastModifiedDate, ETag")
    with pytest.raises(InventoryError, match="without is_latest and is_delete_marker"):
        read_inventory(destination, store, estate.now)


def test_an_object_listed_twice_is_held_once_and_refuses_the_report_if_the_rows_disagree(estate: Estate) -> None:
    """Taking the first of two rows that disagree hid an overwritten file; a report repeating one row a million times
    (a few hundred kB gzipped) was a million objects in memory."""
    destination = estate.settings.destinations[0]
    store = open_store(destination.url, destination.options)
    when = estate.now.replace(second=0, microsecond=0)
    row = [estate.bucket, "exports/ds/a.gz.parquet", "10", "2026-11-30T10:00:00.000Z", "e1"]
    noise = random.Random(3)  # rows of other folders between the repeats, for the report to compress as real ones do
    rows = [r for i in range(20_000) for r in (row, [estate.bucket, f"elsewhere/{noise.getrandbits(64):x}", "1", row[3], f"{i}"])]
    estate.write_report(when, rows=rows)
    inventory = read_inventory(destination, store, estate.now)
    assert [(o.key, o.size) for o in inventory.objects] == [("ds/a.gz.parquet", 10)] and inventory.rows == 40_000
    estate.write_report(when, rows=[row, [*row[:2], "11", *row[3:]]])
    with pytest.raises(InventoryError, match="as current twice"):
        read_inventory(destination, store, estate.now)
