"""FlowsClient: the Flow Service API for destinations over httpx (reference §1, §6, §7).

IMS server-to-server tokens are cached and renewed 500 s before they expire (and once more on a
401); 429 and 5xx are retried with backoff, honouring Retry-After; lists are followed through
`_links.next`; every failure is a FlowsError that keeps Adobe's own message.

A POST that creates something is never sent twice blindly: it is repeated only when the first one
provably did nothing (it never reached the server, or was refused with 429 or 401). After a 5xx or a
lost answer, a create looks for the entity by name among those that were not there before it, and
takes that one if it was made; other POSTs (the ad-hoc run) give up with a FlowsError.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from auditor.errors import FlowsError
from auditor.flows.models import Connection, Flow, Run

DEFAULT_SCOPES = "openid,session,AdobeID,read_organizations,additional_info.projectedProductContext"
DATASET_EXPORT_FILTER = "inheritedAttributes.targetConnections[].data.outputType==DATASET_EXPORT"
RENEW_BEFORE = 500.0  # seconds: as Adobe's own client does
MAX_RETRY_AFTER = 120.0  # seconds: the longest a Retry-After is waited for before a call is tried again
# transport errors raised before any byte of the request was sent: safe to send any request again
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# characters that mean something in a `property` filter (`,` is "or", `&` joins filters)
FILTER_SYNTAX = frozenset(",&=<>!")
MAX_PAGES = 1000  # pages of one list (100 items each, about): a `_links.next` that never ends is an error, not a hang
MAX_ANSWER = 64 << 20  # bytes of one answer


log = logging.getLogger("auditor")


class _TooSlow(httpx.ReadTimeout):
    """An answer that did not come whole within the client's timeout (a byte now and then met httpx's own per read)."""


class MaybeProcessed(FlowsError):
    """A request that is not safe to repeat failed in a way that leaves unknown whether the
    server acted on it (a 5xx, a timeout or a dropped connection after it was sent)."""


class FlowsClient:
    """A client for one org and sandbox. Raises FlowsError; never returns a half-read list."""

    def __init__(
        self,
        base_url: str,
        *,
        ims_url: str,
        client_id: str,
        client_secret: str,
        org_id: str,
        sandbox: str = "prod",
        scopes: str = DEFAULT_SCOPES,
        transport: httpx.BaseTransport | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._ims_url = ims_url
        from auditor.config import insecure_url_problem

        for name, url in (("IMS", ims_url), ("Flow Service", base_url)):
            problem = insecure_url_problem(url)
            if problem:  # the configuration refuses these unless [flow_service] allow_insecure_http = true
                log.warning("the %s URL %s %s", name, _origin(url), problem)
        self._credentials = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret, "scope": scopes}
        self._headers = {"x-api-key": client_id, "x-gw-ims-org-id": org_id, "x-sandbox-name": sandbox, "Accept": "application/json"}
        self._http = httpx.Client(transport=transport, timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))  # an unreachable API fails in seconds
        self._deadline = timeout  # for a whole answer: httpx's timeout bounds each read, and a byte every few seconds met it for ever
        self._retries, self._backoff, self._sleep, self._clock = retries, backoff, sleep, clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self.token_requests = 0

    def close(self) -> None:
        self._http.close()

    # -- authentication --------------------------------------------------------

    def token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or self._clock() >= self._expires - RENEW_BEFORE:
                response = self._send("POST", self._ims_url, data=self._credentials, auth=False, repeatable=True)  # a second token is harmless
                body = _json(response)
                if not isinstance(body.get("access_token"), str):
                    raise FlowsError("IMS answered without an access_token", status_code=response.status_code)
                self._token = body["access_token"]
                self._expires = self._clock() + _seconds(body.get("expires_in", 86399))
                self.token_requests += 1
            return self._token

    # -- transport -------------------------------------------------------------

    def _send(
        self, method: str, url: str, *, auth: bool = True, headers: Mapping[str, str] | None = None, repeatable: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request, retrying what is safe to retry. `repeatable` (default: every method but
        POST) says the request may be sent again after a 5xx or an answer that never came; if it
        is not, only a request that provably did nothing is repeated, else MaybeProcessed."""
        repeatable = method != "POST" if repeatable is None else repeatable
        renewed = False
        response: httpx.Response | None = None
        for attempt in range(self._retries + 1):
            sent = dict(headers or {})
            if auth:
                sent.update(self._headers)
                sent["Authorization"] = f"Bearer {self.token()}"
            try:
                response = self._request(method, url, sent, kwargs)
            except httpx.TransportError as e:
                if isinstance(e, _TooSlow) and repeatable:  # it already took the whole timeout: not tried again
                    raise FlowsError(f"{method} {_path(url)}: {e}", transient=True) from e
                if not repeatable and not isinstance(e, NEVER_SENT):
                    raise MaybeProcessed(f"{method} {_path(url)}: {type(e).__name__}: {e} (not repeated: it may have been processed)", transient=True) from e
                if attempt == self._retries:
                    raise FlowsError(f"{method} {_path(url)}: {type(e).__name__}: {e}", transient=True) from e
                self._sleep(self._backoff * 2**attempt)
                continue
            if response.status_code == 401 and auth and not renewed:
                renewed = True
                self.token(renew=True)  # an expired or revoked token: renew once, then give up
                continue
            if response.status_code >= 500 and not repeatable:
                raise MaybeProcessed(
                    f"{method} {_path(url)}: {response.status_code} {_message(response)} (not repeated: it may have been processed)",
                    status_code=response.status_code,
                    transient=True,
                )
            if response.status_code == 429 or response.status_code >= 500:
                if attempt < self._retries:
                    self._sleep(_retry_after(response) or self._backoff * 2**attempt)
                continue
            if response.status_code >= 400:
                raise FlowsError(f"{method} {_path(url)}: {response.status_code} {_message(response)}", status_code=response.status_code)
            return response
        assert response is not None
        raise FlowsError(
            f"{method} {_path(url)}: {response.status_code} {_message(response)} (after {self._retries + 1} attempts)",
            status_code=response.status_code,
            transient=response.status_code == 429 or response.status_code >= 500,
        )

    def _request(self, method: str, url: str, headers: Mapping[str, str], kwargs: Mapping[str, Any]) -> httpx.Response:
        """One exchange, whole, within the client's timeout; an answer that takes longer (or is larger than
        MAX_ANSWER) raises a transport error (_TooSlow, not tried again; httpx.ReadError)."""
        deadline = self._clock() + self._deadline
        request = self._http.build_request(method, url, headers=headers, **kwargs)
        response = self._http.send(request, stream=True)
        if response.is_stream_consumed:  # a transport that gives its answers whole (httpx.MockTransport)
            return response
        if "," in response.headers.get("content-encoding", ""):  # gzip over gzip: one chunk unpacks to gigabytes before a check
            response.close()
            raise httpx.ReadError("the answer is encoded more than once (Content-Encoding lists several codings)", request=request)
        try:
            body = bytearray()
            for chunk in response.iter_bytes():  # decoded as it comes: a gzip bomb is held to the limits unpacked
                body += chunk
                if self._clock() > deadline:
                    raise _TooSlow(f"the answer did not come whole within {self._deadline:g} s", request=request)
                if len(body) > MAX_ANSWER:
                    raise httpx.ReadError(f"the answer is larger than {MAX_ANSWER >> 20} MiB", request=request)
        finally:
            response.close()
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=kept, content=bytes(body), request=request)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, f"{self._base}{path}", **kwargs)
        return _json(response) if response.content else None

    def _items(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a list, page by page through `_links.next` (continuation tokens)."""
        query = dict(params or {})
        seen: set[str] = set()
        for _page in range(MAX_PAGES):
            body = self._call("GET", path, params=query)
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise FlowsError(f"GET {path}: the answer has no items list")
            yield from (i for i in items if isinstance(i, dict))
            links = body.get("_links")
            following = links.get("next") if isinstance(links, dict) else None
            href = following.get("href") if isinstance(following, dict) else None
            if not isinstance(href, str) or not href:
                return
            token = dict(parse_qsl(urlsplit(href).query)).get("continuationToken")
            if not token:
                return
            if token in seen:
                raise FlowsError(f"GET {path}: the list's next page is one it gave before (continuation token repeated): it would never end")
            seen.add(token)
            query = {**dict(params or {}), "continuationToken": token}
        raise FlowsError(f"GET {path}: the list goes on past {MAX_PAGES} pages: given up")

    def _one(self, path: str) -> dict[str, Any]:
        body = self._call("GET", path)
        items = body.get("items") if isinstance(body, dict) else None
        if isinstance(items, list) and items and isinstance(items[0], dict):
            return items[0]
        if isinstance(body, dict) and "id" in body:
            return body
        raise FlowsError(f"GET {path}: no entity in the answer")

    # -- endpoints -------------------------------------------------------------

    def connection_spec(self, spec_id: str) -> dict[str, Any]:
        """A destination's connection spec (authSpec, targetSpec, encryptionSpecs)."""
        return self._one(f"/connectionSpecs/{spec_id}")

    def flow_spec(self, spec_id: str) -> dict[str, Any]:
        return self._one(f"/flowSpecs/{spec_id}")

    def flows(self, *, property: str | None = DATASET_EXPORT_FILTER) -> list[Flow]:
        return [Flow.from_api(i) for i in self._items("/flows", {"property": property} if property else None)]

    def flow(self, flow_id: str) -> Flow:
        return Flow.from_api(self._one(f"/flows/{flow_id}"))

    def source_connection(self, connection_id: str) -> Connection:
        return Connection.from_api(self._one(f"/sourceConnections/{connection_id}"))

    def target_connection(self, connection_id: str) -> Connection:
        return Connection.from_api(self._one(f"/targetConnections/{connection_id}"))

    def base_connection(self, connection_id: str) -> Connection:
        return Connection.from_api(self._one(f"/connections/{connection_id}"))

    def runs(self, flow_id: str) -> list[Run]:
        return [Run.from_api(i) for i in self._items("/runs", {"property": f"flowId=={flow_id}"})]

    def run(self, run_id: str) -> Run:
        return Run.from_api(self._one(f"/runs/{run_id}"))

    def create(self, kind: str, body: Mapping[str, Any]) -> tuple[str, str]:
        """POST one of sourceConnections, connections, targetConnections, flows: (id, etag).

        Never makes two: when a POST fails in a way that leaves unknown whether it created the
        entity (5xx, timeout, dropped connection), the entity is looked up by its name among those
        that did not exist before, and returned if it was made; only if it was not is the POST
        sent again. A body without a name cannot be looked up: such a POST is not repeated."""
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return _created(self._call("POST", f"/{kind}", json=dict(body), headers={"Content-Type": "application/json"}))
        before = {str(found.get("id")) for found in self.named(kind, name)}
        for attempt in range(self._retries + 1):
            try:
                return _created(self._call("POST", f"/{kind}", json=dict(body), headers={"Content-Type": "application/json"}))
            except MaybeProcessed as e:
                failure = e
            self._sleep(self._backoff * 2**attempt)  # let the server finish what it may be doing
            try:
                made = [found for found in self.named(kind, name) if str(found.get("id")) not in before]
            except FlowsError as e:
                raise FlowsError(f"{failure}; looking for {name!r} afterwards failed too ({e}): it may exist", status_code=failure.status_code, transient=True) from e
            if len(made) == 1:
                return _created(made[0])
            if made:
                ids = ", ".join(sorted(str(found.get("id")) for found in made))
                raise FlowsError(f"POST /{kind}: {len(made)} {kind} named {name!r} appeared while one was being created ({ids})", status_code=failure.status_code)
        raise FlowsError(
            f"POST /{kind}: {failure.status_code or 'no answer'} {self._retries + 1} times, and no {name!r} was created (last: {failure})",
            status_code=failure.status_code,
            transient=True,
        )

    def named(self, kind: str, name: str) -> list[dict[str, Any]]:
        """The entities of a kind called exactly `name` (filtered by the server when the name
        can be written in a `property` filter, else from the whole list)."""
        params = None if FILTER_SYNTAX & set(name) else {"property": f"name=={name}"}
        return [e for e in self._items(f"/{kind}", params) if e.get("name") == name]

    def patch_flow(self, flow_id: str, etag: str, operations: list[Mapping[str, Any]]) -> str:
        """JSON-Patch a flow; a stale etag is a FlowsError with status 412. Returns the new etag."""
        answer = self._call("PATCH", f"/flows/{flow_id}", json=list(operations), headers={"If-Match": etag, "Content-Type": "application/json"})
        return str(answer.get("etag", "")) if isinstance(answer, dict) else ""

    def set_enabled(self, flow_id: str, enabled: bool) -> None:
        self._call("POST", f"/flows/{flow_id}/action", params={"op": "enable" if enabled else "disable"}, repeatable=True)  # sets a state

    def delete(self, kind: str, entity_id: str) -> None:
        self._call("DELETE", f"/{kind}/{entity_id}")

    def eligible_datasets(self, *, name: str | None = None) -> list[dict[str, Any]]:
        """The datasets eligible for export (reference §1.3), every page; with `name`, only those
        whose name or ID contains it, case-insensitively (filtered here: the API has no such filter)."""
        out: list[dict[str, Any]] = []
        start = 0
        for _page in range(MAX_PAGES):
            body = self._call("GET", "/connectionSpecs/23598e46-f560-407b-88d5-ea6207e49db0/configs", params={"outputType": "activationDatasets", "outputField": "datasets", "start": start, "limit": 100})
            if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
                raise FlowsError("GET eligible datasets: the answer has no items list")
            items = body.get("items") or []
            out += [i for i in items if isinstance(i, dict)]
            page = body.get("pageInfo")
            if not (isinstance(page, dict) and page.get("hasNext") is True) or not items:
                if name:
                    wanted = name.casefold()
                    return [d for d in out if wanted in str(d.get("name", "")).casefold() or wanted in str(d.get("id", "")).casefold()]
                return out
            start += len(items)
        raise FlowsError(f"GET eligible datasets: the list goes on past {MAX_PAGES} pages: given up")

    def trigger(self, adhoc_url: str, flow_id: str, datasets: list[str]) -> list[str]:
        """Start an ad-hoc dataset export now. UNDOCUMENTED: seen only in Adobe's aepp client
        (reference §8.5); may change or vanish. Returns the new runs' ids (from their statusURLs)."""
        body = {"activationInfo": {"destinations": [{"flowId": flow_id, "datasets": [{"id": d} for d in datasets]}]}}
        response = self._send("POST", adhoc_url, json=body, headers={"Accept": "application/vnd.adobe.adhoc.dataset.activation+json; version=1", "Content-Type": "application/json"})
        answer = _json(response)
        destinations = answer.get("destinations") if isinstance(answer, dict) else None
        urls: list[Any] = []
        for dest in destinations if isinstance(destinations, list) else []:
            listed = dest.get("datasets") if isinstance(dest, dict) else None
            urls += [d.get("statusURL") for d in (listed if isinstance(listed, list) else []) if isinstance(d, dict)]
        return [u.rstrip("/").rsplit("/", 1)[-1] for u in urls if isinstance(u, str) and u]

    def dlz_credentials(self, landing_zone_url: str) -> dict[str, Any]:
        """The Data Landing Zone destination container's SAS (reference §2.3)."""
        response = self._send("GET", landing_zone_url, params={"type": "dlz_destination"})
        answer = _json(response)
        if not isinstance(answer, dict):
            raise FlowsError("GET the Data Landing Zone's credentials: the answer is not an object", status_code=response.status_code)
        return answer


def _created(answer: Any) -> tuple[str, str]:
    if not isinstance(answer, dict) or not answer.get("id"):
        raise FlowsError("the create answer has no id")
    return str(answer["id"]), str(answer.get("etag", ""))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as e:
        raise FlowsError(f"{response.request.method} {_path(str(response.request.url))}: not JSON", status_code=response.status_code) from e


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        for key in ("errorMessage", "message", "error_description", "title", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return str(body)[:200]


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After's wait in seconds (a number, or an HTTP date), at most MAX_RETRY_AFTER; None when it is absent or
    unusable (infinite, not a number): a server's word is not allowed to stop the auditor for hours, or crash it."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _seconds(value: Any) -> float:
    """IMS's `expires_in`: a number of seconds; anything else (a word, NaN, a negative) is 0, and the token is renewed
    at its next use."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            return 0.0
        return seconds if math.isfinite(seconds) and seconds > 0 else 0.0
    return 0.0


def _path(url: str) -> str:
    return urlsplit(url).path


def _origin(url: str) -> str:
    """scheme://host:port of a URL (never its user-info or query)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    except ValueError:
        return "(not a URL)"
