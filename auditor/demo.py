"""`auditor demo`: a realistic export tree with a handful of defects, in a temporary folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from auditor.exporter import sample_records, write_export

WEB_EVENTS = "5ef3e3259ad2a1191ab7dd7d"
PROFILES = "6a1b2c3d4e5f60718293a4b5"
STRANGER = "0badc0ffee0ddf00d1234567"


@dataclass(frozen=True)
class DemoTree:
    root: Path
    config: Path
    as_of: datetime
    defects: tuple[str, ...]


def build_demo(workspace: Path, now: datetime) -> DemoTree:
    """Write three days of exports for two datasets, with defects, and a config that audits them."""
    root = workspace / "exports"
    url = root.as_uri()
    as_of = now.replace(minute=30, second=0, microsecond=0)
    start = (as_of - timedelta(days=3)).replace(hour=0, minute=0)
    defects = []
    slot = start
    while slot <= as_of:
        records = sample_records(WEB_EVENTS, slot, 400 if slot == start else 40)
        if slot == start + timedelta(days=1, hours=9):
            defects.append(f"{slot:%Y-%m-%dT%H:%MZ} web-events: window missing (nothing landed)")
        elif slot + timedelta(hours=1) > as_of:
            pass  # the newest slot is still inside its grace period: nothing landed yet
        else:
            written = write_export(url, WEB_EVENTS, slot, records, file_format="parquet", compression="gzip", parts=2, manifest=True)
            stamp = slot + timedelta(minutes=12)
            if slot == start + timedelta(days=2, hours=3):
                _truncate(root / written[0].key)
                defects.append(f"{slot:%Y-%m-%dT%H:%MZ} web-events: truncated Parquet file")
            if slot == start + timedelta(days=1, hours=18):
                stamp = slot + timedelta(hours=2, minutes=40)
                defects.append(f"{slot:%Y-%m-%dT%H:%MZ} web-events: landed 2h40m late")
            for item in written:
                _touch(root / item.key, stamp)
        slot += timedelta(hours=3)
    day = start
    while day <= as_of:
        written = write_export(url, PROFILES, day, sample_records(PROFILES, day, 120), file_format="json", compression="gzip", parts=3, manifest=True)
        if day == start + timedelta(days=2):
            (root / written[-1].key).write_text((root / written[-1].key).read_text().replace('"size":', '"size":1', 1))
            defects.append(f"{day:%Y-%m-%dT%H:%MZ} profiles: manifest size disagrees with the file")
        for item in written:
            _touch(root / item.key, day + timedelta(minutes=25))
        day += timedelta(days=1)
    stray = write_export(url, STRANGER, start, sample_records(STRANGER, start, 5), manifest=False, parts=1)
    for item in stray:
        _touch(root / item.key, start + timedelta(minutes=5))
    defects.append(f"dataset {STRANGER}: exported but not configured (unexpected)")
    config = workspace / "auditor.toml"
    config.write_text(
        f"""# written by `auditor demo`
[catalog]
url = "sqlite:///{workspace / 'catalog.db'}"

[[destinations]]
name = "backups"
url = "{url}"

[[exports]]
name = "web-events"
destination = "backups"
datasets = ["{WEB_EVENTS}"]
format = "parquet"
compression = "gzip"
manifest = true
grace = "1h"
schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 3, startTime = "{start:%Y-%m-%dT%H:%M:%SZ}" }}

[[exports]]
name = "profiles"
destination = "backups"
datasets = ["{PROFILES}"]
format = "json"
compression = "gzip"
manifest = true
grace = "2h"
schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "day", interval = 1, startTime = {int(start.timestamp())} }}
""",
        encoding="utf-8",
    )
    return DemoTree(root, config, as_of, tuple(defects))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _touch(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))
