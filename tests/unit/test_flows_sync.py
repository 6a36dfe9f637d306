"""`flows sync`: what a dataflow says is data, checked against AEP's shapes, never a config reference."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
import tomli_w

from auditor.config import DestinationSettings, settings_from_mapping
from auditor.flows.models import Connection, Flow
from auditor.flows.sync import export_for_flow

S3 = "4fce964d-3f37-408f-9778-e597338a21ee"
DLZ = "10440537-2a7b-4583-ac39-ed38d4b848e8"
DATASET = "5ef3e3259ad2a1191ab7dd7d"
FLOW_ID = "eb54b3b3-3949-4f12-89c8-64eafaba858f"
DESTINATIONS = [DestinationSettings(name="backups", url="s3://acme-aep/aep"), DestinationSettings(name="dlz", url="az://dlz-destination")]
SCHEDULE = {"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "hour", "interval": 3, "startTime": 1795046400}


def sync(
    *, datasets: list[Any] | None = None, params: dict[str, Any] | None = None, schedule: dict[str, Any] | None = None, flow_id: str = FLOW_ID,
    spec: str = S3, name: str = "web events",
) -> tuple[dict[str, Any] | None, str]:
    flow = Flow.from_api({"id": flow_id, "name": name, "state": "enabled", "sourceConnectionIds": ["s"], "targetConnectionIds": ["t"],
                          "scheduleParams": SCHEDULE if schedule is None else schedule})
    source = Connection.from_api({"id": "s", "params": {"datasets": [{"dataSetId": d} for d in (datasets if datasets is not None else [DATASET])]}})
    target_params = {"bucketName": "acme-aep", "path": "aep/web", "datasetFileType": "PARQUET", "compression": "GZIP"} if spec == S3 else {"path": "aep/web"}
    target = Connection.from_api({"id": "t", "connectionSpec": {"id": spec}, "params": {**target_params, **(params or {})}})
    return export_for_flow(flow, source, target, DESTINATIONS, dlz_destination="dlz")


def test_a_plain_flow_becomes_an_export_that_loads_exactly_as_written() -> None:
    export, problem = sync(schedule={**SCHEDULE, "endTime": None, "foldernameTemplate": "%DATASET_ID%/exportTime=%EXPORT_TIME%"},
                           params={"includeFileManifest": "false"}, datasets=[DATASET, DATASET])
    assert problem == "" and export is not None
    assert (export["destination"], export["path"], export["datasets"], export["manifest"]) == ("backups", "web", [DATASET], False)
    assert "endTime" not in export["schedule"]  # TOML has no null
    text = tomli_w.dumps({"exports": [export]})
    settings = settings_from_mapping({"destinations": [{"name": "backups", "url": "s3://acme-aep/aep"}], **tomllib.loads(text)}, {})
    assert settings.exports[0].datasets == [DATASET] and settings.exports[0].template == "web/%DATASET_ID%/exportTime=%EXPORT_TIME%"


@pytest.mark.parametrize(
    "change, says",
    [
        ({"datasets": ["${env:AWS_SECRET_ACCESS_KEY}"]}, "is not an AEP dataset ID"),
        ({"datasets": ["ds1"]}, "is not an AEP dataset ID"),
        ({"datasets": [DATASET, "../../etc"]}, "is not an AEP dataset ID"),
        ({"datasets": [42]}, "is not an AEP dataset ID"),
        ({"params": {"path": "x-${file:/etc/hostname}"}}, "holds '${'"),
        ({"params": {"path": "aep/../../elsewhere"}}, "'..' segment"),
        ({"params": {"path": "aep//web"}}, "empty, '.' or '..' segment"),
        ({"params": {"path": "./aep"}}, "segment"),
        ({"params": {"path": "aep/%SEGMENT_NAME%"}}, "holds '%'"),
        ({"params": {"path": "aep/web events"}}, "characters AEP does not allow in paths of Amazon S3 destinations"),
        ({"params": {"path": "aep/\x1b[2J"}}, "control characters"),
        ({"params": {"path": "aep/\u202eweb"}}, "control characters"),
        ({"params": {"path": ["aep"]}}, "is not a string"),
        ({"params": {"bucketName": "${env:X}"}}, "holds '${'"),
        ({"params": {"bucketName": "acme-aep/aep"}}, "is not a bucket or container name"),
        ({"params": {"datasetFileType": "${env:X}"}}, "holds '${'"),
        ({"params": {"datasetFileType": "CSV"}}, "format"),
        ({"params": {"compression": {"nested": "${env:X}"}}}, "not a string or a number"),
        ({"schedule": {**SCHEDULE, "startTime": "${env:START}"}}, "scheduleParams.startTime"),
        ({"schedule": {**SCHEDULE, "exportMode": ["FIRST_FULL_THEN_INCREMENTAL"]}}, "not a string or a number"),
        ({"schedule": {**SCHEDULE, "interval": 7}}, "schedule"),
        ({"schedule": {**SCHEDULE, "foldernameTemplate": "${file:/etc/passwd}/%DATASET_ID%/%EXPORT_TIME%"}}, "holds '${'"),
        ({"schedule": {**SCHEDULE, "folderNameTemplate": "%DATASET_ID%/../exportTime=%EXPORT_TIME%"}}, "can match no export"),
        ({"schedule": {**SCHEDULE, "foldernameTemplate": "%DATASET_ID%/%NOPE%/%EXPORT_TIME%"}}, "unknown macro"),
        ({"flow_id": "${env:X}"}, "is not a Flow Service ID"),
    ],
)
def test_a_flow_with_a_hostile_or_malformed_value_is_refused_with_a_problem_line(change: dict[str, Any], says: str) -> None:
    export, problem = sync(**change)
    assert export is None
    assert problem.startswith("refused: ") and says in problem, problem
    assert "\x1b" not in problem and "\u202e" not in problem


def test_paths_are_checked_leniently_where_aep_publishes_no_pattern() -> None:
    export, problem = sync(spec=DLZ, params={"path": "exports/web events (eu)"})
    assert problem == "" and export is not None and export["path"] == "exports/web events (eu)"
    _, problem = sync(spec=DLZ, params={"path": "exports/../web"})
    assert "segment" in problem


def test_the_flow_name_is_only_ever_a_slug() -> None:
    export, problem = sync(name="${env:AWS_SECRET_ACCESS_KEY}")
    assert problem == "" and export is not None and export["name"] == "env-aws-secret-access-key"
