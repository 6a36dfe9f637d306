"""Which failed requests FlowsClient sends again: never a POST that may already have created something."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from auditor.errors import FlowsError
from auditor.flows.client import FlowsClient, MaybeProcessed

BASE = "https://platform.test/data/foundation/flowservice"
Fault = Callable[[httpx.Request, int], httpx.Response | None]


class FakeService:
    """A token endpoint and a `flows` collection; `fault(request, n)` (n: the how-many-th POST to
    /flows) may answer instead, raise, or return None to let the request through."""

    def __init__(self, fault: Fault | None = None, *, acted: bool = False) -> None:
        self.fault, self.acted = fault, acted  # acted: the POST takes effect before the fault
        self.flows: list[dict[str, str]] = []
        self.posts: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 86399})
        if request.method == "GET" and request.url.path.endswith("/flows"):
            wanted = request.url.params.get("property", "").removeprefix("name==")
            return httpx.Response(200, json={"items": [f for f in self.flows if not wanted or f["name"] == wanted], "_links": {}})
        self.posts.append(request.url.path)
        if request.url.path.endswith("/flows"):
            flow = {"id": f"flow-{len(self.posts)}", "etag": '"1"', "name": json.loads(request.content)["name"]}
            if self.acted:
                self.flows.append(flow)
            answer = self.fault(request, len(self.posts)) if self.fault else None
            if answer is not None:
                return answer
            if not self.acted:
                self.flows.append(flow)
            return httpx.Response(201, json={"id": flow["id"], "etag": flow["etag"]})
        answer = self.fault(request, len(self.posts)) if self.fault else None
        return answer or httpx.Response(200, json={"id": "x"})


def client(service: FakeService, *, retries: int = 3) -> FlowsClient:
    return FlowsClient(
        BASE, ims_url="https://ims.test/ims/token/v3", client_id="c", client_secret="s", org_id="O",
        transport=httpx.MockTransport(service), retries=retries, backoff=0.0, sleep=lambda _: None,
    )


def first(exc: type[httpx.TransportError] | None = None, status: int | None = None) -> Fault:
    def fault(request: httpx.Request, n: int) -> httpx.Response | None:
        if n > 1:
            return None
        if exc is not None:
            raise exc("injected", request=request)
        return httpx.Response(status or 500, json={"message": "injected"}, headers={"Retry-After": "0"})

    return fault


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ConnectTimeout])
def test_a_create_that_never_left_is_sent_again(exc: type[httpx.TransportError]) -> None:
    service = FakeService(first(exc))
    assert client(service).create("flows", {"name": "web"}) == ("flow-2", '"1"')
    assert len(service.posts) == 2 and [f["id"] for f in service.flows] == ["flow-2"]


def test_a_create_refused_with_429_is_sent_again() -> None:
    service = FakeService(first(status=429))
    assert client(service).create("flows", {"name": "web"})[0] == "flow-2"
    assert len(service.flows) == 1


@pytest.mark.parametrize("fault", [first(httpx.ReadTimeout), first(httpx.RemoteProtocolError), first(status=500), first(status=503)], ids=["timeout", "dropped", "500", "503"])
def test_a_create_that_acted_but_failed_is_found_not_made_again(fault: Fault) -> None:
    service = FakeService(fault, acted=True)
    assert client(service).create("flows", {"name": "web"}) == ("flow-1", '"1"')
    assert len(service.posts) == 1 and len(service.flows) == 1


def test_a_create_that_failed_without_acting_is_sent_again_once_proven() -> None:
    service = FakeService(first(status=503))
    assert client(service).create("flows", {"name": "web"})[0] == "flow-2"
    assert len(service.posts) == 2 and len(service.flows) == 1


def test_a_create_with_no_attempts_left_says_none_was_made() -> None:
    service = FakeService(lambda request, n: httpx.Response(500, json={"message": "down"}))
    with pytest.raises(FlowsError, match="no 'web' was created") as raised:
        client(service, retries=1).create("flows", {"name": "web"})
    assert raised.value.transient and len(service.posts) == 2 and service.flows == []


def test_an_adhoc_run_is_not_sent_again_after_a_5xx_but_enable_is() -> None:
    service = FakeService(first(status=502))
    with pytest.raises(MaybeProcessed):
        client(service).trigger("https://platform.test/adhocrun", "f", ["d"])
    assert len(service.posts) == 1
    service = FakeService(first(status=502))
    client(service).set_enabled("f", True)
    assert len(service.posts) == 2


@pytest.mark.parametrize("value", ["1e12", "inf", "-inf", "nan", "Fri, 01 Jan 9999 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", "-5", "soon", "30"])
def test_a_retry_after_of_any_value_is_waited_for_at_most_a_bounded_time_and_ends_in_a_flows_error(value: str) -> None:
    """A 429 whose Retry-After was 1e12 or inf crashed the audit (OverflowError in time.sleep): exit 1 and no report."""
    from auditor.flows.client import MAX_RETRY_AFTER

    def throttled(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 86399})
        return httpx.Response(429, json={"message": "slow down"}, headers={"Retry-After": value})

    sleeps: list[float] = []
    c = FlowsClient(BASE, ims_url="https://ims.test/ims/token/v3", client_id="c", client_secret="s", org_id="O",
                    transport=httpx.MockTransport(throttled), retries=2, backoff=0.5, sleep=sleeps.append)
    with pytest.raises(FlowsError) as raised:
        c.flows()
    assert raised.value.transient and raised.value.status_code == 429
    assert len(sleeps) == 2 and all(0.0 <= s <= MAX_RETRY_AFTER for s in sleeps), sleeps
    if value == "30":
        assert sleeps == [30.0, 30.0]
