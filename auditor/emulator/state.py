"""The emulator's world: entities, a clock, runs, faults, and the exports it writes."""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auditor.errors import ScheduleError
from auditor.exporter import sample_records, write_export
from auditor.flows import DATA_LAKE_SOURCE_SPEC, DATASET_FLOW_SPECS, DESTINATIONS
from auditor.schedule import parse_schedule

FAULTS = ("no_run", "failed", "nothing_written", "fewer_files", "corrupt_file", "no_manifest", "late_write", "duplicate_run", "zero_records")
KINDS = ("connections", "sourceConnections", "targetConnections", "flows")


def new_etag() -> str:
    return f'"{uuid.uuid4()}"'


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass
class Fault:
    kind: str
    flow_id: str
    slot: datetime | None  # None: every slot of the flow


@dataclass
class World:
    """Everything the emulator knows; every method is called under `lock`."""

    client_id: str
    client_secret: str
    org_id: str = "EMULATOR@AdobeOrg"
    dlz_url: str | None = None  # where Data Landing Zone flows write (any fsspec URL)
    dlz_options: dict[str, Any] = field(default_factory=dict)
    dlz_sas_url: str | None = None  # what the DLZ credentials endpoint hands out (a container SAS URL)
    s3_endpoint: str | None = None  # where Amazon S3 flows write
    gcs_endpoint: str | None = None  # where Google Cloud Storage flows write (e.g. fake-gcs-server; the HMAC keys are not checked)
    # how ADLS Gen2 flows write (e.g. {"connection_string": …} for Azurite): the emulator cannot sign
    # in as the base connection's service principal, so it writes to the target's filesystem/path with these
    adls_options: dict[str, Any] | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    entities: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, datetime] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    throttle: list[tuple[int, float | None]] = field(default_factory=list)
    lost_answers: list[int] = field(default_factory=list)  # statuses for the next creates, answered after the entity is stored
    last_tick: dict[str, datetime] = field(default_factory=dict)  # flow id -> newest slot already run
    datasets: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)  # base connection id -> auth params (never served back)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- entities -----------------------------------------------------------

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        entity_id = str(uuid.uuid4())
        etag = new_etag()
        stamp = ms(self.now)
        entity = {
            **body,
            "id": entity_id,
            "etag": etag,
            "version": etag,
            "createdAt": stamp,
            "updatedAt": stamp,
            "createdBy": f"{self.client_id}@AdobeID",
            "updatedBy": f"{self.client_id}@AdobeID",
            "createdClient": self.client_id,
            "updatedClient": self.client_id,
            "sandboxId": "emulator-sandbox",
            "sandboxName": "prod",
            "imsOrgId": self.org_id,
        }
        if kind == "flows":
            entity.setdefault("description", "")
            entity["state"] = "enabled"
            entity["runs"] = f"/runs?property=flowId=={entity_id}"
            entity["inheritedAttributes"] = self.inherited(entity)
            self.last_tick.pop(entity_id, None)
        if kind in ("sourceConnections", "targetConnections", "connections"):
            entity.setdefault("state", "enabled")
        if kind == "sourceConnections":
            entity.setdefault("typeInfo", {"id": "datasets", "type": "DATASET"})
            entity["inheritedAttributes"] = {}
        if kind == "targetConnections":
            base = self.entities["connections"].get(entity.get("baseConnectionId") or "") or {}
            entity["inheritedAttributes"] = {"baseConnection": {"id": base.get("id"), "connectionSpec": base.get("connectionSpec")}}
        if kind == "connections" and isinstance(entity.get("auth"), dict):
            entity["auth"] = {**entity["auth"], "params": {k: "<hidden>" for k in (entity["auth"].get("params") or {})}}
            self.secrets[entity_id] = dict(body.get("auth", {}).get("params") or {})
        self.entities[kind][entity_id] = entity
        return entity

    def inherited(self, flow: dict[str, Any]) -> dict[str, Any]:
        targets = []
        for target_id in flow.get("targetConnectionIds") or []:
            target = self.entities["targetConnections"].get(target_id) or {}
            base = self.entities["connections"].get(target.get("baseConnectionId") or "") or {}
            targets.append(
                {
                    "id": target_id,
                    "connectionSpec": target.get("connectionSpec"),
                    "baseConnection": {"id": base.get("id"), "connectionSpec": base.get("connectionSpec")},
                    "data": {"outputType": "DATASET_EXPORT"},
                }
            )
        sources = [{"id": s, "connectionSpec": {"id": DATA_LAKE_SOURCE_SPEC, "version": "1.0"}} for s in flow.get("sourceConnectionIds") or []]
        return {"properties": {"isDestinationFlow": True}, "sourceConnections": sources, "targetConnections": targets}

    def validate_flow(self, body: dict[str, Any]) -> str | None:
        """Why a flow body is not a valid dataset export, or None."""
        flow_spec = body.get("flowSpec")
        spec = flow_spec.get("id") if isinstance(flow_spec, dict) else None
        if not isinstance(spec, str) or spec not in DATASET_FLOW_SPECS:
            return f"flowSpec.id {spec!r} is not a dataset-export flow spec"
        targets, sources, params = body.get("targetConnectionIds") or [], body.get("sourceConnectionIds") or [], body.get("scheduleParams") or {}
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            return "targetConnectionIds must be a list of ids"
        if not isinstance(sources, list) or not all(isinstance(t, str) for t in sources):
            return "sourceConnectionIds must be a list of ids"
        if not isinstance(params, dict):
            return "scheduleParams must be an object"
        for target_id in targets:
            target = self.entities["targetConnections"].get(target_id)
            if target is None:
                return f"targetConnections not found with id = [{target_id}]"
            if (target.get("connectionSpec") or {}).get("id") != DATASET_FLOW_SPECS[spec]:
                return "the flow spec does not match the target connection's connection spec"
        for source_id in sources:
            if source_id not in self.entities["sourceConnections"]:
                return f"sourceConnections not found with id = [{source_id}]"
        try:
            parse_schedule(dict(params))
        except ScheduleError as e:
            return str(e)
        return None

    # -- the clock ----------------------------------------------------------

    def advance(self, to: datetime) -> list[dict[str, Any]]:
        """Move the clock to `to`, running every enabled flow's slots up to it; returns new runs."""
        created = []
        for flow in list(self.entities["flows"].values()):
            if flow.get("state") != "enabled":
                continue
            schedule = parse_schedule(flow["scheduleParams"])
            done = self.last_tick.get(flow["id"])
            for slot in schedule.slots(end=to):
                if done is not None and slot <= done:
                    continue
                created += self._run_slot(flow, slot)
                self.last_tick[flow["id"]] = slot
        self.now = max(self.now, to)
        return created

    def run_now(self, flow: dict[str, Any]) -> list[dict[str, Any]]:
        """An ad-hoc run at the current minute, outside the schedule."""
        return self._run_slot(flow, self.now.replace(second=0, microsecond=0))

    def _faults_for(self, flow_id: str, slot: datetime) -> set[str]:
        return {f.kind for f in self.faults if f.flow_id == flow_id and (f.slot is None or f.slot == slot)}

    def _run_slot(self, flow: dict[str, Any], slot: datetime) -> list[dict[str, Any]]:
        faults = self._faults_for(flow["id"], slot)
        if "no_run" in faults:
            return []
        source = self.entities["sourceConnections"][flow["sourceConnectionIds"][0]]
        datasets = [d["dataSetId"] for d in source["params"]["datasets"]]
        first = self.last_tick.get(flow["id"]) is None
        counts = {d: 0 if "zero_records" in faults else (200 if first else 20) for d in datasets}
        run_id = str(uuid.uuid4())
        if "failed" in faults:
            return [self._record_run(flow, slot, run_id, counts, files=0, status="failed")]
        reported = 0
        if "nothing_written" not in faults:
            try:
                for dataset, count in counts.items():
                    if count:
                        reported += self._write(flow, dataset, slot, run_id, count, faults)
            except Exception as e:  # noqa: BLE001 - the destination refused: the run fails, as AEP's would
                return [self._record_run(flow, slot, run_id, counts, files=0, status="failed", reason=f"{type(e).__name__}: {e}"[:300])]
        else:
            reported = 3 * sum(1 for c in counts.values() if c)  # what the exporter would have written
        runs = [self._record_run(flow, slot, run_id, counts, files=reported, status="success")]
        if "duplicate_run" in faults:
            again = str(uuid.uuid4())
            for dataset, count in counts.items():
                if count:
                    self._write_manifest_again(flow, dataset, slot, again)
            runs.append(self._record_run(flow, slot, again, counts, files=reported, status="success", offset=timedelta(minutes=30)))
        return runs

    def _record_run(
        self, flow: dict[str, Any], slot: datetime, run_id: str, counts: dict[str, int], *, files: int, status: str, offset: timedelta = timedelta(0), reason: str = "Job aborted."
    ) -> dict[str, Any]:
        started = slot + timedelta(minutes=1) + offset
        total = sum(counts.values())
        # destinations.yaml spells run statuses Success/Failed; Adobe's examples use lower case: the
        # auditor compares them case-insensitively, the emulator follows the spec
        summary: dict[str, Any] = {"status": status.capitalize(), "activityRefs": [str(uuid.uuid4())]}
        if status == "failed":
            summary["errors"] = [{"code": "ACTIVATION_BATCH-0000-FAILED", "message": reason}]
        run = {
            "id": run_id,
            "createdAt": ms(started),
            "updatedAt": ms(started + timedelta(minutes=4)),
            "createdBy": "aep_activation_batch@AdobeID",
            "updatedBy": "acp_foundation_connectors@AdobeID",
            "createdClient": "aep_activation_batch",
            "updatedClient": "acp_foundation_connectors",
            "sandboxId": "emulator-sandbox",
            "sandboxName": "prod",
            "imsOrgId": self.org_id,
            "flowId": flow["id"],
            "flowSpec": {"id": "615d3489-36d2-4671-9467-4ae1129facd3", "version": "1.0"},
            "providerRefId": uuid.uuid4().hex,
            "etag": new_etag(),
            "metrics": {
                "durationSummary": {"startedAtUTC": ms(started), "completedAtUTC": ms(started + timedelta(minutes=4))},
                "sizeSummary": {"inputBytes": total * 100, "outputBytes": total * 100 if status == "success" else 0},
                "recordSummary": {
                    "inputRecordCount": total,
                    "outputRecordCount": total if status == "success" else 0,
                    "sourceSummaries": [{"id": d, "inputRecordCount": c, "skippedRecordCount": 0} for d, c in counts.items()],
                },
                "fileSummary": {"inputFileCount": files, "outputFileCount": files},
                "statusSummary": summary,
            },
            "activities": [],
        }
        self.runs[run_id] = run
        flow["lastRunDetails"] = {"id": run_id, "state": status, "startedAtUTC": ms(started), "completedAtUTC": ms(started + timedelta(minutes=4))}
        return run

    # -- writing exports ----------------------------------------------------

    def destination_of(self, flow: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(root URL, storage options, target params) where the flow's files go."""
        target = self.entities["targetConnections"][flow["targetConnectionIds"][0]]
        params = target.get("params") or {}
        spec = (target.get("connectionSpec") or {}).get("id")
        base_id = target.get("baseConnectionId") or ""
        secrets = self.secrets.get(base_id, {})
        path = str(params.get("path", "")).strip("/")
        kind = DESTINATIONS[spec][0] if spec in DESTINATIONS else str(spec)
        if kind == "Data Landing Zone":
            if not self.dlz_url:
                raise RuntimeError("the emulator has no Data Landing Zone (--dlz-url)")
            return f"{self.dlz_url.rstrip('/')}/{path}".rstrip("/"), dict(self.dlz_options), params
        if kind == "Amazon S3":
            if not self.s3_endpoint:
                raise RuntimeError("the emulator has no S3 endpoint to write to (--s3-endpoint)")
            options = {"endpoint_url": self.s3_endpoint, "key": secrets.get("s3AccessKey"), "secret": secrets.get("s3SecretKey")}
            return f"s3://{params['bucketName']}/{path}".rstrip("/"), options, params
        if kind == "Azure Blob Storage":
            return f"az://{params['container']}/{path}".rstrip("/"), {"connection_string": secrets.get("connectionString")}, params
        if kind == "Google Cloud Storage":
            if not self.gcs_endpoint:
                raise RuntimeError("the emulator has no GCS endpoint to write to (--gcs-endpoint)")
            return f"gs://{params['bucketName']}/{path}".rstrip("/"), {"endpoint_url": self.gcs_endpoint, "token": "anon", "project": "emulator"}, params
        if kind == "Azure Data Lake Gen2":  # the path starts with the filesystem (the base connection's URL names only the account)
            if self.adls_options is None:
                raise RuntimeError("the emulator has no ADLS Gen2 account to write to (--adls-connection-string)")
            return f"abfs://{path}", dict(self.adls_options), params
        if kind == "SFTP":
            remote = "/" + str(params.get("remotePath") or params.get("path") or "").strip("/")
            user, host, port = secrets.get("username"), secrets.get("domain") or secrets.get("host"), int(secrets.get("port") or 22)
            if not user or not host:
                raise RuntimeError("the SFTP base connection has no domain or username")
            login: dict[str, Any] = {"password": secrets["password"]} if secrets.get("password") else {"pkey": _private_key(str(secrets.get("sshKey", "")))}
            login |= {"look_for_keys": False, "allow_agent": False, "timeout": 10}
            return f"sftp://{user}@{host}:{port}{remote}".rstrip("/"), login, params
        raise RuntimeError(f"the emulator does not write to {kind}")

    def _write(self, flow: dict[str, Any], dataset: str, slot: datetime, run_id: str, count: int, faults: set[str]) -> int:
        """Write one dataset's export for one run; returns how many files the run reports."""
        import fsspec

        url, options, params = self.destination_of(flow)
        schedule = flow.get("scheduleParams") or {}
        written = write_export(
            url,
            dataset,
            slot,
            sample_records(dataset, slot, count),
            file_format=str(params.get("datasetFileType", "JSON")).lower(),
            compression=str(params.get("compression", "GZIP")).lower(),
            parts=3,
            manifest=False,
            template=schedule.get("foldernameTemplate") or schedule.get("folderNameTemplate"),
            storage_options=options,
        )
        reported = len(written)
        fs, root = fsspec.core.url_to_fs(url, **options)
        if "fewer_files" in faults:  # one file never arrives; the run still counts it
            fs.rm_file(f"{root}/{written[-1].key}")
            written = written[:-1]
        if "corrupt_file" in faults:  # cut short after the exporter took its size
            data = fs.cat_file(f"{root}/{written[0].key}")
            fs.pipe_file(f"{root}/{written[0].key}", data[: len(data) // 2])
        keys = [w.key for w in written]
        if params.get("includeFileManifest") and "no_manifest" not in faults:
            folder = written[0].key.rsplit("/", 1)[0]
            keys.append(self._put_manifest(fs, root, folder, slot, run_id, [(w.key.rsplit("/", 1)[-1], w.size) for w in written]))
        self._stamp(url, keys, slot + (timedelta(hours=3) if "late_write" in faults else timedelta(minutes=5)))
        return reported

    @staticmethod
    def _put_manifest(fs: Any, root: str, folder: str, slot: datetime, run_id: str, entries: list[tuple[str, int]]) -> str:
        import json

        body = {
            "flowRunId": run_id,
            "scheduledTime": slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "exportResults": [{"sinkPath": f"/{root.strip('/')}/{folder}", "name": name, "size": size} for name, size in entries],
        }
        key = f"{folder}/manifest-d0420d72-756c-4159-9e7f-7d3e2f8b501e-{run_id}.json"
        fs.pipe_file(f"{root}/{key}", json.dumps(body, separators=(",", ":")).encode())
        return key

    def _write_manifest_again(self, flow: dict[str, Any], dataset: str, slot: datetime, run_id: str) -> None:
        """A second run for the same slot re-describes the folder in a manifest of its own."""
        import fsspec

        url, options, params = self.destination_of(flow)
        if not params.get("includeFileManifest"):
            return
        fs, root = fsspec.core.url_to_fs(url, **options)
        folder = f"{dataset}/exportTime={slot:%Y%m%d%H%M}"
        entries = [(str(i["name"]).rsplit("/", 1)[-1], int(i["size"])) for i in fs.ls(f"{root}/{folder}", detail=True) if str(i["name"]).rsplit("/", 1)[-1].startswith("part-")]
        key = self._put_manifest(fs, root, folder, slot, run_id, sorted(entries))
        self._stamp(url, [key], slot + timedelta(minutes=35))

    def _stamp(self, url: str, keys: list[str], when: datetime) -> None:
        """Local destinations get the emulated landing time as their modification time."""
        if not url.startswith("file://"):
            return
        root = Path(url.removeprefix("file://"))
        for key in keys:
            path = root / key
            if path.exists():
                os.utime(path, (when.timestamp(), when.timestamp()))


def _private_key(encoded: str) -> Any:
    """The paramiko key an SFTP base connection's `sshKey` (a base64 private key) holds."""
    import base64
    import io

    import paramiko

    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        text = encoded  # a key pasted as it is
    for key_type in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_type.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise RuntimeError("the SFTP base connection's sshKey is not a private key paramiko reads")
