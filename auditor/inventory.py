"""An S3 Inventory report as the source of a destination's scheduled full sweep.

S3 writes a bucket's inventory daily (or weekly) to another location: under
`destination-prefix/source-bucket/config-ID/` a folder `YYYY-MM-DDTHH-MMZ/` (when the scan began)
holds `manifest.json` (the report's data files, their sizes and MD5s, the CSV's columns) and
`manifest.checksum` (the MD5 of `manifest.json`); the data files are gzip CSV with URL-encoded keys,
or Parquet with keys as they are.
Reading the newest report costs a handful of GETs where listing a bucket of a million objects costs
a thousand LIST requests.

A report describes the bucket as of its scan, so it speaks only for what has not changed since:
auditor.listing lists every window that was not settled by then, and the audit keeps the catalog's
record of a file newer than the report (the report cannot know of it). A file deleted after the
scan shows at the next report's sweep.

An Azure blob inventory rule writes its reports into a container of the same storage account: under
`YYYY/MM/DD/HH-MM-SS/<rule>/` (when the run began) `<rule>-manifest.json` (the rule's definition, its
status and its files), `<rule>-manifest.checksum` (written last: the run is complete) and CSV files
whose first row names the columns (or Parquet files), with each blob's Name as `container/path`. The
auditor reads the newest complete run of the configured rule, if it Succeeded and its rule covers the
destination's folder (prefixMatch, excludePrefix, block blobs).

A Parquet data file is decoded whole by a validation worker before this process reads it (_parquet_rows).

The report is untrusted input like the exports: every check failing (checksum, size, gzip, CSV,
columns, a bucket or key it should not name, more rows than any real report) raises
InventoryError, and the audit then lists the destination instead, saying why.
"""

from __future__ import annotations

import base64
import bisect
import csv
import gzip
import hashlib
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlsplit

from auditor.config import DestinationSettings
from auditor.errors import StorageError
from auditor.storage import Store, open_store
from auditor.storage.base import ObjectInfo, scrub

if TYPE_CHECKING:
    from auditor.audit import Checker

REPORT_FOLDER = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2})-([0-9]{2})Z/manifest\.json$")
CLOCK_SKEW = timedelta(hours=1)  # a report's scan may begin this far after the audit's as-of time, not more
MAX_MANIFEST_BYTES = 16 << 20  # a report of billions of objects lists a few thousand data files
MAX_DATA_FILE_BYTES = 8 << 30
MAX_ROWS = 100_000_000  # lines in a data file, and current objects in all: a gzip bomb of tiny rows stops here
MAX_LINE = 1 << 20  # characters in one CSV line (a row of an S3 key of at most 1,024 bytes and its columns is far shorter)
MAX_EXPANSION = 256  # characters of CSV per compressed byte (real reports, keys and hex ETags, expand about 5 to 20 times)
REQUIRED = ("Bucket", "Key", "Size", "LastModifiedDate")
CHUNK = 1 << 20
MAX_PARQUET_BYTES = 1 << 30  # a Parquet data file is decoded whole, in memory (a run writes many files past a few hundred MB)
MAX_ROW_GROUP_BYTES = 256 << 20  # the columns read of one row group, as stored (dictionaries kept as dictionaries)
BATCH_ROWS = 4_096  # rows turned into Python values at a time
AZURE_RUN = re.compile(r"^([0-9]{4})/([0-9]{2})/([0-9]{2})/([0-9]{2})-([0-9]{2})-([0-9]{2})/([A-Za-z0-9_-]+)/\7-manifest\.json$")
AZURE_REQUIRED = ("Name", "Content-Length", "Last-Modified")


class InventoryError(Exception):
    """The inventory cannot stand in for a listing (missing, stale, malformed, or not of this bucket)."""


@dataclass(frozen=True)
class Inventory:
    as_of: datetime  # when S3 began the scan the report describes
    objects: list[ObjectInfo]  # the destination's objects in the report: keys relative to its root, latest versions only
    rows: int  # current objects the report lists, the bucket's others included


def _bucket_and_path(url: str) -> tuple[str, str]:
    netloc, _, path = url.split("://", 1)[1].partition("/")
    return netloc.rsplit("@", 1)[-1], path.strip("/")  # s3://KEY:SECRET@bucket/…: the bucket, never the credentials


@dataclass(frozen=True)
class Report:
    """The newest report of an inventory, found from its folder's name (one listing), not yet read."""

    as_of: datetime
    folder: str
    store: Store
    listing: dict[str, ObjectInfo]
    now: datetime  # when it was found: no row can be modified later
    rule: str | None = None  # Azure: the rule whose run it is (its files are named after it)


@contextmanager
def _refusal() -> Iterator[None]:
    """Whatever reading a report trips refuses it (an InventoryError): the bucket is then listed instead."""
    try:
        yield
    except InventoryError:
        raise
    except StorageError as e:
        raise InventoryError(f"cannot read the inventory: {e}") from None
    except Exception as e:  # noqa: BLE001 - whatever else a hostile report trips: it is not used, the bucket is listed
        raise InventoryError(f"the report could not be read: {type(e).__name__}: {scrub(str(e))[:300]}") from None


def newest_report(destination: DestinationSettings, now: datetime) -> Report:
    """The newest report of `destination`'s inventory no older than max_age: its time, from its folder's name."""
    settings = destination.inventory
    if settings is None:
        raise InventoryError("no inventory is configured")
    if settings.azure:
        return _newest_azure_run(destination, now)
    with _refusal():
        reports = open_store(settings.url, settings.options if settings.options is not None else destination.options)
        listing = {o.key: o for o in reports.list()}
        found = [(_folder_time(m), m.group(0).rsplit("/", 1)[0]) for m in map(REPORT_FOLDER.match, listing) if m]
        usable = sorted(((when, name) for when, name in found if when is not None and when <= now + CLOCK_SKEW), reverse=True)  # not a date, or the future: no report
        if not usable:
            raise InventoryError(f"no report (YYYY-MM-DDTHH-MMZ/manifest.json) under {reports.url}")
        as_of, folder = usable[0]
        if now - as_of > settings.max_age:
            raise InventoryError(f"the newest report ({folder}) is older than max_age ({settings.max_age})")
    return Report(as_of, folder, reports, listing, now)


def read_inventory(destination: DestinationSettings, store: Store, now: datetime, checker: Checker | None = None) -> Inventory:
    """The newest report of `destination`'s inventory, checked and read into the destination's objects."""
    return read_report(destination, newest_report(destination, now), store, checker)


def read_report(destination: DestinationSettings, report: Report, store: Store, checker: Checker | None = None) -> Inventory:
    """`report`, checked and read into the objects of `destination` (whose store is `store`). A Parquet data file is
    decoded whole by `checker` first (in a validation worker, where a reader that crashes on bad bytes cannot stop
    the audit; without one, in this process), and read here only if that found it sound."""
    assert destination.inventory is not None
    if report.rule is not None:
        return _read_azure_run(destination, report, store, checker)
    reports, listing, folder = report.store, report.listing, report.folder
    with _refusal():
        manifest = _manifest(reports, listing, folder)
        source, root = _bucket_and_path(destination.url)
        if manifest.get("sourceBucket") != source:
            raise InventoryError(f"the report is of bucket {manifest.get('sourceBucket')!r}, not of the destination's bucket {source!r}")
        home, base = _bucket_and_path(destination.inventory.url)
        if manifest.get("destinationBucket") not in (f"arn:aws:s3:::{home}", home):
            raise InventoryError(f"the report's files are in {manifest.get('destinationBucket')!r}, not in bucket {home!r}")
        file_format = str(manifest.get("fileFormat", "")).upper()
        if file_format not in ("CSV", "PARQUET"):
            raise InventoryError(f"the report is {str(manifest.get('fileFormat'))[:40]!r}: the auditor reads CSV and Parquet inventories")
        columns = [c.strip() for c in str(manifest.get("fileSchema", "")).split(",")]
        absent = [c for c in REQUIRED if c not in columns]
        if "VersionId" in columns:  # a report of every version: without these, old versions and deletions pass for current objects
            absent += [c for c in ("IsLatest", "IsDeleteMarker") if c not in columns]
        if absent and file_format == "CSV":  # (a Parquet report's own schema is checked, file by file)
            raise InventoryError(f"the report has no {', '.join(absent)} column (fileSchema: {manifest.get('fileSchema')!r})")
        found: dict[str, ObjectInfo] = {}  # held once per object, however many rows name it
        rows = 0
        prefix = f"{root}/" if root else ""
        for key, entry in _data_files(manifest, "key"):
            if base and not key.startswith(f"{base}/"):
                raise InventoryError(f"data file {key!r} is not under the report's folder {base!r}")
            relative = key[len(base) + 1 :] if base else key
            rows_of = _rows(reports, relative, entry, columns) if file_format == "CSV" else _s3_parquet_rows(reports, relative, entry, checker)
            for bucket, name, size, modified, etag in rows_of:
                rows += 1
                _not_after(modified, report.now + CLOCK_SKEW, relative)
                if rows > MAX_ROWS:
                    raise InventoryError(f"more than {MAX_ROWS} rows: not a real report")
                if bucket != source:
                    raise InventoryError(f"a row names bucket {bucket!r}, not {source!r}")
                name = name.rstrip("/")  # a "folder/" placeholder: a listing gives it as an object of that name
                if name.startswith(prefix) and name != prefix.rstrip("/"):
                    _hold_once(found, ObjectInfo(name[len(prefix) :], store.url, size, modified, etag), f"the report lists object {name[:200]!r} as current")
    return Inventory(report.as_of, list(found.values()), rows)


def _size(text: str) -> int:
    """A size column's bytes: ASCII digits only (int() would take " 1_000 " or other scripts' digits), at most a petabyte."""
    text = text or "0"
    if not (text.isascii() and text.isdigit()) or len(text) > 16:
        raise ValueError(f"size {text[:40]!r} is not a number of bytes an object can have")
    return int(text)


def _not_after(modified: datetime | None, limit: datetime, key: str) -> None:
    """Refuses a row modified later than the report can know of (a time ahead would hide the file from the audit)."""
    if modified is not None and modified > limit:
        raise InventoryError(f"data file {key} lists an object modified at {modified:%Y-%m-%dT%H:%M:%SZ}, later than the report can know of")


def _data_files(manifest: Mapping[str, Any], field: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, entry) of each data file a manifest lists under `field`, each well-formed and listed once (a file
    listed many times would be read as many times)."""
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise InventoryError("the report's manifest lists no data files")
    read: set[str] = set()
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get(field), str) or not isinstance(entry.get("size"), int):
            raise InventoryError(f"a data file entry of the manifest is malformed: {str(entry)[:200]}")
        if entry[field] in read:
            raise InventoryError("the manifest lists a data file twice")
        read.add(entry[field])
        yield entry[field], entry


def _folder_time(match: re.Match[str]) -> datetime | None:
    """The UTC time a report's folder is named after (its first 5 groups: to the minute, S3; 6: the second, Azure),
    or None when the name is no date."""
    year, month, day, hour, minute, *second = (int(g) for g in match.groups()[:6])
    try:
        return datetime(year, month, day, hour, minute, second[0] if second else 0, tzinfo=UTC)
    except ValueError:
        return None


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value.astimezone(UTC)


def _manifest(reports: Store, listing: dict[str, ObjectInfo], folder: str, name: str = "manifest") -> dict[str, Any]:
    body = _read(reports, listing, f"{folder}/{name}.json", MAX_MANIFEST_BYTES)
    checksum = _read(reports, listing, f"{folder}/{name}.checksum", 1024).decode("ascii", "replace").strip().strip('"')
    digest = hashlib.md5(body, usedforsecurity=False)
    if checksum.lower() != digest.hexdigest() and checksum != base64.b64encode(digest.digest()).decode():  # hex (S3), or base64 as Azure gives MD5s
        raise InventoryError(f"{folder}/{name}.json does not match its {name}.checksum")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise InventoryError(f"{folder}/{name}.json is not JSON: {e}") from None
    if not isinstance(document, dict):
        raise InventoryError(f"{folder}/{name}.json is not a JSON object")
    return document


def _read(reports: Store, listing: dict[str, ObjectInfo], key: str, limit: int) -> bytes:
    info = listing.get(key)
    if info is None:
        raise InventoryError(f"{key} is missing")
    if info.size > limit:
        raise InventoryError(f"{key} is {info.size} bytes: larger than any real one")
    return reports.read_range(key, 0, info.size) if info.size else b""


def _lines(text: IO[str], key: str, budget: int) -> Iterator[str]:
    """The lines of a data file, each read with a bound (a bomb of one endless line is not read into memory whole),
    and no more characters in all than `budget`."""
    while line := text.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE:
            raise InventoryError(f"data file {key} has a line longer than {MAX_LINE} characters: not a real report")
        budget -= len(line)
        if budget < 0:
            raise InventoryError(f"data file {key} expands to more than {MAX_EXPANSION} times its size: not a real report")
        yield line


class _Counted(io.RawIOBase):
    """The raw bytes of a data file as they are read: counted and hashed, and cut off past the size the manifest gave."""

    def __init__(self, handle: IO[bytes], limit: int) -> None:
        self._handle, self._limit = handle, limit
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(min(len(buffer), CHUNK))
        self.size += len(data)
        if self.size > self._limit:
            raise InventoryError("a data file is longer than the manifest says")
        self.md5.update(data)
        buffer[: len(data)] = data
        return len(data)


def _rows(reports: Store, key: str, entry: dict[str, Any], columns: list[str]) -> Iterator[tuple[str, str, int, datetime | None, str | None]]:
    """(bucket, key, size, last modified, etag) of each current object in one gzip CSV data file."""
    expected = entry["size"]
    if not 0 < expected <= MAX_DATA_FILE_BYTES:
        raise InventoryError(f"data file {key} has an impossible size ({expected})")
    at = {name: columns.index(name) for name in columns}
    latest, marker, tag = at.get("IsLatest"), at.get("IsDeleteMarker"), at.get("ETag")
    md5 = entry.get("MD5checksum")
    lines = _csv_rows(reports, key, expected, len(columns), gzipped=True, budget=MAX_EXPANSION * expected + MAX_LINE, md5=None if md5 is None else str(md5))
    for line, row in lines:
        current = latest is None or _boolean(row[latest], "IsLatest", key, line)
        if marker is not None and _boolean(row[marker], "IsDeleteMarker", key, line) or not current:
            continue  # an older version, or a deletion: not what the bucket holds now
        try:
            size = _size(row[at["Size"]])
            modified = _utc(row[at["LastModifiedDate"]]) if row[at["LastModifiedDate"]] else None
        except (ValueError, OverflowError) as e:
            raise InventoryError(f"data file {key} line {line}: {e}") from None
        yield row[at["Bucket"]], unquote_plus(row[at["Key"]]), size, modified, _etag(row[tag]) if tag is not None else None


def _csv_rows(
    reports: Store, key: str, expected: int, width: int, *, gzipped: bool, budget: int, header: list[str] | None = None, md5: str | None = None,
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each row of one CSV data file of a report, `width` fields each: read as it streams,
    counted and cut off past `expected` bytes (and checked against it, and `md5`, at the end), each line bounded and
    no more than `budget` characters in all; with `header`, the first row must be it (an Azure run's schema row)."""
    try:
        with reports.open(key) as handle:
            counted = _Counted(handle, expected)
            raw: IO[bytes] = io.BufferedReader(counted, CHUNK)
            text = io.TextIOWrapper(gzip.GzipFile(fileobj=raw) if gzipped else raw, encoding="utf-8" if gzipped else "utf-8-sig", newline="")
            rows = csv.reader(_lines(text, key, budget))
            first = 1
            if header is not None:
                found = next(rows, None)
                if found != header:
                    raise InventoryError(f"data file {key}: its first row {str(found)[:200]} is not the rule's schemaFields")
                first = 2
            for line, row in enumerate(rows, first):
                if line > MAX_ROWS:
                    raise InventoryError(f"data file {key} has more than {MAX_ROWS} rows: not a real report")
                if len(row) != width:
                    raise InventoryError(f"data file {key} line {line}: {len(row)} fields, the schema has {width}")
                yield line, row
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as e:  # gzip.BadGzipFile is an OSError
        raise InventoryError(f"data file {key} cannot be read: {type(e).__name__}: {e}") from None
    if counted.size != expected:
        raise InventoryError(f"data file {key} is {counted.size} bytes, the manifest says {expected}")
    if md5 is not None and counted.md5.hexdigest() != md5.lower():
        raise InventoryError(f"data file {key} does not match its MD5 in the manifest")


def _hold_once(found: dict[str, ObjectInfo], info: ObjectInfo, what: str) -> None:
    """Hold an object a report lists once, however many rows name it; two rows that disagree (size, ETag, time) cannot
    both describe one current object: the report is refused (`what` names the row's object)."""
    if found.setdefault(info.key, info) != info:
        raise InventoryError(f"{what} twice, with different sizes, ETags or times")


def _etag(value: str) -> str | None:
    """An ETag as a listing gives it: without its quotes, None when empty."""
    return value.strip('"') or None


# -- Azure blob inventory -------------------------------------------------------------


def _container_and_path(url: str) -> tuple[str, str]:
    """az://container/path or abfs://container@account.dfs.core.windows.net/path: the container and the path."""
    netloc, _, path = url.split("://", 1)[1].partition("/")
    return netloc.split("@", 1)[0], path.strip("/")


def _newest_azure_run(destination: DestinationSettings, now: datetime) -> Report:
    """The newest complete run of the rule (its checksum file, written last, is there) no older than max_age."""
    settings = destination.inventory
    assert settings is not None and settings.rule is not None
    rule = settings.rule
    with _refusal():
        reports = open_store(settings.url, settings.options if settings.options is not None else destination.options)
        listing = {o.key: o for o in reports.list()}
        runs = []
        for match in map(AZURE_RUN.match, listing):
            if match is None or match.group(7) != rule:
                continue
            folder = match.group(0).rsplit("/", 1)[0]
            when = _folder_time(match)
            if when is not None and when <= now + CLOCK_SKEW and f"{folder}/{rule}-manifest.checksum" in listing:  # not the future; complete
                runs.append((when, folder))
        if not runs:
            raise InventoryError(f"no complete run of rule {rule!r} (YYYY/MM/DD/HH-MM-SS/{rule}/{rule}-manifest.checksum) in {reports.url}")
        as_of, folder = max(runs)
        if now - as_of > settings.max_age:
            raise InventoryError(f"the newest complete run of rule {rule!r} ({folder}) is older than max_age ({settings.max_age})")
    return Report(as_of, folder, reports, listing, now, rule)


def _read_azure_run(destination: DestinationSettings, report: Report, store: Store, checker: Checker | None) -> Inventory:
    """One run of an Azure blob inventory rule, checked and read into the objects of `destination`."""
    settings, rule = destination.inventory, report.rule
    assert settings is not None and rule is not None
    reports, listing, folder = report.store, report.listing, report.folder
    with _refusal():
        manifest = _manifest(reports, listing, folder, f"{rule}-manifest")
        container, root = _container_and_path(destination.url)
        home, _ = _container_and_path(settings.url)
        if manifest.get("status") != "Succeeded":
            raise InventoryError(f"the run's status is {str(manifest.get('status'))[:40]!r}, not 'Succeeded'")
        if manifest.get("ruleName") != rule or manifest.get("destinationContainer") != home:
            raise InventoryError(f"the run is of rule {str(manifest.get('ruleName'))[:60]!r} into {str(manifest.get('destinationContainer'))[:70]!r}, not of rule {rule!r} into {home!r}")
        _same_account(manifest.get("endpoint"), store)
        completed = _run_times(manifest, report)
        definition = manifest.get("ruleDefinition")
        if not isinstance(definition, dict) or not isinstance(definition.get("filters", {}), dict):
            raise InventoryError("the run's manifest has no rule definition")
        if str(definition.get("objectType", "")).lower() != "blob":
            raise InventoryError(f"the rule reports {str(definition.get('objectType'))[:40]!r}, not blobs")
        file_format = str(definition.get("format", "")).lower()
        if file_format not in ("csv", "parquet"):
            raise InventoryError(f"the rule writes {str(definition.get('format'))[:40]!r}: the auditor reads CSV and Parquet inventories")
        filters = definition.get("filters") or {}
        folder_path = f"{container}/{root}/" if root else f"{container}/"
        _covers(filters, folder_path)
        columns = definition.get("schemaFields")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InventoryError("the rule definition has no schemaFields")
        needed = [*AZURE_REQUIRED, *(["IsCurrentVersion"] if filters.get("includeBlobVersions") else []),
                  *(["Snapshot"] if filters.get("includeSnapshots") else []), *(["Deleted"] if filters.get("includeDeleted") else [])]
        absent = [c for c in needed if c not in columns]
        if absent:
            raise InventoryError(f"the rule's schemaFields have no {', '.join(absent)} (needed to tell the current blobs)")
        found: dict[str, ObjectInfo] = {}
        rows = 0
        for key, entry in _data_files(manifest, "blob"):
            if not key.startswith(f"{folder}/") or "/../" in f"/{key}/":
                raise InventoryError(f"data file {key[:200]!r} is not in the run's folder {folder!r}")
            rows_of = _azure_rows(reports, key, entry["size"], columns) if file_format == "csv" else _azure_parquet_rows(reports, key, entry["size"], columns, checker)
            for name, size, modified, etag in rows_of:
                rows += 1
                if rows > MAX_ROWS:
                    raise InventoryError(f"more than {MAX_ROWS} rows: not a real report")
                _not_after(modified, completed + CLOCK_SKEW, key)
                if not name.startswith(folder_path) or name.endswith("/"):
                    continue
                _hold_once(found, ObjectInfo(name[len(folder_path) :], store.url, size, modified, etag), f"the run lists blob {name[:200]!r}")  # (Azure may list one twice)
        objects = _without_directories(found)
    return Inventory(report.as_of, objects, rows)


def _without_directories(found: dict[str, ObjectInfo]) -> list[ObjectInfo]:
    """The blobs, without the directories of a hierarchical namespace that a rule without hdi_isfolder lists as
    empty blobs with blobs below them (a listing gives no such file)."""
    empty = [key for key, info in found.items() if info.size == 0]
    if not empty:
        return list(found.values())
    keys = sorted(found)

    def has_children(key: str) -> bool:
        at = bisect.bisect_left(keys, f"{key}/")
        return at < len(keys) and keys[at].startswith(f"{key}/")

    directories = {key for key in empty if has_children(key)}
    return [info for key, info in found.items() if key not in directories]


def _run_times(manifest: Mapping[str, Any], report: Report) -> datetime:
    """When the run completed, checked against when it began (its folder's name) and now."""
    try:
        started = _utc(str(manifest.get("inventoryStartTime")))
        completed = _utc(str(manifest.get("inventoryCompletionTime")))
    except (ValueError, OverflowError) as e:
        raise InventoryError(f"the run's inventoryStartTime or inventoryCompletionTime is not a time: {e}") from None
    if abs(started - report.as_of) > timedelta(minutes=1):
        raise InventoryError(f"the run began at {started:%Y-%m-%dT%H:%M:%SZ}, not at the time its folder is named after ({report.as_of:%Y-%m-%dT%H:%M:%SZ})")
    if not started <= completed <= report.now + CLOCK_SKEW:
        raise InventoryError(f"the run completed at {completed:%Y-%m-%dT%H:%M:%SZ}: before it began, or later than now")
    return completed


AZURE_FILTERS = frozenset({"blobTypes", "prefixMatch", "excludePrefix", "includeSnapshots", "includeBlobVersions", "includeDeleted"})


def _covers(filters: Mapping[str, Any], folder: str) -> None:
    """Refuses a rule that does not speak for every block blob under `folder` (container/path/): one whose types or
    prefixes leave some out, or one with any other filter (`creationTime` reports only the blobs of the last days)."""
    other = sorted(str(name)[:40] for name in filters if name not in AZURE_FILTERS)
    if other:
        raise InventoryError(f"the rule filters by {', '.join(other[:5])}: its runs leave out blobs of the destination's folder {folder!r}")
    types = filters.get("blobTypes")
    if not isinstance(types, list) or "blockBlob" not in types:
        raise InventoryError(f"the rule's blobTypes {str(types)[:80]} leave out block blobs, which the exports are")
    include = filters.get("prefixMatch") or []
    exclude = filters.get("excludePrefix") or []
    if not isinstance(include, list) or not isinstance(exclude, list) or not all(isinstance(p, str) for p in (*include, *exclude)):
        raise InventoryError("the rule's prefixMatch or excludePrefix is not a list of prefixes")
    if include and not any(folder.startswith(p) for p in include):
        raise InventoryError(f"the rule's prefixMatch {include[:10]} does not cover the destination's folder {folder!r}")
    clash = [p for p in exclude if p and (folder.startswith(p) or p.startswith(folder))]
    if clash:
        raise InventoryError(f"the rule's excludePrefix {clash[:10]} leaves out blobs of the destination's folder {folder!r}")


def _endpoint_key(url: str) -> tuple[str, int | None, str]:
    """An account's blob endpoint, compared without scheme and case, its .dfs. (Data Lake) name as its .blob. one."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().replace(".dfs.core.", ".blob.core.")
    return host, parts.port, parts.path.strip("/").lower()


def _same_account(endpoint: Any, store: Store) -> None:
    """Refuses a run whose manifest names another storage account than the one the destination is read from."""
    if not isinstance(endpoint, str) or not endpoint:
        raise InventoryError("the run's manifest names no endpoint (storage account)")
    expected = getattr(store, "account_endpoint", None)
    if not isinstance(expected, str):
        raise InventoryError("cannot tell which storage account the destination is in, to match the run's endpoint with it")
    try:
        found = _endpoint_key(endpoint)
    except ValueError:
        raise InventoryError(f"the run's endpoint {endpoint[:100]!r} is not a URL") from None
    if found != _endpoint_key(expected):
        raise InventoryError(f"the run is of the storage account at {scrub(endpoint)[:100]!r}, not of the destination's ({expected!r})")


def _azure_time(text: str) -> datetime:
    """A Last-Modified as blob inventory writes it (ISO 8601, or RFC 1123 as HTTP gives it), to the whole second as
    a listing gives it (the List Blobs API sends whole seconds)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = parsedate_to_datetime(text)  # raises ValueError (or TypeError) for what is neither
    if value.tzinfo is None:
        raise ValueError(f"{text[:40]!r} has no time zone")
    return value.astimezone(UTC).replace(microsecond=0)


def _azure_rows(reports: Store, key: str, expected: int, columns: list[str]) -> Iterator[tuple[str, int, datetime | None, str | None]]:
    """(container/path, size, last modified, etag) of each current blob in one CSV data file of a run."""
    if not 0 < expected <= MAX_DATA_FILE_BYTES:
        raise InventoryError(f"data file {key} has an impossible size ({expected})")
    at = {name: columns.index(name) for name in columns}
    current, snapshot, deleted, tag = at.get("IsCurrentVersion"), at.get("Snapshot"), at.get("Deleted"), at.get("Etag", at.get("ETag"))
    folder = at.get("hdi_isfolder")
    for line, row in _csv_rows(reports, key, expected, len(columns), gzipped=False, budget=expected + MAX_LINE, header=columns):
        if (
            (current is not None and row[current].lower() == "false")  # (empty: written before versioning, so current)
            or (snapshot is not None and row[snapshot])
            or (deleted is not None and row[deleted].lower() == "true")
            or (folder is not None and row[folder].lower() == "true")
        ):
            continue  # an older version, a snapshot, a soft-deleted blob or a directory: not a file the container holds now
        try:
            size = _size(row[at["Content-Length"]])
            modified = _azure_time(row[at["Last-Modified"]]) if row[at["Last-Modified"]] else None
        except (ValueError, TypeError, OverflowError) as e:
            raise InventoryError(f"data file {key} line {line}: {e}") from None
        yield row[at["Name"]], size, modified, _etag(row[tag]) if tag is not None else None


def _parquet_rows(
    reports: Store, key: str, expected: int, checker: Checker | None, *, required: Sequence[str], optional: Sequence[str] = (),
    longest: Mapping[str, int], schema: Sequence[str] | None = None, md5: str | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, {column: value}) of each row of one Parquet data file of a report, `required` columns and those
    of `optional` it has (with `schema`, its columns must be those, in that order): decoded
    whole by the checker first (with page checksums; in a validation worker, where a reader that crashes on bad
    bytes cannot stop the audit), then read here a row group at a time, its text columns (`longest`: the most
    characters a value may have) as dictionaries, and refused before any value becomes a Python object when it
    could not be a real report (more rows than bytes, a row group too big, a text value too long)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from auditor.validate import validate_data_file
    from auditor.validate.sandbox import BytesSource

    if not 0 < expected <= MAX_PARQUET_BYTES:
        raise InventoryError(f"data file {key} has a size ({expected}) this auditor does not read whole (at most {MAX_PARQUET_BYTES})")
    data = reports.read_range(key, 0, expected)
    if len(data) != expected:
        raise InventoryError(f"data file {key} is {len(data)} bytes, the manifest says {expected}")
    if md5 is not None and hashlib.md5(data, usedforsecurity=False).hexdigest() != md5.lower():
        raise InventoryError(f"data file {key} does not match its MD5 in the manifest")
    source = BytesSource(data, url=f"inventory data file {key}")
    verdict = checker.check_many([(source, "inventory.parquet")], deep=True)[0] if checker is not None else validate_data_file(source, "inventory.parquet", deep=True)
    bad = [f.message for f in verdict.findings if f.is_error] if not isinstance(verdict, StorageError) else [str(verdict)]
    if bad:
        raise InventoryError(f"data file {key} is not sound Parquet: {bad[0][:300]}")
    names = pq.ParquetFile(pa.BufferReader(data)).schema_arrow.names
    file = pq.ParquetFile(pa.BufferReader(data), read_dictionary=[c for c in longest if c in names])  # a value repeated stays one value
    if schema is not None and names != list(schema):
        raise InventoryError(f"data file {key}: its columns {names[:20]} are not the rule's schemaFields")
    absent = [c for c in required if c not in names]
    if absent:
        raise InventoryError(f"data file {key} has no {', '.join(absent)} column (its columns: {names[:20]})")
    wanted = [*required, *(c for c in optional if c in names)]
    metadata = file.metadata
    if metadata.num_rows > max(expected, 1000):  # (compressed, a real report's row takes bytes: its object's name is unique)
        raise InventoryError(f"data file {key} holds {metadata.num_rows} rows in {expected} bytes: not a real report")
    positions = [names.index(c) for c in wanted]
    seen = 0
    for group in range(metadata.num_row_groups):  # one row group at a time, as the worker decoded them
        stored = sum(metadata.row_group(group).column(i).total_uncompressed_size for i in positions)
        if stored > MAX_ROW_GROUP_BYTES:
            raise InventoryError(f"data file {key} row group {group} holds {stored} bytes in the columns read: not a real report")
        table = file.read_row_group(group, columns=wanted, use_threads=False)
        for column, most in longest.items():
            if column in wanted and _longest(table.column(column)) > most:
                raise InventoryError(f"data file {key} row group {group}: a {column} longer than {most} characters: not a real report")
        for offset in range(0, table.num_rows, BATCH_ROWS):
            batch = table.slice(offset, BATCH_ROWS).to_pydict()
            for index in range(min(BATCH_ROWS, table.num_rows - offset)):
                seen += 1
                if seen > MAX_ROWS:
                    raise InventoryError(f"data file {key} has more than {MAX_ROWS} rows: not a real report")
                yield seen, {column: batch[column][index] for column in wanted}


def _azure_parquet_rows(reports: Store, key: str, expected: int, columns: list[str], checker: Checker | None) -> Iterator[tuple[str, int, datetime | None, str | None]]:
    """(container/path, size, last modified, etag) of each current blob in one Parquet data file of a run."""
    optional = ("Etag", "ETag", "IsCurrentVersion", "Snapshot", "Deleted", "hdi_isfolder")
    longest = {"Name": 1024, "Etag": 256, "ETag": 256, "Snapshot": 64}  # Azure's own limits, and more
    for seen, row in _parquet_rows(reports, key, expected, checker, required=AZURE_REQUIRED, optional=optional, longest=longest, schema=columns):
        if (
            _flag(row.get("IsCurrentVersion")) == "false"  # (none: written before versioning, so current)
            or row.get("Snapshot")
            or _flag(row.get("Deleted")) == "true"
            or _flag(row.get("hdi_isfolder")) == "true"
        ):
            continue
        name, etag = row["Name"], row.get("Etag", row.get("ETag"))
        if not isinstance(name, str) or not isinstance(etag, str | None):
            raise InventoryError(f"data file {key} row {seen}: its Name or Etag is not text")
        size, modified = _parquet_size_and_time(row["Content-Length"], row["Last-Modified"], key, seen)
        yield name, size, modified, _etag(etag) if etag is not None else None


def _s3_parquet_rows(reports: Store, key: str, entry: Mapping[str, Any], checker: Checker | None) -> Iterator[tuple[str, str, int, datetime | None, str | None]]:
    """(bucket, key, size, last modified, etag) of each current object in one Parquet data file of an S3 Inventory
    report (its columns as S3 names them: bucket, key, size, last_modified_date, e_tag; keys not URL-encoded)."""
    md5 = entry.get("MD5checksum")
    required = ("bucket", "key", "size", "last_modified_date")
    optional = ("e_tag", "version_id", "is_latest", "is_delete_marker")
    longest = {"bucket": 63, "key": 1024, "e_tag": 256}  # S3's own limits (a key is at most 1,024 bytes)
    rows = _parquet_rows(reports, key, entry["size"], checker, required=required, optional=optional, longest=longest, md5=str(md5) if md5 is not None else None)
    for seen, row in rows:
        if "version_id" in row and not ("is_latest" in row and "is_delete_marker" in row):
            raise InventoryError(f"data file {key} lists versions (version_id) without is_latest and is_delete_marker: old versions and deletions cannot be told from current objects")
        current = "is_latest" not in row or _boolean(row["is_latest"], "is_latest", key, seen)
        if "is_delete_marker" in row and _boolean(row["is_delete_marker"], "is_delete_marker", key, seen) or not current:
            continue  # an older version, or a deletion: not what the bucket holds now
        bucket, name, etag = row["bucket"], row["key"], row.get("e_tag")
        if not isinstance(bucket, str) or not isinstance(name, str) or not isinstance(etag, str | None):
            raise InventoryError(f"data file {key} row {seen}: its bucket, key or e_tag is not text")
        size, modified = _parquet_size_and_time(row["size"], row["last_modified_date"], key, seen)
        yield bucket, name, size, modified, _etag(etag) if etag is not None else None


def _parquet_size_and_time(length: Any, modified: Any, key: str, row: int) -> tuple[int, datetime | None]:
    """A Parquet row's size (a whole number of bytes, at most 16 digits) and last-modified time, or the refusal."""
    try:
        return (_size(str(length)) if length is not None else 0), _parquet_time(modified)
    except (ValueError, TypeError, OverflowError) as e:
        raise InventoryError(f"data file {key} row {row}: {e}") from None


def _longest(column: Any) -> int:
    """The most characters of any value of a text column (of its dictionary, if it is one), counted by Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = [chunk.dictionary if pa.types.is_dictionary(chunk.type) else chunk for chunk in column.chunks]
    lengths = [pc.max(pc.utf8_length(chunk)).as_py() for chunk in chunks if len(chunk) and (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type))]
    return max((n for n in lengths if n is not None), default=0)


def _boolean(value: Any, column: str, key: str, row: int) -> bool:
    """An S3 flag column's value: a Boolean, or the text S3 writes (true, false, in any case); anything else (empty
    included) is refused, for read either way it could pass an old version or a deletion for a current object."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InventoryError(f"data file {key} row {row}: {column} is {str(value)[:40]!r}, neither true nor false")


def _flag(value: Any) -> str:
    return str(value).lower() if value is not None else ""


def _parquet_time(value: Any) -> datetime | None:
    """A Last-Modified of a Parquet run (a timestamp, milliseconds since the epoch, or text), to the whole second."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC).replace(microsecond=0)
    if isinstance(value, str):
        return _azure_time(value)
    raise ValueError(f"Last-Modified {str(value)[:40]!r} is not a time")
