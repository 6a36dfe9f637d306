"""Write export folders the way AEP does (reference §5): Spark-style part files and a manifest.

Used by `auditor demo`, the tests and (later) the Flow Service emulator; never by the audit,
which only reads.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from auditor.layout import parse_layout
from auditor.validate import suffix_for


@dataclass(frozen=True)
class WrittenFile:
    key: str  # relative to the destination root
    size: int


def spark_name(index: int, suffix: str, rng: random.Random) -> str:
    """A Spark-style part-file name like the official samples (reference §5.3)."""
    tid = rng.randrange(10**18, 10**19)
    job = uuid.UUID(int=rng.getrandbits(128), version=4)
    return f"part-{index:05d}-tid-{tid}-{job}-{rng.randrange(100000, 999999)}-1-c000{suffix}"


def encode_records(records: Sequence[dict[str, Any]], *, file_format: str, compression: str) -> bytes:
    """The bytes of one data file holding `records`."""
    if file_format == "json":
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        return gzip.compress(text, mtime=0) if compression == "gzip" else text
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(list(records)), buffer, compression="gzip" if compression == "gzip" else "none", write_page_checksum=True)
    return buffer.getvalue()



def write_export(
    url: str,
    dataset_id: str,
    scheduled: datetime,
    records: Sequence[dict[str, Any]],
    *,
    file_format: str = "parquet",
    compression: str = "gzip",
    parts: int = 2,
    manifest: bool = True,
    template: str | None = None,
    flow_run_id: str | None = None,
    destination_id: str = "d0420d72-756c-4159-9e7f-7d3e2f8b501e",
    seed: int = 0,
    storage_options: dict[str, Any] | None = None,
) -> list[WrittenFile]:
    """Write one export folder for `dataset_id` at `scheduled` under `url`; returns what it wrote."""
    rng = random.Random(f"{dataset_id}-{scheduled.isoformat()}-{seed}")
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    folder = parse_layout(template).folder_for(dataset_id, scheduled)
    fs.makedirs(f"{root}/{folder}", exist_ok=True)
    written: list[WrittenFile] = []
    suffix = suffix_for(file_format, compression)
    chunks = [records[i::parts] for i in range(parts)] if records else []
    for index, chunk in enumerate(chunks):
        data = encode_records(chunk, file_format=file_format, compression=compression)
        key = f"{folder}/{spark_name(index, suffix, rng)}"
        fs.pipe_file(f"{root}/{key}", data)
        written.append(WrittenFile(key, len(data)))
    if manifest:
        run_id = flow_run_id or str(uuid.UUID(int=rng.getrandbits(128), version=4))
        body = {
            "flowRunId": run_id,
            "scheduledTime": scheduled.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "exportResults": [{"sinkPath": f"/{root.strip('/')}/{folder}", "name": w.key.rsplit("/", 1)[-1], "size": w.size} for w in written],
        }
        key = f"{folder}/manifest-{destination_id}-{run_id}.json"
        data = json.dumps(body, separators=(",", ":")).encode()
        fs.pipe_file(f"{root}/{key}", data)
        written.append(WrittenFile(key, len(data)))
    return written


def sample_records(dataset_id: str, scheduled: datetime, count: int) -> list[dict[str, Any]]:
    """Plausible experience-event rows for demos and tests."""
    rng = random.Random(f"{dataset_id}{scheduled.isoformat()}")
    cities = ["new york", "london", "amsterdam", "tokyo", "sao paulo"]
    return [
        {
            "_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "timestamp": scheduled.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "city": rng.choice(cities),
            "revenue": round(rng.uniform(0, 500), 2),
        }
        for _ in range(count)
    ]


INVENTORY_SCHEMA = "Bucket, Key, Size, LastModifiedDate, ETag"
Tamper = Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]


S3_PARQUET_COLUMNS = {"Bucket": "bucket", "Key": "key", "VersionId": "version_id", "IsLatest": "is_latest", "IsDeleteMarker": "is_delete_marker",
                      "Size": "size", "LastModifiedDate": "last_modified_date", "ETag": "e_tag"}
Column = tuple[str, Callable[[str], Any], pa.DataType]  # a Parquet column of an inventory: its name, from the CSV text to a value, its type
Typed = dict[str, tuple[Callable[[str], Any], pa.DataType]]  # field -> (from the CSV text to a value, Parquet type); others are text


def _parquet_of(rows: Sequence[Sequence[str]], columns: Sequence[Column]) -> bytes:
    """Rows of an inventory's CSV text as a Parquet file of typed columns, one per field in order."""
    sink = io.BytesIO()
    pq.write_table(pa.table({name: pa.array([convert(row[i]) for row in rows], kind) for i, (name, convert, kind) in enumerate(columns)}), sink)
    return sink.getvalue()


def _column(name: str, field: str, types: Typed) -> Column:
    convert, kind = types.get(field, (str, pa.string()))
    return name, convert, kind


def s3_inventory_report(
    source_bucket: str, report_bucket: str, base: str, as_of: datetime, rows: Iterable[Sequence[str]], *, schema: str = INVENTORY_SCHEMA,
    tamper: Tamper | None = None, file_format: str = "CSV",
) -> dict[str, bytes]:
    """The objects S3 Inventory delivers for one CSV (or Parquet) report of `source_bucket` under `base`
    (destination-prefix/source-bucket/config-ID) in `report_bucket`: {key: bytes}. `rows` hold the
    schema's columns as CSV text, keys URL-encoded as S3 writes them in CSV (a Parquet report holds them
    as they are, its columns named and typed as S3 does); `tamper` may change the manifest and data file
    before they are written (tests of reports that fail a check)."""
    fields = [c.strip() for c in schema.split(",")]
    if file_format == "Parquet":
        flag = ((lambda v: v == "true"), pa.bool_())
        types: Typed = {"IsLatest": flag, "IsDeleteMarker": flag, "Size": (int, pa.int64()), "LastModifiedDate": (datetime.fromisoformat, pa.timestamp("ms", tz="UTC")),
                        "Key": (unquote_plus, pa.string())}  # S3 writes a Parquet report's keys as they are
        data = _parquet_of(list(rows), [_column(S3_PARQUET_COLUMNS[f], f, types) for f in fields])
        key = f"{base}/data/{hashlib.sha256(data).hexdigest()[:32]}.parquet"
        schema = "message s3.inventory { " + " ".join(f"optional binary {S3_PARQUET_COLUMNS[f]} (UTF8);" for f in fields) + " }"
    else:
        data = gzip.compress("".join(",".join(f'"{value}"' for value in row) + "\n" for row in rows).encode(), mtime=0)
        key = f"{base}/data/{hashlib.sha256(data).hexdigest()[:32]}.csv.gz"
    manifest: dict[str, Any] = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{report_bucket}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(as_of.timestamp() * 1000)),
        "fileFormat": file_format,
        "fileSchema": schema,
        "files": [{"key": key, "size": len(data), "MD5checksum": hashlib.md5(data, usedforsecurity=False).hexdigest()}],
    }
    if tamper is not None:
        manifest, data = tamper(manifest, data)
    body = json.dumps(manifest).encode()
    folder = f"{base}/{as_of:%Y-%m-%dT%H-%MZ}"
    return {key: data, f"{folder}/manifest.json": body, f"{folder}/manifest.checksum": (hashlib.md5(body, usedforsecurity=False).hexdigest() + "\n").encode()}


AZURE_INVENTORY_FIELDS = ["Name", "Creation-Time", "Last-Modified", "Etag", "Content-Length", "BlobType"]


def azure_inventory_report(
    endpoint: str, container: str, rule: str, started: datetime, rows: Iterable[Sequence[str]], *,
    fields: Sequence[str] = tuple(AZURE_INVENTORY_FIELDS), prefixes: Sequence[str] = (), tamper: Tamper | None = None, file_format: str = "csv",
) -> dict[str, bytes]:
    """The blobs an Azure blob inventory run of `rule` writes into `container` of the account at `endpoint`,
    begun at `started`: {blob name: bytes}. `rows` hold the fields' values as text, each blob's Name as
    container/path; in a Parquet run Content-Length is an int64 and the times are timestamps in
    milliseconds. `tamper` may change the manifest and the data file before they are written."""
    folder = f"{started:%Y/%m/%d/%H-%M-%S}/{rule}"
    rows = [list(row) for row in rows]
    if file_format == "parquet":
        time = (datetime.fromisoformat, pa.timestamp("ms", tz="UTC"))
        types: Typed = {"Content-Length": (int, pa.int64()), "Creation-Time": time, "Last-Modified": time}
        data, key = _parquet_of(rows, [_column(f, f, types) for f in fields]), f"{folder}/{rule}_1000000_0.parquet"
    else:
        out = io.StringIO(newline="")
        writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(fields)
        writer.writerows(rows)
        data, key = out.getvalue().encode(), f"{folder}/{rule}_1000000_0.csv"
    manifest: dict[str, Any] = {
        "destinationContainer": container,
        "endpoint": endpoint,
        "files": [{"blob": key, "size": len(data)}],
        "inventoryCompletionTime": f"{started + timedelta(minutes=10):%Y-%m-%dT%H:%M:%SZ}",
        "inventoryStartTime": f"{started:%Y-%m-%dT%H:%M:%SZ}",
        "ruleDefinition": {
            "filters": {"blobTypes": ["blockBlob"], "includeBlobVersions": False, "includeSnapshots": False, "prefixMatch": list(prefixes)},
            "format": file_format, "objectType": "blob", "schedule": "daily", "schemaFields": list(fields),
        },
        "ruleName": rule,
        "status": "Succeeded",
        "summary": {"objectCount": len(rows), "totalObjectSize": 0},
        "version": "1.0",
    }
    if tamper is not None:
        manifest, data = tamper(manifest, data)
    body = json.dumps(manifest, indent=2).encode()
    return {key: data, f"{folder}/{rule}-manifest.json": body, f"{folder}/{rule}-manifest.checksum": hashlib.md5(body, usedforsecurity=False).hexdigest().encode()}
