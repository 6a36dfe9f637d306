"""Set up a dataset export end to end: source connection, base connection, target connection, flow.

What each of the six cloud-storage destinations takes (reference §2.2 and §3.3) lives here, so the
CLI, the dashboard and the emulator agree on it: the base connection's auth spec name and params,
the target connection's location keys, and whether the destination offers file encryption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from auditor.errors import FlowsError
from auditor.flows import DATA_LAKE_SOURCE_SPEC, DESTINATIONS
from auditor.flows.client import FlowsClient

AUTH_SPECS = {
    "Amazon S3": "Access Key",
    "Azure Blob Storage": "ConnectionString",
    "Azure Data Lake Gen2": "Azure Service Principal Auth",
    "Google Cloud Storage": "Google Cloud Storage authentication credentials",
    "SFTP": "SFTP with Password",
}
SFTP_SSH_KEY_SPEC = "SFTP with SSH Key"
# the authSpec type each connection spec declares (reference §2.2)
AUTH_TYPES = {
    "Access Key": "KeyBased",
    "ConnectionString": "ConnectionString",
    "Azure Service Principal Auth": "AzureServicePrincipal",
    "Google Cloud Storage authentication credentials": "GoogleCloudStorageAuth",
    "SFTP with Password": "SFTP",
    SFTP_SSH_KEY_SPEC: "SFTP",
}
# auth spec name -> the params it requires (reference §2.2)
AUTH_PARAMS = {
    "Access Key": ("s3AccessKey", "s3SecretKey"),
    "ConnectionString": ("connectionString",),
    "Azure Service Principal Auth": ("url", "servicePrincipalId", "servicePrincipalKey", "tenant"),
    "Google Cloud Storage authentication credentials": ("accessKeyId", "secretAccessKey"),
    "SFTP with Password": ("domain", "username", "password"),
    SFTP_SSH_KEY_SPEC: ("domain", "username", "sshKey"),
}
# destination name -> the location keys its target connection requires (reference §3.3)
LOCATION_KEYS = {
    "Amazon S3": ("bucketName", "path"),
    "Google Cloud Storage": ("bucketName", "path"),
    "Azure Blob Storage": ("container", "path"),
    "Azure Data Lake Gen2": ("path",),
    "Data Landing Zone": ("path",),
    "SFTP": ("remotePath",),
}
# PGP/GPG file encryption: the connection specs' `encryptionSpecs` entry, attached to the base
# connection. The reference (§2.2) marks the API field names UNCONFIRMED; these are the ones in
# Adobe's "activate destinations" API tutorial. The Data Landing Zone offers no encryption.
ENCRYPTION_SPEC = "File PGP/GPG Encryption"
ENCRYPTION_ALGORITHM = "PGP/GPG"
ENCRYPTING = frozenset(name for name in LOCATION_KEYS if name != "Data Landing Zone")


@dataclass(frozen=True)
class Kind:
    """One destination type as the CLI names it."""

    name: str  # the connection spec's name
    spec: str  # connection spec id
    flow_spec: str  # dataset-export flow spec id


KINDS = {
    key: Kind(name, spec, DESTINATIONS[spec][1])
    for key, (name, spec) in {
        "s3": ("Amazon S3", "4fce964d-3f37-408f-9778-e597338a21ee"),
        "gcs": ("Google Cloud Storage", "c5d93acb-ea8b-4b14-8f53-02138444ae99"),
        "azure-blob": ("Azure Blob Storage", "6d6b59bf-fb58-4107-9064-4d246c0e5bb2"),
        "adls": ("Azure Data Lake Gen2", "be2c3209-53bc-47e7-ab25-145db8b873e1"),
        "dlz": ("Data Landing Zone", "10440537-2a7b-4583-ac39-ed38d4b848e8"),
        "sftp": ("SFTP", "36965a81-b1c6-401b-99f8-22508f1e6a26"),
    }.items()
}


def encryption_block(public_key_base64: str) -> dict[str, Any]:
    """The base connection's `encryption` object for a base64 PGP/GPG public key."""
    return {"specName": ENCRYPTION_SPEC, "params": {"encryptionAlgo": ENCRYPTION_ALGORITHM, "publicKey": public_key_base64}}


def target_keys(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Target params with the location under the key the destination takes: SFTP's folder is
    `remotePath` (reference §3.3), so a `path` given for an SFTP target is moved there."""
    out = dict(params)
    if kind == "SFTP" and "path" in out:
        path = out.pop("path")
        out.setdefault("remotePath", path)
    return out


def create_dataset_export(
    client: FlowsClient,
    *,
    name: str,
    connection_spec: str,
    datasets: Sequence[str],
    target_params: Mapping[str, Any],
    schedule: Mapping[str, Any],
    auth: Mapping[str, Any] | None = None,
    auth_spec: str | None = None,
    base_connection: str | None = None,
    encryption: Mapping[str, Any] | None = None,
    dataset_names: Mapping[str, str] | None = None,
) -> str:
    """Create the entities of a dataset export (reference §1.2 steps 2-5); returns the flow id.

    `base_connection` reuses an existing base connection (an "account") of the same destination
    instead of creating one; `auth_spec` picks another auth spec than the destination's default
    (SFTP with SSH Key); `encryption` goes on a new base connection (see `encryption_block`)."""
    kind, flow_spec, _ = DESTINATIONS[connection_spec]
    taken = client.named("flows", name)
    if taken:  # the same request again (a form sent twice, a command run again after a timeout) made a second dataflow
        ids = ", ".join(sorted(str(f.get("id")) for f in taken))
        raise FlowsError(f"a dataflow named {name!r} already exists ({ids}): nothing was created; choose another name, or add that one with `auditor flows sync`")
    if base_connection is not None:
        existing = client.base_connection(base_connection)
        if existing.spec_id != connection_spec:
            raise FlowsError(f"base connection {base_connection} is a {DESTINATIONS.get(existing.spec_id, (existing.spec_id or 'unknown',))[0]} connection, not {kind}")
    names = dict(dataset_names or {})
    source, _ = client.create(
        "sourceConnections",
        {
            "name": f"{name}: Data Lake",
            "connectionSpec": {"id": DATA_LAKE_SOURCE_SPEC, "version": "1.0"},
            "params": {"datasets": [{"dataSetId": d, "name": names.get(d, d)} for d in datasets]},
        },
    )
    if base_connection is None:
        base_body: dict[str, Any] = {"name": f"{name}: {kind}", "connectionSpec": {"id": connection_spec, "version": "1.0"}}
        if kind != "Data Landing Zone":
            base_body["auth"] = {"specName": auth_spec or AUTH_SPECS[kind], "params": dict(auth or {})}
        if encryption:
            base_body["encryption"] = dict(encryption)
        base, _ = client.create("connections", base_body)
    else:
        base = base_connection
    target, _ = client.create(
        "targetConnections",
        {
            "name": f"{name}: target",
            "baseConnectionId": base,
            "params": {"mode": "Server-to-server", **target_keys(kind, target_params)},
            "connectionSpec": {"id": connection_spec, "version": "1.0"},
        },
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
