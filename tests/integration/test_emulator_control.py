"""The emulator's control routes need its credentials and answer malformed requests with 4xx; the
auditor refuses (or, when allowed, warns about) a Flow Service or IMS URL in clear text off this machine."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.config import settings_from_mapping
from auditor.emulator.app import create_app
from auditor.emulator.state import World
from auditor.errors import ConfigError

START = datetime(2026, 11, 20, tzinfo=UTC)
CONTROL = {
    "/emulator/clock": {"now": "2026-11-20T06:00:00Z"},
    "/emulator/faults": {"kind": "failed", "flowId": "f", "slot": "2026-11-20T03:00:00Z"},
    "/emulator/throttle": {"count": 1, "status": 429},
    "/emulator/lost-answers": {"count": 1, "status": 500},
    "/emulator/tokens/expire": None,
}
BASIC = {"Authorization": "Basic " + base64.b64encode(b"cid:secret").decode()}


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(World("cid", "secret", now=START)), raise_server_exceptions=False)


@pytest.mark.parametrize("path", list(CONTROL))
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(b"cid:wrong").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"other:secret").decode()},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "secret"},
    ],
    ids=["none", "wrong secret", "wrong id", "garbage", "unknown token", "bare secret"],
)
def test_control_routes_refuse_requests_without_the_emulators_credentials(client: TestClient, path: str, headers: dict[str, str]) -> None:
    answer = client.post(path, json=CONTROL[path], headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers.get("www-authenticate", "").startswith("Basic")


@pytest.mark.parametrize("path", list(CONTROL))
def test_control_routes_accept_basic_credentials_or_a_token_from_the_emulators_ims(client: TestClient, path: str) -> None:
    assert client.post(path, json=CONTROL[path], auth=("cid", "secret")).status_code == 200
    token = client.post("/ims/token/v3", data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "secret", "scope": "openid"}).json()["access_token"]
    assert client.post(path, json=CONTROL[path], headers={"Authorization": f"Bearer {token}"}).status_code == 200


MALFORMED: list[tuple[str, Any]] = [
    ("/emulator/clock", b"not json"),
    ("/emulator/clock", b"\xff\xfe"),
    ("/emulator/clock", []),
    ("/emulator/clock", "2026-11-21T00:00:00Z"),
    ("/emulator/clock", {}),
    ("/emulator/clock", {"now": "²"}),
    ("/emulator/clock", {"now": "0001-01-01T00:00:00+01:00"}),
    ("/emulator/clock", {"now": "9999-12-31T23:59:59-01:00"}),
    ("/emulator/clock", {"now": "9" * 5000}),
    ("/emulator/clock", {"now": [1]}),
    ("/emulator/clock", {"now": "8999-01-01T00:00:00Z"}),  # centuries of slots in one request
    ("/emulator/faults", b"{"),
    ("/emulator/faults", [1]),
    ("/emulator/faults", {"kind": "failed", "slot": "yesterday"}),
    ("/emulator/faults", {"kind": "failed", "slot": 10**30}),
    ("/emulator/faults", {"kind": ["failed"]}),
    ("/emulator/faults", {"kind": "failed", "flowId": {"a": 1}}),
    ("/emulator/throttle", b""),
    ("/emulator/throttle", None),
    ("/emulator/throttle", {"count": "many"}),
    ("/emulator/throttle", {"count": 10**12}),
    ("/emulator/throttle", {"count": -1}),
    ("/emulator/throttle", {"status": "429"}),
    ("/emulator/throttle", {"status": 200}),
    ("/emulator/throttle", {"retryAfter": "soon"}),
    ("/emulator/throttle", {"retryAfter": -5}),
    ("/emulator/lost-answers", b"nope"),
    ("/emulator/lost-answers", [{"count": 1}]),
]


@pytest.mark.parametrize("path, body", MALFORMED, ids=[f"{p.rsplit('/', 1)[-1]}-{i}" for i, (p, _) in enumerate(MALFORMED)])
def test_malformed_control_requests_are_4xx(client: TestClient, path: str, body: Any) -> None:
    if isinstance(body, bytes):
        answer = client.post(path, content=body, auth=("cid", "secret"), headers={"Content-Type": "application/json"})
    else:
        answer = client.post(path, content=json.dumps(body), auth=("cid", "secret"), headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30), lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "now": JSON | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        "slot": JSON,
        "kind": JSON | st.sampled_from(["failed", "no_run", "late_write"]),
        "flowId": JSON,
        "count": JSON,
        "status": JSON,
        "retryAfter": JSON,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(list(CONTROL)), body=JSON | FIELDS)
def test_no_control_request_body_is_a_server_error(client: TestClient, path: str, body: Any) -> None:
    answer = client.post(path, content=json.dumps(body), auth=("cid", "secret"), headers={"Content-Type": "application/json"})
    assert answer.status_code < 500, (path, body, answer.status_code, answer.text[:300])


def test_malformed_flow_service_requests_are_4xx(client: TestClient) -> None:
    token = client.post("/ims/token/v3", data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "secret", "scope": "openid"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "x-api-key": "cid", "x-gw-ims-org-id": "O@AdobeOrg", "Content-Type": "application/json"}
    base = "/data/foundation/flowservice"
    answers = [
        client.post(f"{base}/flows", content=b"\xff", headers=headers),
        client.post(f"{base}/flows", json={"name": "x", "flowSpec": "not an object"}, headers=headers),
        client.post(f"{base}/flows", json={"name": "x", "flowSpec": {"id": ["list"]}}, headers=headers),
        client.post(f"{base}/flows", json={"name": "x", "flowSpec": {"id": "15f8402c-ba66-4626-b54c-9f8e54244d61"}, "targetConnectionIds": [{"a": 1}]}, headers=headers),
        client.patch(f"{base}/flows/nope", content=b"not json", headers=headers),
        client.get(f"{base}/flows", params={"limit": "many"}, headers=headers),
        client.get(f"{base}/flows", params={"property": "createdAt>=yesterday"}, headers=headers),
        client.post("/data/core/activation/disflowprovider/adhocrun", json=[1, 2], headers=headers),
        client.post("/data/core/activation/disflowprovider/adhocrun", json={"activationInfo": {"destinations": "all"}}, headers=headers),
    ]
    for answer in answers:
        assert answer.status_code < 500, (answer.request.method, answer.request.url, answer.status_code, answer.text[:200])


def flow_service(**values: Any) -> dict[str, Any]:
    return {"flow_service": {"client_id": "c", "client_secret": "s", "org_id": "o@AdobeOrg", **values}}


@pytest.mark.parametrize("key", ["base_url", "ims_url", "landing_zone_url", "adhoc_url"])
def test_a_clear_text_flow_service_url_off_this_machine_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"flow_service\.{key}: http:// to a host other than this machine .*allow_insecure_http"):
        settings_from_mapping(flow_service(**{key: "http://flows.example.com/x"}), {})
    allowed = settings_from_mapping(flow_service(**{key: "http://flows.example.com/x", "allow_insecure_http": True}), {})
    assert allowed.flow_service is not None and allowed.flow_service.allow_insecure_http


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/ims", "http://localhost/ims", "http://[::1]:9/ims", "https://ims-na1.adobelogin.com/ims/token/v3"])
def test_https_and_this_machine_need_no_permission(url: str) -> None:
    assert settings_from_mapping(flow_service(ims_url=url), {}).flow_service is not None


def test_ftp_or_garbage_is_refused_even_when_http_is_allowed() -> None:
    with pytest.raises(ConfigError, match=r"flow_service\.base_url: is not an https:// URL"):
        settings_from_mapping(flow_service(base_url="ftp://flows.example.com/x", allow_insecure_http=True), {})


def test_the_client_warns_when_it_sends_credentials_in_clear_text(caplog: pytest.LogCaptureFixture) -> None:
    from auditor.flows.client import FlowsClient

    with caplog.at_level(logging.WARNING, logger="auditor"):
        FlowsClient("http://flows.example.com/x", ims_url="http://ims.example.com/token?x=1", client_id="c", client_secret="s", org_id="o").close()
        FlowsClient("http://127.0.0.1:9/x", ims_url="http://127.0.0.1:9/ims", client_id="c", client_secret="s", org_id="o").close()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and any("http://ims.example.com" in w and "clear text" in w for w in warned), warned
