"""Adobe's manifest files (reference §5.4): strict parsing and comparison with a folder."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from auditor.findings import Finding, error, warning

MAX_MANIFEST = 16 * 1024 * 1024


class ManifestEntry(NamedTuple):  # a few per manifest, a million in an estate's sweep: made as a tuple, not a frozen dataclass
    sink_path: str
    name: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: the run that wrote it, its scheduled time and the files it lists."""

    flow_run_id: str
    scheduled_time: datetime
    entries: tuple[ManifestEntry, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "flowRunId": self.flow_run_id,
            "scheduledTime": self.scheduled_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "exportResults": [{"sinkPath": e.sink_path, "name": e.name, "size": e.size} for e in self.entries],
        }


def parse_manifest(data: bytes, url: str) -> tuple[Manifest | None, list[Finding]]:
    """Parse manifest bytes strictly; a manifest that cannot be trusted is None plus findings."""
    if not data:
        return None, [error("manifest.empty", url, "zero-byte manifest")]
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_reject)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        return None, [error("manifest.unreadable", url, f"not valid UTF-8 JSON: {str(e)[:200]}")]
    return manifest_from_json(document, url)


def manifest_from_json(document: Any, url: str) -> tuple[Manifest | None, list[Finding]]:
    def bad(message: str) -> tuple[None, list[Finding]]:
        return None, [error("manifest.malformed", url, message)]

    if not isinstance(document, dict):
        return bad("not a JSON object")
    run_id, scheduled, results = document.get("flowRunId"), document.get("scheduledTime"), document.get("exportResults")
    if not isinstance(run_id, str) or not run_id:
        return bad("flowRunId is missing or not a string")
    if not isinstance(scheduled, str):
        return bad("scheduledTime is missing or not a string")
    try:
        when = datetime.fromisoformat(scheduled)
    except ValueError:
        return bad(f"scheduledTime {scheduled!r} is not ISO-8601")
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if not isinstance(results, list):
        return bad("exportResults is missing or not a list")
    entries: list[ManifestEntry] = []
    findings: list[Finding] = []
    sinks: dict[str, str] = {}
    for index, item in enumerate(results):
        if not isinstance(item, dict):
            return bad(f"exportResults[{index}] is not an object")
        name, size, sink = item.get("name"), item.get("size"), item.get("sinkPath", "")
        if not isinstance(name, str) or not name:
            return bad(f"exportResults[{index}].name is missing or not a string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return bad(f"exportResults[{index}].size {size!r} is not a byte count")
        if not isinstance(sink, str):
            return bad(f"exportResults[{index}].sinkPath is not a string")
        if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
            findings.append(error("manifest.bad_name", url, f"exportResults[{index}].name {name!r} leaves the export folder"))
            continue
        entries.append(ManifestEntry(sinks.setdefault(sink, sink), name, size))  # a folder's entries share one sinkPath
    return Manifest(run_id, when, tuple(entries)), findings


def compare_manifests(
    manifests: Mapping[str, Manifest],
    data_files: Mapping[str, int],
    *,
    folder_url: str,
    folder_key: str,
    folder_time: datetime,
) -> tuple[list[Finding], bool]:
    """Compare the folder's manifests (by URL) with its data files (name -> size).

    Returns the findings and whether every listed file is present with its listed size.
    """
    findings: list[Finding] = []
    if len(manifests) > 1:
        findings.append(warning("manifest.multiple", folder_url, f"{len(manifests)} manifests in one folder (a re-run?): read together"))
    listed: dict[str, int] = {}
    complete = True
    for url, manifest in sorted(manifests.items()):
        if manifest.scheduled_time.replace(second=0, microsecond=0) != folder_time.replace(second=0, microsecond=0):
            findings.append(error("manifest.scheduled_time", url, f"scheduledTime {manifest.scheduled_time:%Y-%m-%dT%H:%M:%SZ} disagrees with the folder's {folder_time:%Y-%m-%dT%H:%M:%SZ}"))
        for entry in manifest.entries:
            listed.setdefault(entry.name, entry.size)
            if entry.sink_path and not _sink_matches(entry.sink_path, folder_key):
                findings.append(warning("manifest.sink_path", url, f"sinkPath {entry.sink_path!r} does not end with {folder_key!r}"))
            size = data_files.get(entry.name)
            if size is None:
                complete = False
                findings.append(error("manifest.file_absent", f"{folder_url}/{entry.name}", f"listed in {url.rsplit('/', 1)[-1]} but not in the folder"))
            elif size != entry.size:
                complete = False
                findings.append(error("manifest.size_mismatch", f"{folder_url}/{entry.name}", f"{size} bytes, manifest says {entry.size}"))
    for name in sorted(set(data_files) - set(listed)):
        findings.append(error("manifest.unlisted_file", f"{folder_url}/{name}", "data file not listed in any manifest"))
    return _unique(findings), complete


def _sink_matches(sink_path: str, folder_key: str) -> bool:
    tail = "/".join(folder_key.strip("/").split("/")[-2:])
    return tail in sink_path


def _unique(findings: Sequence[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


def _reject(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")
