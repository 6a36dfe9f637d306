"""Contract: every emulator route that Adobe's destinations.yaml describes answers, on success,
with a body that validates against the schema the spec gives for it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from auditor.emulator.server import running
from auditor.emulator.state import World
from auditor.flows.client import FlowsClient
from auditor.flows.setup import create_dataset_export
from tests.conftest import HTTP

SPEC = yaml.safe_load((Path(__file__).parents[1] / "data" / "openapi" / "destinations.yaml").read_text())
# Where destinations.yaml's schemas contradict its own examples and the reference sheet (which
# wins), the emulator follows the examples. Each conflict is named here; everything else must hold.
SPEC_CONFLICTS = [
    # schema: objects; the spec's dataset-flow example (reference §1.10): arrays of {id, connectionSpec}
    ("inheritedAttributes.sourceConnections", "is not of type 'object'"),
    ("inheritedAttributes.targetConnections", "is not of type 'object'"),
    # schema: an id string; the reference (§1.4, SourceConnectionsResponseDataLake_V2): {id, connectionSpec}
    ("inheritedAttributes.baseConnection", "is not of type 'string'"),
    # schema: audience exports only (typeInfo ups/ProfileFragments); dataset sources are the Data Lake
    ("typeInfo.id", "is not one of ['ups']"),
    ("typeInfo.type", "is not one of ['ProfileFragments']"),
    # stored secrets come back as placeholders (reference §1.5), which fail the key patterns
    ("auth.params.s3AccessKey", "does not match"),
    ("auth.params.s3SecretKey", "does not match"),
    # a Data Landing Zone base connection has no auth at all (reference §1.5)
    ("", "'auth' is a required property"),
    # the target params' oneOf branches overlap: valid S3 dataset params match more than one
    ("params", "is valid under each of"),
]
START = datetime(2026, 11, 20, tzinfo=UTC)


def validator(path: str, method: str, status: str) -> jsonschema.protocols.Validator:
    schema = SPEC["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        resolver = jsonschema.RefResolver.from_schema(SPEC)
        return jsonschema.Draft4Validator(schema, resolver=resolver)


@pytest.fixture(scope="module")
def world_and_ids(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    world = World("cid", "secret", dlz_url=tmp_path_factory.mktemp("dlz").as_uri(), s3_endpoint="http://127.0.0.1:9", now=START)
    with running(world) as base:
        client = FlowsClient(f"{base}/data/foundation/flowservice", ims_url=f"{base}/ims/token/v3", client_id="cid", client_secret="secret", org_id="O@AdobeOrg")
        flow = create_dataset_export(
            client, name="web", connection_spec="10440537-2a7b-4583-ac39-ed38d4b848e8", datasets=["ds1"],
            target_params={"path": "web", "datasetFileType": "PARQUET", "compression": "GZIP", "includeFileManifest": True},
            schedule={"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "hour", "interval": 6, "startTime": int(START.timestamp())},
        )
        HTTP.post(f"{base}/emulator/clock", auth=("cid", "secret"), json={"now": "2026-11-21T00:00:00Z"}).raise_for_status()  # runs to validate
        flow = create_dataset_export(  # an S3 flow: the spec's entity schemas describe S3 and SFTP connections
            client, name="s3", connection_spec="4fce964d-3f37-408f-9778-e597338a21ee", datasets=["ds1"],
            target_params={"bucketName": "acme-aep", "path": "web", "datasetFileType": "PARQUET", "compression": "GZIP"},
            schedule={"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "hour", "interval": 6, "startTime": int(START.timestamp())},
            auth={"s3AccessKey": "AKIAIOSFODNN7EXAMPLE", "s3SecretKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
        )
        entity = client.flow(flow)
        ids = {"flows": flow, "sourceConnections": entity.source_connection_ids[0], "targetConnections": entity.target_connection_ids[0]}
        ids["connections"] = str(client.target_connection(ids["targetConnections"]).base_connection_id)
        ids["dlzFlow"] = client.flows()[-1].id
        headers = {"Authorization": f"Bearer {client.token()}", "x-api-key": "cid", "x-gw-ims-org-id": "O@AdobeOrg", "x-sandbox-name": "prod"}
        yield base, ids, headers


ROUTES = [
    ("/connections", "get", "200", "/connections"),
    ("/connections/{id}", "get", "200", "/connections/{connections}"),
    ("/sourceConnections", "get", "200", "/sourceConnections"),
    ("/sourceConnections/{id}", "get", "200", "/sourceConnections/{sourceConnections}"),
    ("/targetConnections", "get", "200", "/targetConnections"),
    ("/targetConnections/{id}", "get", "200", "/targetConnections/{targetConnections}"),
    ("/flows", "get", "200", "/flows"),
    ("/flows/{id}", "get", "200", "/flows/{flows}"),
    ("/runs", "get", "200", "/runs?property=flowId=={dlzFlow}"),
]


@pytest.mark.parametrize("path, method, status, url", ROUTES, ids=[f"{m.upper()} {p}" for p, m, _, _ in ROUTES])
def test_emulator_answers_validate_against_destinations_yaml(world_and_ids: tuple[str, dict[str, str], dict[str, str]], path: str, method: str, status: str, url: str) -> None:
    base, ids, headers = world_and_ids
    response = HTTP.request(method.upper(), f"{base}/data/foundation/flowservice{url.format(**ids)}", headers=headers)
    assert str(response.status_code) == status
    body: Any = response.json()
    check = validator(path, method, status)
    # the spec's schemas for connections describe one entity; its own examples (and the API) wrap
    # entities in {"items": [...]}: validate each entity then
    wrapped = "items" in _resolve(check.schema).get("properties", {}) or "oneOf" in check.schema
    documents = [body] if wrapped else body["items"]
    errors = [f"{_dotted(e)}: {e.message}" for document in documents for e in _leaves(check.iter_errors(document)) if not _known(e)]
    assert errors == [], errors[:8]
    assert body["items"], "the answer holds the entities"


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not ref:
        return schema
    node: Any = SPEC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


@pytest.mark.parametrize("kind, schema_path", [("sourceConnections", "/sourceConnections"), ("connections", "/connections"), ("targetConnections", "/targetConnections")])
def test_create_answers_validate(world_and_ids: tuple[str, dict[str, str], dict[str, str]], kind: str, schema_path: str) -> None:
    base, _, headers = world_and_ids
    bodies = {
        "sourceConnections": {"name": "s", "connectionSpec": {"id": "23598e46-f560-407b-88d5-ea6207e49db0", "version": "1.0"}, "params": {"datasets": [{"dataSetId": "ds2", "name": "ds2"}]}},
        "connections": {"name": "b", "connectionSpec": {"id": "10440537-2a7b-4583-ac39-ed38d4b848e8", "version": "1.0"}},
        "targetConnections": {"name": "t", "params": {"path": "x", "datasetFileType": "JSON", "compression": "GZIP"}, "connectionSpec": {"id": "10440537-2a7b-4583-ac39-ed38d4b848e8", "version": "1.0"}},
    }
    response = HTTP.post(f"{base}/data/foundation/flowservice/{kind}", json=bodies[kind], headers=headers)
    assert response.status_code == 201
    errors = list(validator(schema_path, "post", "201").iter_errors(response.json()))
    assert errors == [], [e.message for e in errors]


def test_a_missing_spec_version_is_422(world_and_ids: tuple[str, dict[str, str], dict[str, str]]) -> None:
    base, _, headers = world_and_ids
    response = HTTP.post(f"{base}/data/foundation/flowservice/connections", json={"name": "b", "connectionSpec": {"id": "10440537-2a7b-4583-ac39-ed38d4b848e8"}}, headers=headers)
    assert response.status_code == 422


def _leaves(errors: Any) -> Iterator[Any]:
    """The most specific errors: a oneOf that fails is explained by every error of the branch
    that comes closest (fewest errors that are not named conflicts)."""
    for error in errors:
        if error.context and error.validator in ("oneOf", "anyOf"):
            branches: dict[int, list[Any]] = {}
            for inner in error.context:
                branches.setdefault(int(inner.schema_path[0]), []).append(inner)
            best = min(branches.values(), key=lambda group: sum(1 for e in _leaves(group) if not _known(e)))
            yield from _leaves(best)
        else:
            yield error


def _dotted(error: Any) -> str:
    return ".".join(str(p) for p in error.absolute_path if not isinstance(p, int))


def _known(error: Any) -> bool:
    path = _dotted(error)
    return any((path == where or (where and path.endswith("." + where))) and what in error.message for where, what in SPEC_CONFLICTS)


def test_the_contract_check_still_catches_a_broken_answer(world_and_ids: tuple[str, dict[str, str], dict[str, str]]) -> None:
    base, ids, headers = world_and_ids
    body = HTTP.get(f"{base}/data/foundation/flowservice/flows/{ids['flows']}", headers=headers).json()
    del body["items"][0]["etag"]
    del body["items"][0]["sourceConnectionIds"]
    check = validator("/flows/{id}", "get", "200")
    errors = {e.message for e in _leaves(check.iter_errors(body)) if not _known(e)}
    assert errors == {"'etag' is a required property", "'sourceConnectionIds' is a required property"}
