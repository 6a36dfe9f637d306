"""Benchmark: LIST requests of an S3 re-audit with incremental listing, against one full listing.

Run: .venv/bin/python bench/listing_bench.py [--windows 1000,2000] [--datasets 4] [--per-window 10]

For each tree size, an S3 bucket on a moto server (in this process) gets `windows` 3-hourly export
folders spread over `datasets` datasets, each with `per-window` gzip-Parquet files and a manifest.
Then, with moto's request recorder on, it counts the listing requests (GET on the bucket) of:
- (a) the floor: one raw recursive listing of the tree (`FsspecStore.list`, s3fs `find`);
- (b) the first audit (a full sweep: nothing is settled yet);
- (c) a re-audit of the unchanged tree an hour later (incremental: only windows that can still change);
- (d) the same re-audit forced to sweep in full (`--full-sweep`);
- (e) a day later, the scheduled full sweep of the same destination with an S3 Inventory report of the
  bucket (delivered an hour after (c)): the report's reads, and listings of the windows it cannot speak for.
Goal (issue 10): (c) proportional to the open windows, not to the tree: across tree sizes, (a) and
(d) grow with the tree while (c) stays flat. It prints each count, (c)/(a), the open windows and
prefixes of (c), and the data bytes (c) read (0: nothing changed).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

STEP = timedelta(hours=3)
DESTINATION_ID = "d0420d72-756c-4159-9e7f-7d3e2f8b501e"
BUCKET = "bench-exports"


def seed_tree(start: datetime, *, datasets: int, windows: int, per_window: int, prefix: str) -> int:
    """Put the tree straight into the in-process moto backend (windows from `start` on); returns the object count."""
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    from auditor.exporter import encode_records, spark_name

    s3 = get_backend("s3")[DEFAULT_ACCOUNT_ID]["global"]
    parts = [encode_records([{"id": i * 100 + j, "city": f"c{j % 7}"} for j in range(20)], file_format="parquet", compression="gzip") for i in range(per_window)]
    per_dataset = windows // datasets
    count = 0
    for d in range(datasets):
        dataset = f"{d:024x}"
        for w in range(per_dataset):
            when = start + w * STEP
            folder = f"{prefix}/{dataset}/exportTime={when:%Y%m%d%H%M}"
            rng = random.Random(f"{dataset}-{w}")
            results = []
            for index, data in enumerate(parts):
                name = spark_name(index, ".gz.parquet", rng)
                s3.put_object(BUCKET, f"{folder}/{name}", data)
                results.append({"sinkPath": f"/{BUCKET}/{folder}", "name": name, "size": len(data)})
            run_id = f"{rng.getrandbits(64):016x}"
            body = json.dumps({"flowRunId": run_id, "scheduledTime": f"{when:%Y-%m-%dT%H:%M:%SZ}", "exportResults": results}).encode()
            s3.put_object(BUCKET, f"{folder}/manifest-{DESTINATION_ID}-{run_id}.json", body)
            count += per_window + 1
    return count


def settings_for(endpoint: str, prefix: str, catalog: Path, *, datasets: int, start: datetime) -> Any:
    from auditor.config import load_settings

    ids = ", ".join(f'"{d:024x}"' for d in range(datasets))
    path = catalog.with_suffix(".toml")
    path.write_text(
        f"""
[catalog]
url = "sqlite:///{catalog}"
[validation]
isolate = false
[[destinations]]
name = "s3"
url = "s3://{BUCKET}/{prefix}"
options = {{ endpoint_url = "{endpoint}", key = "testing", secret = "testing" }}
[[exports]]
name = "bench"
destination = "s3"
datasets = [{ids}]
format = "parquet"
manifest = true
schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 3, startTime = "{start:%Y-%m-%dT%H:%M:%SZ}" }}
"""
    )
    return load_settings(path, {})


INVENTORY_BUCKET = "bench-inventory"
INVENTORY_BASE = f"reports/{BUCKET}/daily"


def write_inventory(endpoint: str, as_of: datetime) -> None:
    """An S3 Inventory report of the whole bucket as it is now, delivered (straight into moto) under `as_of`."""
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    from auditor.exporter import s3_inventory_report

    s3 = get_backend("s3")[DEFAULT_ACCOUNT_ID]["global"]
    keys = sorted(s3.get_bucket(BUCKET).keys.values(), key=lambda k: k.name)  # the current version of each
    rows = [[BUCKET, quote_plus(k.name, safe="/"), str(k.size), f"{k.last_modified:%Y-%m-%dT%H:%M:%S.000Z}", k.etag.strip('"')] for k in keys]
    for key, data in s3_inventory_report(BUCKET, INVENTORY_BUCKET, INVENTORY_BASE, as_of, rows).items():
        s3.put_object(INVENTORY_BUCKET, key, data)


class Requests:
    """Counts the requests moto serves, from its own recorder (every request, as the server saw it)."""

    def __init__(self, folder: Path) -> None:
        from moto.moto_api import recorder

        self._recorder = recorder
        self._file = folder / "moto-requests.jsonl"
        recorder._location = str(self._file)
        recorder.start_recording()

    def count(self) -> tuple[int, int]:
        """(listing requests, all requests) since the last call."""
        lines = [json.loads(line) for line in self._file.read_text().splitlines()] if self._file.exists() else []
        self._recorder.reset_recording()
        listings = sum(1 for r in lines if r["method"] == "GET" and ("list-type=" in r["url"] or "delimiter=" in r["url"] or "prefix=" in r["url"]))
        return listings, len(lines)


def measure(endpoint: str, folder: Path, requests: Requests, *, datasets: int, windows: int, per_window: int) -> dict[str, Any]:
    from auditor.audit import AuditOptions
    from auditor.config import InventorySettings
    from auditor.runtime import Runtime
    from auditor.storage import open_store

    # objects on S3 carry the time they were written, so the tree ends just before now and the audits
    # look at it from the near future (every window is then late, which is good and settles like ok)
    now = datetime.now(UTC)
    last_slot = now.replace(hour=now.hour - now.hour % 3, minute=0, second=0, microsecond=0) - STEP
    start = last_slot - (windows // datasets - 1) * STEP
    prefix = f"tree-{windows}"
    objects = seed_tree(start, datasets=datasets, windows=windows, per_window=per_window, prefix=prefix)
    settings = settings_for(endpoint, prefix, folder / f"catalog-{windows}.db", datasets=datasets, start=start)
    requests.count()
    store = open_store(settings.destinations[0].url, settings.destinations[0].options)
    listed = len(store.list())
    floor = requests.count()
    figures: dict[str, Any] = {"windows": windows, "objects": objects, "listed": listed, "floor": floor}
    with Runtime(settings) as runtime:
        first = runtime.audit(now=now + timedelta(minutes=10))
        figures["first"] = requests.count()
        started = time.perf_counter()
        again = runtime.audit(now=now + timedelta(minutes=40))
        figures["incremental_seconds"] = time.perf_counter() - started
        figures["incremental"] = requests.count()
        swept = runtime.audit(now=now + timedelta(minutes=40), options=AuditOptions(full_sweep=True))  # the same as-of: the verdicts must agree
        figures["swept"] = requests.count()
    assert first is not None and again is not None and swept is not None
    # (e) a day later the scheduled sweep reads the bucket's S3 Inventory report (its scan an hour after the audits above)
    report_time = (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    write_inventory(endpoint, report_time)
    inventoried = settings.model_copy(
        update={"destinations": [settings.destinations[0].model_copy(update={"inventory": InventorySettings(url=f"s3://{INVENTORY_BUCKET}/{INVENTORY_BASE}")})]}
    )
    later = now + timedelta(days=1, hours=1)
    requests.count()
    with Runtime(inventoried) as runtime:
        started = time.perf_counter()
        from_report = runtime.audit(now=later)
        figures["inventory_seconds"] = time.perf_counter() - started
        figures["inventory"] = requests.count()
        listed_live = runtime.audit(now=later, options=AuditOptions(full_sweep=True))
        requests.count()
    assert from_report is not None and listed_live is not None
    figures["inventory_listing"] = from_report.method["listing"]["s3"]
    figures["inventory_same_verdicts"] = from_report.counts() == listed_live.counts()
    figures["listing"] = again.method["listing"]["s3"]
    figures["bytes_read"] = again.assurance.bytes_read
    figures["same_verdicts"] = again.counts() == swept.counts()
    figures["status"] = again.status
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", default="1000,2000", help="tree sizes in windows, comma-separated")
    parser.add_argument("--datasets", type=int, default=4)
    parser.add_argument("--per-window", type=int, default=10, help="data files per window (plus one manifest)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import logging

    from tests.servers import moto_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, moto_server() as moto:
        import boto3

        boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=INVENTORY_BUCKET)
        requests = Requests(Path(tmp))
        for windows in (int(w) for w in args.windows.split(",")):
            rows.append(measure(moto.endpoint, Path(tmp), requests, datasets=args.datasets, windows=windows, per_window=args.per_window))
    print(f"{'windows':>8} {'objects':>8} | {'(a) raw listing':>15} {'(b) first audit':>15} {'(c) re-audit':>12} {'(d) full sweep':>14} | (c)/(a) | open windows, prefixes | (c) bytes read")
    for r in rows:
        ratio = r["incremental"][0] / r["floor"][0]
        listing = r["listing"]
        print(
            f"{r['windows']:>8} {r['objects']:>8} | {r['floor'][0]:>15} {r['first'][0]:>15} {r['incremental'][0]:>12} {r['swept'][0]:>14} | {ratio:7.2f} |"
            f" {listing['open_windows']}, {listing['prefixes']} ({listing['mode']}) | {r['bytes_read']}"
        )
    print("(e) a day later, the scheduled full sweep from an S3 Inventory report of the bucket (its scan 1 h after the audits):")
    for r in rows:
        listing = r["inventory_listing"]
        print(
            f"  {r['windows']} windows: {listing['source']}: LIST requests {r['inventory'][0]} (all requests {r['inventory'][1]}) in {r['inventory_seconds']:.2f} s,"
            f" against {r['swept'][0]} for the full listing (d); {listing['prefixes']} prefixes listed live; same verdicts as a live sweep: {r['inventory_same_verdicts']}"
        )
    print("LIST requests per step (all requests to moto in brackets):")
    for r in rows:
        print(f"  {r['windows']} windows: raw {r['floor']}, first {r['first']}, re-audit {r['incremental']} in {r['incremental_seconds']:.2f} s, full sweep {r['swept']}; same verdicts: {r['same_verdicts']}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
