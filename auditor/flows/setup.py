"""Set up a dataset export end to end: source connection, base connection, target connection, flow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from auditor.flows import DATA_LAKE_SOURCE_SPEC, DESTINATIONS
from auditor.flows.client import FlowsClient

AUTH_SPECS = {
    "Amazon S3": "Access Key",
    "Azure Blob Storage": "ConnectionString",
    "Azure Data Lake Gen2": "Azure Service Principal Auth",
    "Google Cloud Storage": "Google Cloud Storage authentication credentials",
    "SFTP": "SFTP with Password",
}


def create_dataset_export(
    client: FlowsClient,
    *,
    name: str,
    connection_spec: str,
    datasets: Sequence[str],
    target_params: Mapping[str, Any],
    schedule: Mapping[str, Any],
    auth: Mapping[str, Any] | None = None,
) -> str:
    """Create the four entities of a dataset export (reference §1.2 steps 2-5); returns the flow id."""
    kind, flow_spec, _ = DESTINATIONS[connection_spec]
    source, _ = client.create(
        "sourceConnections",
        {
            "name": f"{name}: Data Lake",
            "connectionSpec": {"id": DATA_LAKE_SOURCE_SPEC, "version": "1.0"},
            "params": {"datasets": [{"dataSetId": d, "name": d} for d in datasets]},
        },
    )
    base_body: dict[str, Any] = {"name": f"{name}: {kind}", "connectionSpec": {"id": connection_spec, "version": "1.0"}}
    if kind != "Data Landing Zone":
        base_body["auth"] = {"specName": AUTH_SPECS[kind], "params": dict(auth or {})}
    base, _ = client.create("connections", base_body)
    target, _ = client.create(
        "targetConnections",
        {"name": f"{name}: target", "baseConnectionId": base, "params": {"mode": "Server-to-server", **target_params}, "connectionSpec": {"id": connection_spec, "version": "1.0"}},
    )
    flow, _ = client.create(
        "flows",
        {
            "name": name,
            "flowSpec": {"id": flow_spec, "version": "1.0"},
            "sourceConnectionIds": [source],
            "targetConnectionIds": [target],
            "transformations": [],
            "scheduleParams": dict(schedule),
        },
    )
    return flow
