"""Turn the org's dataset-export flows into export expectations ([[exports]] entries).

Each flow's target (bucket/container and path) is matched to a configured [[destinations]] entry,
which holds the credentials the auditor reads with; the remainder of the path becomes the export's
`path`. Flows no destination covers are reported, not guessed.

Everything a flow says is data that anyone with dataflow rights in AEP chose, and the entries are
written into TOML that the config loader resolves `${env:…}`/`${file:…}` in. So a flow is refused,
with a problem line, when any value taken from it holds `${`, a control character, a `.`/`..`/empty
path segment, or does not have AEP's shape (dataset IDs, paths, schedule, folder template); an
entry that is written always loads exactly as it was written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from auditor.config import DestinationSettings, ExportSettings, Settings
from auditor.errors import FlowsError, LayoutError
from auditor.flows import DESTINATIONS
from auditor.flows.client import FlowsClient
from auditor.flows.models import Connection, Flow
from auditor.layout import parse_layout

SCHEDULE_KEYS = ("exportMode", "timeUnit", "interval", "startTime", "endTime", "foldernameTemplate", "folderNameTemplate")
# AEP dataset IDs are 24 hexadecimal characters (every ID in the reference and in Adobe's examples)
_DATASET_ID = re.compile(r"[0-9a-fA-F]{24}")
# flow IDs are UUIDs; accept any UUID-like token
_FLOW_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}")
# the connection specs' path patterns (reference §3.3), without the audience-only %SEGMENT_…% macros;
# ADLS Gen2, the Data Landing Zone and SFTP publish none, so only the rules every path obeys apply
_PATH_CHARS = {
    "Amazon S3": re.compile(r"[0-9a-zA-Z/!\-_.*'()]*"),
    "Google Cloud Storage": re.compile(r"[0-9a-zA-Z/!\-_.*'()]*"),
    "Azure Blob Storage": re.compile(r"[0-9a-zA-Z/!\-_.*'()]*"),
}
_CONTAINER = re.compile(r"[0-9a-z][0-9a-z._-]*")  # bucket/container names: lenient, but one plain segment
_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # an export name a sync gives: a slug, suffixed -2, -3 … (at most 60 + the suffix)


class _Refused(ValueError):
    """A value taken from a flow that the auditor will not write into its configuration."""


@dataclass
class SyncResult:
    exports: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # flows that could not be turned into exports


def fetch_and_sync(client: FlowsClient, settings: Settings, previous: Mapping[str, Mapping[str, Any]] | None = None) -> SyncResult:
    """Read every dataset-export flow with its connections and turn them into exports.

    An export's name is its identity in the catalog (its windows, alert episodes, restore lookups), so a flow keeps
    the name the last sync gave it (`previous`: its entries by flow id; else the configured exports' names), even
    when it is renamed in AEP; a new flow takes its name's slug, suffixed `-2`, `-3` … in the order of flow ids when
    taken (the API lists flows newest-updated first: an edit in AEP swapped two exports' names). A flow whose
    connections cannot be read (deleted in AEP: 404) is reported and keeps the entry the last sync wrote, if
    `previous` holds it, so that its windows are still audited; a failing service raises (FlowsError) and nothing
    is written."""
    result = SyncResult()
    if previous is None:
        previous = {e.flow_id: {"name": e.name} for e in settings.exports if e.flow_id}
    dlz = settings.flow_service.dlz_destination if settings.flow_service else None
    found: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for flow in sorted(client.flows(), key=lambda f: f.id):
        if not flow.source_connection_ids or not flow.target_connection_ids:
            result.problems.append(f"flow {_escaped(flow.id)} ({_escaped(flow.name)}): no source or target connection")
            continue
        try:
            source = client.source_connection(flow.source_connection_ids[0])
            target = client.target_connection(flow.target_connection_ids[0])
        except FlowsError as e:
            if e.status_code != 404:
                raise
            last = previous.get(flow.id)
            if last is not None and "destination" in last:
                kept.append(dict(last))
                result.problems.append(f"flow {_escaped(flow.id)} ({_escaped(flow.name)}): its connections cannot be read ({_escaped(str(e))}); "
                                       f"its export {_escaped(str(last.get('name')))} is kept as the last sync wrote it")
            else:
                result.problems.append(f"flow {_escaped(flow.id)} ({_escaped(flow.name)}): its connections cannot be read ({_escaped(str(e))})")
            continue
        export, problem = export_for_flow(flow, source, target, settings.destinations, dlz_destination=dlz)
        if export is None:
            result.problems.append(f"flow {_escaped(flow.id)} ({_escaped(flow.name)}): {problem}")
            continue
        found.append(export)
    names: set[str] = set()
    fresh: list[dict[str, Any]] = []
    for export in kept + found:  # the names the last sync gave first, so that no new flow takes one
        name = previous.get(export["flow_id"], {}).get("name")
        if isinstance(name, str) and _NAME.fullmatch(name) and name not in names:
            export["name"] = name
            names.add(name)
        else:
            fresh.append(export)
    for export in fresh:
        base = export["name"]
        suffix = 2
        while export["name"] in names:
            export["name"] = f"{base}-{suffix}"
            suffix += 1
        names.add(export["name"])
    result.exports = sorted(kept + found, key=lambda e: e["name"])
    return result


def export_for_flow(
    flow: Flow, source: Connection, target: Connection, destinations: Sequence[DestinationSettings], *, dlz_destination: str | None
) -> tuple[dict[str, Any] | None, str]:
    """The [[exports]] entry for one flow, or None and why not (the flow's values are never trusted)."""
    if target.spec_id not in DESTINATIONS:
        return None, f"target connection spec {_shown(target.spec_id)} is not a cloud-storage destination"
    kind, _, scheme = DESTINATIONS[target.spec_id]
    params = target.params
    try:
        datasets = _datasets(source.params.get("datasets"))
        if not datasets:
            return None, "its source connection lists no datasets"
        found = _destination(kind, scheme, params, destinations, dlz_destination)
        if isinstance(found, str):
            return None, found
        destination, path = found
        schedule = {k: _scalar(v, f"scheduleParams.{k}") for k, v in flow.schedule_params.items() if k in SCHEDULE_KEYS and v is not None}
        export: dict[str, Any] = {
            "name": _slug(flow.name) or f"flow-{flow.id[:8]}",
            "destination": destination,
            "path": path,
            "datasets": datasets,
            "format": str(_scalar(params.get("datasetFileType", "JSON"), "datasetFileType")).lower(),
            "compression": str(_scalar(params.get("compression", "GZIP"), "compression")).lower(),
            "manifest": str(_scalar(params.get("includeFileManifest", False), "includeFileManifest")).lower() == "true",
            "flow_id": _flow_id(flow.id),
            "schedule": schedule,
        }
        _plain(schedule, "scheduleParams")
        _plain(export, "")  # every string that is written, whatever its origin
        _loads(export)
    except _Refused as e:
        return None, f"refused: {e}"
    return export, ""


def _datasets(items: Any) -> list[str]:
    """The flow's dataset IDs, in order, each once; raises _Refused for one that is not an AEP dataset ID."""
    datasets: list[str] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping) or not item.get("dataSetId"):
            continue
        dataset = item["dataSetId"]
        if not isinstance(dataset, str) or not _DATASET_ID.fullmatch(dataset):
            raise _Refused(f"dataset ID {_shown(dataset)} is not an AEP dataset ID (24 hexadecimal characters)")
        if dataset not in datasets:
            datasets.append(dataset)
    return datasets


def _scalar(value: Any, key: str) -> str | int | float | bool:
    if not isinstance(value, str | int | float | bool):
        raise _Refused(f"{key} is a {type(value).__name__}, not a string or a number")
    return value


def _flow_id(value: str) -> str:
    if not _FLOW_ID.fullmatch(value):
        raise _Refused(f"flow ID {_shown(value)} is not a Flow Service ID")
    return value


def _plain(value: Any, key: str) -> None:
    """Refuse a string anywhere in `value` that the config loader would resolve, or that hides characters."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            _plain(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _plain(v, f"{key}[{i}]")
    elif isinstance(value, str):
        if "${" in value:
            raise _Refused(f"{key} {_shown(value)} holds '${{', which the auditor's configuration would resolve as a reference")
        if any(_hidden(c) for c in value):
            raise _Refused(f"{key} {_shown(value)} holds control characters")


def _loads(export: Mapping[str, Any]) -> None:
    """Refuse an entry the config loader would reject (its folder template included: no empty, `.` or
    `..` folder names): one bad flow must never stop the file loading."""
    try:
        model = ExportSettings.model_validate(export)
        parse_layout(model.template, datasets=len(model.datasets))
    except ValidationError as e:
        details = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {str(err['msg']).removeprefix('Value error, ')}" for err in e.errors())
        raise _Refused(_escaped(details, limit=500)) from None
    except LayoutError as e:
        raise _Refused(_escaped(str(e), limit=500)) from None


def _destination(kind: str, scheme: str, params: Mapping[str, Any], destinations: Sequence[DestinationSettings], dlz: str | None) -> tuple[str, str] | str:
    path = _path(kind, params.get("path") or params.get("remotePath") or "")
    if kind == "Data Landing Zone":
        if not dlz:
            return "a Data Landing Zone flow, but flow_service.dlz_destination names no destination"
        return dlz, path
    raw = params.get("bucketName") or params.get("container") or ""
    _plain(raw, "bucket or container")
    container = str(raw).strip("/")
    if container and not _CONTAINER.fullmatch(container):
        raise _Refused(f"bucket or container {_shown(container)} is not a bucket or container name")
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


def _path(kind: str, raw: Any) -> str:
    """The target's folder path, checked against AEP's shape for the destination; raises _Refused."""
    if not isinstance(raw, str):
        raise _Refused(f"path {_shown(raw)} is not a string")
    _plain(raw, "path")
    path = raw.strip("/")
    if path and any(segment in ("", ".", "..") for segment in path.split("/")):
        raise _Refused(f"path {_shown(path)} has an empty, '.' or '..' segment")
    if "%" in path:
        raise _Refused(f"path {_shown(path)} holds '%', which a folder template would read as a macro")
    pattern = _PATH_CHARS.get(kind)
    if pattern is not None and not pattern.fullmatch(path):
        raise _Refused(f"path {_shown(path)} has characters AEP does not allow in paths of {kind} destinations")
    return path


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def _shown(value: Any) -> str:
    """A value from a flow, quoted for a message: repr() escapes control and formatting characters."""
    if not isinstance(value, str):
        return repr(value)[:200]
    return repr(value) if len(value) <= 200 else repr(value[:200]) + "…"


def _escaped(text: str, *, limit: int = 200) -> str:
    """Text from a flow as it is, unquoted, with control characters escaped (for a problem line)."""
    return repr(text[:limit])[1:-1]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]
