"""Turn the org's dataset-export flows into export expectations ([[exports]] entries).

Each flow's target (bucket/container and path) is matched to a configured [[destinations]] entry,
which holds the credentials the auditor reads with; the remainder of the path becomes the export's
`path`. Flows no destination covers are reported, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from auditor.config import DestinationSettings, Settings
from auditor.flows import DESTINATIONS
from auditor.flows.client import FlowsClient
from auditor.flows.models import Connection, Flow


@dataclass
class SyncResult:
    exports: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # flows that could not be turned into exports


def fetch_and_sync(client: FlowsClient, settings: Settings) -> SyncResult:
    """Read every dataset-export flow with its connections and turn them into exports."""
    result = SyncResult()
    names: set[str] = set()
    for flow in client.flows():
        if not flow.source_connection_ids or not flow.target_connection_ids:
            result.problems.append(f"flow {flow.id} ({flow.name}): no source or target connection")
            continue
        source = client.source_connection(flow.source_connection_ids[0])
        target = client.target_connection(flow.target_connection_ids[0])
        export, problem = export_for_flow(flow, source, target, settings.destinations, dlz_destination=settings.flow_service.dlz_destination if settings.flow_service else None)
        if export is None:
            result.problems.append(f"flow {flow.id} ({flow.name}): {problem}")
            continue
        base = export["name"]
        suffix = 2
        while export["name"] in names:
            export["name"] = f"{base}-{suffix}"
            suffix += 1
        names.add(export["name"])
        result.exports.append(export)
    return result


def export_for_flow(
    flow: Flow, source: Connection, target: Connection, destinations: Sequence[DestinationSettings], *, dlz_destination: str | None
) -> tuple[dict[str, Any] | None, str]:
    """The [[exports]] entry for one flow, or None and why not."""
    if target.spec_id not in DESTINATIONS:
        return None, f"target connection spec {target.spec_id} is not a cloud-storage destination"
    kind, _, scheme = DESTINATIONS[target.spec_id]
    params = target.params
    datasets = [str(d.get("dataSetId")) for d in source.params.get("datasets") or [] if isinstance(d, dict) and d.get("dataSetId")]
    if not datasets:
        return None, "its source connection lists no datasets"
    found = _destination(kind, scheme, params, destinations, dlz_destination)
    if isinstance(found, str):
        return None, found
    destination, path = found
    schedule = {k: v for k, v in flow.schedule_params.items() if k in ("exportMode", "timeUnit", "interval", "startTime", "endTime", "foldernameTemplate", "folderNameTemplate")}
    export: dict[str, Any] = {
        "name": _slug(flow.name) or f"flow-{flow.id[:8]}",
        "destination": destination,
        "path": path,
        "datasets": datasets,
        "format": str(params.get("datasetFileType", "JSON")).lower(),
        "compression": str(params.get("compression", "GZIP")).lower(),
        "manifest": bool(params.get("includeFileManifest", False)),
        "flow_id": flow.id,
        "schedule": schedule,
    }
    return export, ""


def _destination(kind: str, scheme: str, params: Mapping[str, Any], destinations: Sequence[DestinationSettings], dlz: str | None) -> tuple[str, str] | str:
    path = str(params.get("path") or params.get("remotePath") or "").strip("/")
    if kind == "Data Landing Zone":
        if not dlz:
            return "a Data Landing Zone flow, but flow_service.dlz_destination names no destination"
        return dlz, path
    container = str(params.get("bucketName") or params.get("container") or "").strip("/")
    location = f"{container}/{path}".strip("/") if container else path
    for destination in destinations:
        parts = urlsplit(destination.url)
        if parts.scheme != scheme:
            continue
        root = f"{parts.netloc}/{parts.path.strip('/')}".strip("/") if scheme != "sftp" else parts.path.strip("/")
        if location == root:
            return destination.name, ""
        if location.startswith(root + "/"):
            return destination.name, location[len(root) + 1 :]
    return f"no [[destinations]] entry covers {scheme}://{location} ({kind}); add one with its credentials"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]
