"""An Azure blob inventory run as the source of a scheduled full sweep, on Azurite: the sweep reads the newest
complete run of the configured rule instead of listing the container, catches a blob deleted from an old window
(and breaks the restore chain that needs it), and refuses a run that cannot speak for the destination (another
rule, container or account, a rule whose filters leave blobs out, Parquet, a failed or unfinished run, bad bytes),
saying why, so the audit lists the container instead."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from auditor.audit import AuditOptions
from auditor.config import Settings, settings_from_mapping
from auditor.errors import ConfigError
from auditor.exporter import azure_inventory_report
from auditor.inventory import InventoryError, read_inventory
from auditor.restore import plan_restore
from auditor.runtime import Runtime
from auditor.storage import open_store
from tests.storage.conftest import Backend, azure_backend, unique, window_objects

pytestmark = pytest.mark.azure

STEP = timedelta(hours=3)
WINDOWS = 24  # three days of 3-hourly windows
PARTS = 4
RULE = "aep-backups"


class Estate:
    """One dataset's three days of exports in an Azurite container, and an inventory container in the same account."""

    def __init__(self, endpoint: str, tmp_path: Path) -> None:
        self.endpoint = endpoint
        self.backend: Backend = azure_backend(endpoint, "az")
        self.container = self.backend.write_root.split("/", 1)[0]
        self.reports = unique("inventory")
        self.backend.writer.mkdir(self.reports)
        written = datetime.now(UTC)  # Azure stamps blobs with the time they were put: every window below has landed (late)
        self.first = written.replace(hour=written.hour - written.hour % 3, minute=0, second=0, microsecond=0) - WINDOWS * STEP
        self.slots = [self.first + i * STEP for i in range(WINDOWS)]
        for key, data in window_objects(self.slots, PARTS, f"{self.container}/exports").items():
            self.backend.put(key, data)
        self.now = datetime.now(UTC) + timedelta(minutes=1)  # the simulated clock starts after the last put
        self.settings = self._settings(tmp_path)
        self.fields = ["Name", "Creation-Time", "Last-Modified", "Etag", "Content-Length", "BlobType"]  # what rows() gives

    def _settings(self, tmp_path: Path, **inventory: Any) -> Settings:
        destination = {
            "name": "d",
            "url": self.backend.url,
            "options": self.backend.options,
            "full_sweep_every": "1d",
            "listing_horizon": "12h",
            "inventory": {"url": f"az://{self.reports}", "rule": RULE, **inventory},
        }
        schedule = {"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "hour", "interval": 3, "startTime": self.first.isoformat(), "endTime": (self.slots[-1] + STEP).isoformat()}
        export = {"name": "e", "destination": "d", "datasets": ["ds"], "format": "parquet", "manifest": True, "grace": "1h", "schedule": schedule}
        return settings_from_mapping({"catalog": {"url": f"sqlite:///{tmp_path / 'catalog.db'}"}, "validation": {"isolate": False}, "destinations": [destination], "exports": [export]}, {})

    def window_files(self, slot: datetime) -> list[str]:
        return sorted(p for p in self.backend.writer.find(f"{self.backend.write_root}/ds/exportTime={slot:%Y%m%d%H%M}") if p.endswith(".parquet"))

    def rows(self) -> list[list[str]]:
        """The account's blobs as a run lists them now (Name as container/path, times in ISO 8601 with 7 digits)."""
        found = self.backend.writer.find(self.container, detail=True)
        return [
            [path, f"{info['creation_time']:%Y-%m-%dT%H:%M:%S.%f}0Z", f"{info['last_modified']:%Y-%m-%dT%H:%M:%S.%f}0Z", str(info["etag"]), str(info["size"]), "BlockBlob"]
            for path, info in sorted(found.items())
        ]

    def write_run(self, started: datetime, *, rows: list[list[str]] | None = None, complete: bool = True, endpoint: str | None = None, **kwargs: Any) -> str:
        """A run of the rule begun at `started`, of the container as it is now (or of `rows`), filed as Azure files it;
        without `complete` its checksum file, written last, is not there yet."""
        report = azure_inventory_report(endpoint or self.endpoint, self.reports, RULE, started, self.rows() if rows is None else rows, **kwargs)
        for key, data in report.items():
            if complete or not key.endswith(".checksum"):
                self.backend.writer.pipe_file(f"{self.reports}/{key}", data)
        return f"{self.reports}/{started:%Y/%m/%d/%H-%M-%S}/{RULE}"


@pytest.fixture
def estate(azurite: str, tmp_path: Path) -> Estate:
    return Estate(azurite, tmp_path)


def _statuses(report: Any) -> dict[datetime, str]:
    return {w.window.scheduled: w.status.value for e in report.exports for w in e.windows}


def _read(estate: Estate) -> Any:
    destination = estate.settings.destinations[0]
    return read_inventory(destination, open_store(destination.url, destination.options), estate.now + timedelta(hours=3))


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_a_scheduled_sweep_reads_the_run_catches_a_deleted_blob_and_breaks_the_restore_chain(estate: Estate, file_format: str) -> None:
    with Runtime(estate.settings) as runtime:
        first = runtime.audit(now=estate.now)
        assert first is not None and first.method["listing"]["d"]["source"] == "listing"  # no sweep yet: a listing
        assert set(_statuses(first).values()) == {"late"}

        # a blob of an old, settled window goes; the next daily run (begun an hour later) no longer lists it
        doomed = estate.slots[5]
        estate.backend.writer.rm_file(estate.window_files(doomed)[0])
        run_time = (estate.now + timedelta(hours=2)).replace(microsecond=0)
        estate.write_run(run_time, file_format=file_format)
        estate.write_run(run_time + timedelta(hours=20), rows=[], complete=False)  # the next run, still going: not read

        at = estate.now + timedelta(days=1, hours=1)  # a day after the last sweep: the sweep comes from the run
        swept = runtime.audit(now=at)
        assert swept is not None
        listing = swept.method["listing"]["d"]
        assert (listing["mode"], listing["source"]) == ("full", "inventory"), listing["reason"]
        assert listing["inventory_as_of"] == f"{run_time:%Y-%m-%dT%H:%M:%SZ}"
        statuses = _statuses(swept)
        assert statuses[doomed] == "invalid"  # its manifest lists a blob that is gone
        assert {s for slot, s in statuses.items() if slot != doomed} == {"late"}
        assert swept.assurance.read_files == 0  # every other blob unchanged (size, ETag, time to the second): nothing read again
        restore = plan_restore(estate.settings, runtime.catalog, "ds", estate.slots[-1])
        assert not restore.complete and restore.broken is not None and restore.broken.scheduled == doomed

        live = runtime.audit(now=at + timedelta(minutes=5), options=AuditOptions(full_sweep=True))  # the same verdicts as a listing
        assert live is not None and live.method["listing"]["d"]["source"] == "listing"
        assert _statuses(live) == statuses


def _definition(**changes: Any) -> Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]:
    return lambda m, d: ({**m, "ruleDefinition": {**m["ruleDefinition"], **changes}}, d)


def _filters(**changes: Any) -> Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]:
    return lambda m, d: ({**m, "ruleDefinition": {**m["ruleDefinition"], "filters": {**m["ruleDefinition"]["filters"], **changes}}}, d)


Tamper = Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]
REFUSALS: dict[str, tuple[Tamper | None, str]] = {
    "failed": (lambda m, d: ({**m, "status": "Failed"}, d), "status is 'Failed'"),
    "pending": (lambda m, d: ({**m, "status": "Pending"}, d), "status is 'Pending'"),
    "other rule": (lambda m, d: ({**m, "ruleName": "someone-elses"}, d), "not of rule"),
    "other container": (lambda m, d: ({**m, "destinationContainer": "elsewhere"}, d), "not of rule"),
    "other account": (lambda m, d: ({**m, "endpoint": "https://otheraccount.blob.core.windows.net"}, d), "not of the destination's"),
    "no endpoint": (lambda m, d: ({k: v for k, v in m.items() if k != "endpoint"}, d), "names no endpoint"),
    "orc": (_definition(format="orc"), "reads CSV and Parquet inventories"),
    "csv called parquet": (_definition(format="parquet"), "not sound Parquet"),
    "containers": (_definition(objectType="container"), "not blobs"),
    "prefix elsewhere": (_filters(prefixMatch=["another-container/"]), "does not cover the destination's folder"),
    "prefix excluded": (None, "leaves out blobs of the destination's folder"),  # excludePrefix names the source container: set in the test
    "no block blobs": (_filters(blobTypes=["appendBlob"]), "leave out block blobs"),
    "no size": (_definition(schemaFields=["Name", "Last-Modified"]), "no Content-Length"),
    "versions unmarked": (_filters(includeBlobVersions=True), "no IsCurrentVersion"),
    "created lately": (_filters(creationTime={"lastNDays": 1}), "filters by creationTime"),  # a run of the last day's blobs only
    "unknown filter": (_filters(lastAccessTime={"lastNDays": 7}), "filters by lastAccessTime"),  # a filter Azure may add one day
    "header": (lambda m, d: (m, b"Name,Size\n" + d.split(b"\n", 1)[1]), "first row"),
    "size": (lambda m, d: ({**m, "files": [{**m["files"][0], "size": m["files"][0]["size"] - 1}]}, d), "longer than the manifest says"),
    "no files": (lambda m, d: ({**m, "files": []}, d), "lists no data files"),
    "a file twice": (lambda m, d: ({**m, "files": m["files"] * 2}, d), "lists a data file twice"),
    "file elsewhere": (lambda m, d: ({**m, "files": [{**m["files"][0], "blob": "2020/01/01/00-00-00/x/x.csv"}]}, d), "not in the run's folder"),
    "file climbs out": (lambda m, d: ({**m, "files": [{**m["files"][0], "blob": m["files"][0]["blob"].rsplit("/", 1)[0] + "/../../x.csv"}]}, d), "not in the run's folder"),
    "not utf-8": (lambda m, d: ({**m, "files": [{**m["files"][0], "size": len(d) + 2}]}, d + b"\xff\xfe"), "cannot be read"),
    "wrong width": (lambda m, d: ({**m, "files": [{**m["files"][0], "size": len(d) + 4}]}, d + b"a,b\n"), "fields, the schema has 6"),
}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_a_run_that_cannot_speak_for_the_destination_is_refused_with_its_reason(estate: Estate, refusal: str) -> None:
    tamper, reason = REFUSALS[refusal]
    if tamper is None:  # a rule that leaves out part of the destination's folder
        tamper = _filters(excludePrefix=[f"{estate.container}/exports/ds/exportTime=2"])
    estate.write_run(estate.now.replace(microsecond=0), tamper=tamper)
    with pytest.raises(InventoryError, match=reason):
        _read(estate)


def test_the_checksum_file_guards_the_manifest_and_marks_the_run_complete(estate: Estate) -> None:
    when = estate.now.replace(microsecond=0)
    folder = estate.write_run(when)
    inventory = _read(estate)
    assert inventory.as_of == when and len(inventory.objects) == WINDOWS * (PARTS + 1)
    writer = estate.backend.writer
    body = writer.cat_file(f"{folder}/{RULE}-manifest.json")
    writer.pipe_file(f"{folder}/{RULE}-manifest.checksum", base64.b64encode(hashlib.md5(body).digest()))  # base64, as Azure gives MD5s
    assert _read(estate).as_of == when
    writer.pipe_file(f"{folder}/{RULE}-manifest.checksum", b"0" * 32)
    with pytest.raises(InventoryError, match="does not match its"):
        _read(estate)
    writer.rm_file(f"{folder}/{RULE}-manifest.checksum")  # not complete: no run to read
    with pytest.raises(InventoryError, match="no complete run of rule"):
        _read(estate)
    writer.pipe_file(f"{estate.reports}/2099/01/01/00-00-00/{RULE}/{RULE}-manifest.json", b"{}")  # the future, and no date: never the newest
    writer.pipe_file(f"{estate.reports}/2099/01/01/00-00-00/{RULE}/{RULE}-manifest.checksum", b"x")
    writer.pipe_file(f"{estate.reports}/2026/13/01/00-00-00/{RULE}/{RULE}-manifest.json", b"{}")
    writer.pipe_file(f"{estate.reports}/2026/13/01/00-00-00/{RULE}/{RULE}-manifest.checksum", b"x")
    older = when - timedelta(days=1)
    estate.write_run(older, rows=[])  # before the blobs were written: it lists none
    assert _read(estate).as_of == older
    stale = estate.settings.destinations[0].model_copy(update={"inventory": estate.settings.destinations[0].inventory.model_copy(update={"max_age": timedelta(hours=1)})})  # type: ignore[union-attr]
    with pytest.raises(InventoryError, match="older than max_age"):
        read_inventory(stale, open_store(stale.url, stale.options), estate.now)


def test_only_the_current_blobs_of_the_destinations_folder_are_taken(estate: Estate) -> None:
    c = estate.container
    iso, rfc = "2026-11-30T10:00:00.1234567Z", "Mon, 30 Nov 2026 10:00:00 GMT"
    fields = ["Name", "Last-Modified", "Etag", "Content-Length", "IsCurrentVersion", "Snapshot", "Deleted"]
    rows = [
        [f"{c}/exports/ds/a,b.gz.parquet", iso, "0x8DD1", "10", "true", "", "false"],  # a comma, quoted in the CSV
        [f"{c}/exports/ds/old.gz.parquet", iso, "0x8DD2", "11", "false", "", "false"],  # an older version
        [f"{c}/exports/ds/snap.gz.parquet", rfc, "0x8DD3", "12", "true", "2026-11-30T09:00:00.0000000Z", "false"],  # a snapshot
        [f"{c}/exports/ds/gone.gz.parquet", iso, "0x8DD4", "13", "true", "", "true"],  # soft-deleted
        [f"{c}/elsewhere/x.gz.parquet", iso, "0x8DD5", "14", "true", "", "false"],  # outside the destination's folder
        [f"other-{c}/exports/ds/y.gz.parquet", iso, "0x8DD6", "15", "true", "", "false"],  # another container of the account
        [f"{c}/exports", iso, "0x8DD7", "0", "true", "", "false"],  # the folder itself (hierarchical namespace)
        [f"{c}/exports/ds/rfc.gz.parquet", rfc, '"0x8DD8"', "16", "true", "", "false"],
    ]
    estate.write_run(estate.now.replace(microsecond=0), rows=rows, fields=fields,
                     tamper=_filters(includeBlobVersions=True, includeSnapshots=True, includeDeleted=True))
    inventory = _read(estate)
    assert [(o.key, o.size, o.etag, o.modified) for o in inventory.objects] == [
        ("ds/a,b.gz.parquet", 10, "0x8DD1", datetime(2026, 11, 30, 10, tzinfo=UTC)),  # to the whole second, as a listing gives it
        ("ds/rfc.gz.parquet", 16, "0x8DD8", datetime(2026, 11, 30, 10, tzinfo=UTC)),
    ]
    assert inventory.rows == 5  # the current blobs of the account, the others counted too


@pytest.mark.parametrize(
    "value, reason",
    [("-5", "not a number of bytes"), ("\u0661\u0662", "not a number of bytes"), (" 7 ", "not a number of bytes")],
)
def test_hostile_rows_are_refused_not_crashed_on(estate: Estate, value: str, reason: str) -> None:
    rows = [[f"{estate.container}/exports/a", "2026-01-01T00:00:00Z", "e", value, "true", "", "false"]]
    estate.write_run(estate.now.replace(microsecond=0), rows=rows, fields=["Name", "Last-Modified", "Etag", "Content-Length", "IsCurrentVersion", "Snapshot", "Deleted"])
    with pytest.raises(InventoryError, match=reason):
        _read(estate)
    for modified in ("yesterday", "2026-01-01T00:00:00", "0001-01-01T00:00:00+14:00"):  # no date; no zone; before year 1 in UTC
        rows = [[f"{estate.container}/exports/a", modified, "e", "1"]]
        estate.write_run(estate.now.replace(microsecond=0), rows=rows, fields=["Name", "Last-Modified", "Etag", "Content-Length"])
        with pytest.raises(InventoryError, match="line 2"):
            _read(estate)
    estate.write_run(estate.now.replace(microsecond=0), rows=[["x" * 3_000_000, "2026-01-01T00:00:00Z", "e", "1"]], fields=["Name", "Last-Modified", "Etag", "Content-Length"])
    with pytest.raises(InventoryError, match="line longer than"):
        _read(estate)


def test_a_refused_run_falls_back_to_a_listing_and_says_why(estate: Estate) -> None:
    with Runtime(estate.settings) as runtime:
        assert runtime.audit(now=estate.now) is not None
        estate.write_run((estate.now + timedelta(hours=2)).replace(microsecond=0), tamper=_definition(format="orc"))
        swept = runtime.audit(now=estate.now + timedelta(days=1, hours=1))
        assert swept is not None
    listing = swept.method["listing"]["d"]
    assert (listing["mode"], listing["source"]) == ("full", "listing")
    assert "the inventory could not be used" in listing["reason"] and "reads CSV and Parquet inventories" in listing["reason"]
    assert swept.errors == () and set(_statuses(swept).values()) == {"late"}


def test_an_azure_inventory_is_a_rules_run_in_a_container_of_an_azure_destination() -> None:
    base = {"catalog": {"url": "sqlite://"}, "exports": []}

    def settings(url: str, inventory: dict[str, Any]) -> Settings:
        return settings_from_mapping({**base, "destinations": [{"name": "d", "url": url, "inventory": inventory}]}, {})

    assert settings("az://c/exports", {"url": "az://inventory", "rule": "r1"}).destinations[0].inventory.azure  # type: ignore[union-attr]
    assert settings("abfs://c@acct.dfs.core.windows.net/x", {"url": "abfs://inventory", "rule": "r1"}).destinations[0].inventory is not None
    for url, inventory, message in (
        ("az://c/exports", {"url": "az://inventory"}, "inventory.rule"),
        ("az://c/exports", {"url": "s3://b/p", "rule": "r1"}, "blob inventory in a container"),
        ("az://c/exports", {"url": "az://inventory/sub", "rule": "r1"}, "root of its destination container"),
        ("az://c/exports", {"url": "az://inventory", "rule": "no/slashes"}, "rule's name"),
        ("s3://b/exports", {"url": "az://inventory", "rule": "r1"}, "S3 Inventory"),
        ("gs://b/exports", {"url": "az://inventory", "rule": "r1"}, "only an s3:// or Azure"),
    ):
        with pytest.raises(ConfigError, match=message):
            settings(url, inventory)


def _other_account(m: dict[str, Any], d: bytes) -> tuple[dict[str, Any], bytes]:
    return {**m, "endpoint": "https://otheraccount.blob.core.windows.net"}, d


@pytest.mark.parametrize("reached", ["by an environment variable", "by a SAS connection string", "with the inventory's options naming another account"])
def test_a_run_of_another_account_is_refused_however_the_destination_is_reached(estate: Estate, reached: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's endpoint is compared with the account the destination is read from, not with what its options name."""
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    from tests import servers

    destination = estate.settings.destinations[0]
    assert destination.inventory is not None
    inventory = destination.inventory
    if reached == "by an environment variable":  # adlfs reads AZURE_STORAGE_CONNECTION_STRING when no option names the account
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", servers.azurite_connection_string(estate.endpoint))
        options: dict[str, Any] = {}
    elif reached == "by a SAS connection string":  # no AccountName= in it
        sas = generate_account_sas(servers.AZURITE_ACCOUNT, servers.AZURITE_KEY, ResourceTypes(service=True, container=True, object=True),
                                   AccountSasPermissions(read=True, list=True), datetime.now(UTC) + timedelta(hours=1))
        options = {"connection_string": f"BlobEndpoint={estate.endpoint};SharedAccessSignature={sas}"}
    else:
        options = estate.backend.options
        inventory = inventory.model_copy(update={"options": {**estate.backend.options, "account_name": "otheraccount"}})
    destination = destination.model_copy(update={"options": options, "inventory": inventory})
    estate.write_run(estate.now.replace(microsecond=0))
    read = read_inventory(destination, open_store(destination.url, destination.options), estate.now + timedelta(hours=3))
    assert len(read.objects) == WINDOWS * (PARTS + 1)  # the destination's own account's run is read, reached either way
    estate.write_run(estate.now.replace(microsecond=0), tamper=_other_account)
    with pytest.raises(InventoryError, match="not of the destination's") as refused:
        read_inventory(destination, open_store(destination.url, destination.options), estate.now + timedelta(hours=3))
    assert "sig=" not in str(refused.value) and servers.AZURITE_KEY not in str(refused.value)


def _sweep_and_listing(estate: Estate, rows: list[list[str]], fields: list[str] | None = None) -> tuple[Any, Any]:
    """A sweep from a run of `rows`, then a live listing of the same container right after."""
    with Runtime(estate.settings) as runtime:
        assert runtime.audit(now=estate.now) is not None
        estate.write_run((estate.now + timedelta(hours=2)).replace(microsecond=0), rows=rows, **({"fields": fields} if fields else {}))
        at = estate.now + timedelta(days=1, hours=1)
        swept = runtime.audit(now=at)
        live = runtime.audit(now=at + timedelta(minutes=5), options=AuditOptions(full_sweep=True))
    assert swept is not None and live is not None and live.method["listing"]["d"]["source"] == "listing"
    return swept, live


@pytest.mark.parametrize("change", ["a size no blob has", "a time after the run", "one blob twice, differently"])
def test_a_row_the_run_cannot_hold_refuses_the_run_and_the_sweep_lists(estate: Estate, change: str) -> None:
    victim = estate.window_files(estate.slots[3])[0]
    rows = estate.rows()
    at = next(i for i, r in enumerate(rows) if r[0] == victim)
    if change == "a size no blob has":
        rows[at][4] = "9" * 30
    elif change == "a time after the run":
        rows[at][2] = "2099-01-01T00:00:00.0000000Z"  # would hide the blob from the audit: judged as not there yet
    else:
        rows.append([*rows[at][:4], str(int(rows[at][4]) + 1), rows[at][5]])
    swept, live = _sweep_and_listing(estate, rows)
    listing = swept.method["listing"]["d"]
    assert listing["source"] == "listing" and "the inventory could not be used" in listing["reason"], listing
    assert _statuses(swept) == _statuses(live)


def test_directories_of_a_hierarchical_namespace_are_no_files(estate: Estate) -> None:
    """ADLS Gen2 lists directories in a run (hdi_isfolder, or, without that field, as empty blobs with blobs below);
    a listing gives no such files. A blob listed twice alike (Azure may) is one blob. The sweep sees what a listing
    sees."""
    folders = ["exports", "exports/ds", *(f"exports/ds/exportTime={s:%Y%m%d%H%M}" for s in estate.slots)]
    rows = estate.rows()
    stamp = rows[0][1]
    with_field = [[*r, "false"] for r in rows] + [[f"{estate.container}/{f}", stamp, stamp, "0x0", "0", "BlockBlob", "true"] for f in folders]
    swept, live = _sweep_and_listing(estate, [*with_field, with_field[0]], [*estate.fields, "hdi_isfolder"])
    assert swept.method["listing"]["d"]["source"] == "inventory"
    assert (swept.method["listing"]["d"]["listed_objects"], swept.unexpected, _statuses(swept)) == (live.method["listing"]["d"]["listed_objects"], (), _statuses(live))
    without_field = rows + [[f"{estate.container}/{f}", stamp, stamp, "0x0", "0", "BlockBlob"] for f in folders]
    inventory = read_inventory(estate.settings.destinations[0], open_store(estate.backend.url, estate.backend.options), estate.now + timedelta(hours=3))
    assert len(inventory.objects) == WINDOWS * (PARTS + 1)
    estate.write_run((estate.now + timedelta(hours=3)).replace(microsecond=0), rows=without_field)
    inventory = read_inventory(estate.settings.destinations[0], open_store(estate.backend.url, estate.backend.options), estate.now + timedelta(hours=4))
    assert sorted(o.key for o in inventory.objects) == sorted(o.key for o in open_store(estate.backend.url, estate.backend.options).list())


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda m, d: ({**m, "inventoryStartTime": "2020-01-01T00:00:00Z"}, d), "not at the time its folder is named after"),
        (lambda m, d: ({**m, "inventoryCompletionTime": "2020-01-01T00:00:00Z"}, d), "before it began, or later than now"),
        (lambda m, d: ({**m, "inventoryCompletionTime": "soon"}, d), "is not a time"),
    ],
)
def test_a_run_whose_times_do_not_hold_together_is_refused(estate: Estate, tamper: Tamper, reason: str) -> None:
    estate.write_run(estate.now.replace(microsecond=0), tamper=tamper)
    with pytest.raises(InventoryError, match=reason):
        _read(estate)


def test_a_blob_written_before_versioning_was_enabled_is_current(estate: Estate) -> None:
    """With versions included, a blob written before versioning was enabled has no version, and no IsCurrentVersion:
    it is the current blob, not an older version."""
    c = estate.container
    rows = [[f"{c}/exports/ds/pre.gz.parquet", "2026-11-30T10:00:00Z", "0x1", "5", ""], [f"{c}/exports/ds/old.gz.parquet", "2026-11-30T10:00:00Z", "0x2", "6", "false"]]
    estate.write_run(estate.now.replace(microsecond=0), rows=rows, fields=["Name", "Last-Modified", "Etag", "Content-Length", "IsCurrentVersion"],
                     tamper=_filters(includeBlobVersions=True))
    assert [o.key for o in _read(estate).objects] == ["ds/pre.gz.parquet"]


def _parquet_damage(kind: str) -> Tamper:
    def damage(m: dict[str, Any], d: bytes) -> tuple[dict[str, Any], bytes]:
        if kind == "truncated":
            d = d[: len(d) // 2]
        elif kind == "a flipped byte":  # inside the first column chunk: the page checksum or the decoder trips
            d = d[:40] + bytes([d[40] ^ 0xFF]) + d[41:]
        elif kind == "garbage footer":
            d = d[:-12] + b"\xff" * 4 + d[-8:]
        return {**m, "files": [{**m["files"][0], "size": len(d)}]}, d

    return damage


@pytest.mark.parametrize("kind", ["truncated", "a flipped byte", "garbage footer"])
def test_a_damaged_parquet_run_is_decoded_in_a_worker_first_and_refused(estate: Estate, kind: str) -> None:
    """A Parquet data file is decoded whole, with page checksums, in a validation worker before this process reads
    it: bytes that would trip (or crash) the reader refuse the run instead. (A flipped byte in a plain, unchecksummed
    page may decode; the text it makes is then not UTF-8, and refuses the run when read.)"""
    from auditor.validate.sandbox import Sandbox

    estate.write_run(estate.now.replace(microsecond=0), file_format="parquet", tamper=_parquet_damage(kind))
    destination = estate.settings.destinations[0]
    refusal = "is not sound Parquet|could not be read" if kind == "a flipped byte" else "is not sound Parquet"
    with Sandbox(workers=1) as sandbox, pytest.raises(InventoryError, match=refusal):
        read_inventory(destination, open_store(destination.url, destination.options), estate.now + timedelta(hours=3), sandbox)


def test_a_parquet_run_that_crashes_the_reader_crashes_a_worker_not_the_audit(estate: Estate) -> None:
    """A reader that dies on the run's bytes (here a validator that segfaults on them, as a broken native reader
    would) dies in the validation worker: the run is refused, and this process goes on."""
    from auditor.validate.sandbox import Sandbox

    rows = [[f"{estate.container}/exports/ds/crash-{i}.gz.parquet", "2026-11-30T10:00:00+00:00", "0x1", "1"] for i in range(50)]
    estate.write_run(estate.now.replace(microsecond=0), rows=rows, fields=["Name", "Last-Modified", "Etag", "Content-Length"], file_format="parquet")
    destination = estate.settings.destinations[0]
    with Sandbox(workers=1, validator="tests.sandbox_validators:segfault") as sandbox, pytest.raises(InventoryError, match="is not sound Parquet"):
        read_inventory(destination, open_store(destination.url, destination.options), estate.now + timedelta(hours=3), sandbox)
    assert len(_read(estate).objects) == 50  # the same run, read by a reader that does not crash on it


def test_a_parquet_run_gives_the_current_blobs_and_its_columns_must_be_the_rules(estate: Estate) -> None:
    c = estate.container
    fields = ["Name", "Last-Modified", "Etag", "Content-Length", "IsCurrentVersion", "hdi_isfolder"]
    stamp = "2026-11-30T10:00:00.123+00:00"
    rows = [
        [f"{c}/exports/ds/a.gz.parquet", stamp, "0x1", "10", "true", "false"],
        [f"{c}/exports/ds/old.gz.parquet", stamp, "0x2", "11", "false", "false"],
        [f"{c}/exports/ds", stamp, "0x3", "0", "true", "true"],
    ]
    estate.write_run(estate.now.replace(microsecond=0), rows=rows, fields=fields, file_format="parquet", tamper=_filters(includeBlobVersions=True))
    assert [(o.key, o.size, o.etag, o.modified) for o in _read(estate).objects] == [("ds/a.gz.parquet", 10, "0x1", datetime(2026, 11, 30, 10, tzinfo=UTC))]
    estate.write_run(estate.now.replace(microsecond=0), rows=rows, fields=fields, file_format="parquet",
                     tamper=_definition(schemaFields=["Name", "Last-Modified", "Content-Length", "Etag", "IsCurrentVersion", "hdi_isfolder"]))
    with pytest.raises(InventoryError, match="are not the rule's schemaFields"):
        _read(estate)


def _parquet_file(columns: dict[str, Any], *, row_group_size: int | None = None, compression: str = "zstd") -> Tamper:
    """A tamper that puts these columns, written as Parquet, in place of the run's data file."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, row_group_size=row_group_size, compression=compression)
    data = sink.getvalue()
    return lambda m, d: ({**m, "files": [{**m["files"][0], "size": len(data)}]}, data)


@pytest.mark.parametrize("bomb", ["long names in small bytes", "many rows in small bytes"])
def test_a_parquet_run_that_would_explode_in_memory_or_time_is_refused_before_it_does(estate: Estate, bomb: str) -> None:
    """Bytes the worker decodes within its limits can still decode to far more in Python values: a run of repeated
    32 KB names (Azure's names have at most 1,024 characters; 1,000 of them are 32 MB here, 8 row groups of 8,192
    made 5 GB), or of a million rows in a few kilobytes (a real run's rows each take bytes), is refused from what
    Arrow holds, before any of it becomes Python values."""
    import pyarrow as pa

    from auditor.validate.sandbox import Sandbox

    fields = ["Name", "Last-Modified", "Etag", "Content-Length"]
    if bomb == "long names in small bytes":
        rows, name, reason = 4 * 250, "x" * 32_768, "a Name longer than 1024 characters"
        tamper = _parquet_file({"Name": pa.array([name] * rows), "Last-Modified": pa.array([datetime(2026, 11, 30, tzinfo=UTC)] * rows, pa.timestamp("ms", tz="UTC")),
                                "Etag": pa.array(["0x1"] * rows), "Content-Length": pa.array([1] * rows, pa.int64())}, row_group_size=250)
    else:
        rows, reason = 1_000_000, "rows in .* bytes: not a real report"
        tamper = _parquet_file({"Name": pa.array([f"{estate.container}/elsewhere/x"] * rows), "Last-Modified": pa.array([datetime(2026, 11, 30, tzinfo=UTC)] * rows, pa.timestamp("ms", tz="UTC")),
                                "Etag": pa.array(["0x1"] * rows), "Content-Length": pa.array([1] * rows, pa.int64())})
    estate.write_run(estate.now.replace(microsecond=0), rows=[], fields=fields, file_format="parquet", tamper=tamper)
    destination = estate.settings.destinations[0]
    with Sandbox(workers=1) as sandbox, pytest.raises(InventoryError, match=reason):
        read_inventory(destination, open_store(destination.url, destination.options), estate.now + timedelta(hours=3), sandbox)
