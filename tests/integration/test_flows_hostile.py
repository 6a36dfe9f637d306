"""A Flow Service (or IMS) that answers in shapes no one foresaw, pages for ever or trickles its answer: each is an
error in the report (the runs unread, the windows judged with what the catalog knew), never a crash or a hang.

The service here is a real HTTP server on 127.0.0.1 whose answers each test writes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import auditor.flows.client as flows_client
from auditor.cli import main
from auditor.errors import FlowsError
from auditor.flows.client import FlowsClient
from tests.conftest import Tree, t

FLOW = "11111111-2222-3333-4444-555555555555"
Answer = Callable[[BaseHTTPRequestHandler], None]


class Service:
    """Answers POST /ims/token/v3 with a token, and every GET with what `answers` holds for its path."""

    def __init__(self) -> None:
        self.token: dict[str, Any] = {"access_token": "the-token", "expires_in": 86399}
        self.answers: dict[str, Answer | Any] = {}
        self.requests: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                service.requests.append(f"POST {self.path}")
                self.send_json(service.token)

            def do_GET(self) -> None:
                service.requests.append(f"GET {self.path}")
                path = self.path.split("?", 1)[0]
                answer = next((a for p, a in service.answers.items() if path.endswith(p)), {"items": []})
                if callable(answer):
                    answer(self)
                else:
                    self.send_json(answer)

            def send_json(self, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def client(self, *, timeout: float = 30.0) -> FlowsClient:
        return FlowsClient(f"{self.base}/data/foundation/flowservice", ims_url=f"{self.base}/ims/token/v3", client_id="cid", client_secret="secret",
                           org_id="O@AdobeOrg", timeout=timeout, backoff=0.01, sleep=lambda _: None)


@pytest.fixture
def service() -> Iterator[Service]:
    running = Service()
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def a_flow(**changes: Any) -> dict[str, Any]:
    return {"items": [{"id": FLOW, "name": "f", "state": "enabled", "flowSpec": {"id": "x"}, "scheduleParams": {}, **changes}]}


def a_run(**metrics: Any) -> dict[str, Any]:
    return {"id": "run-1", "flowId": FLOW, "createdAt": int(t("2026-11-27T00:00").timestamp() * 1000), "metrics": {"statusSummary": {"status": "success"}, **metrics}}


def test_answers_of_unforeseen_shapes_are_read_leniently(service: Service) -> None:
    """Each of these crashed the audit with a traceback (AttributeError, OSError, ValueError) and no report."""
    c = service.client()
    service.answers["/flows/" + FLOW] = a_flow(flowSpec="not-an-object", sourceConnectionIds="x", scheduleParams=[1])
    flow = c.flow(FLOW)
    assert (flow.flow_spec_id, flow.source_connection_ids, dict(flow.schedule_params)) == ("", (), {})
    service.answers["/runs"] = {"items": [a_run(), {"id": "run-2", "flowId": FLOW, "createdAt": 1e20, "metrics": "oops"}, a_run(
        recordSummary={"outputRecordCount": "12x", "sourceSummaries": [{"id": "dsA", "inputRecordCount": "12x"}, {"id": "dsB", "inputRecordCount": 5}, "x"]},
        fileSummary={"outputFileCount": True}, durationSummary="soon", statusSummary={"status": "failed", "errors": "none"},
    )], "_links": {"next": "not-an-object"}}
    first, odd, counts = c.runs(FLOW)
    assert first.status == "success" and first.created_at == t("2026-11-27T00:00")
    assert (odd.status, odd.created_at, odd.records) == ("", None, None)  # no time that far out, no metrics: nothing, not a crash
    assert (counts.records, counts.files, dict(counts.dataset_records), counts.errors) == (None, None, {"dsB": 5}, ())  # "12x" is no count (and no zero)
    service.token = {"access_token": "another", "expires_in": "soon"}
    assert c.token(renew=True) == "another"  # an expiry that is no number: renewed at its next use
    assert c.token() == "another" and c.token_requests == 3


def test_a_list_whose_next_page_repeats_or_never_ends_is_an_error_not_a_hang(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    c = service.client()
    service.answers["/runs"] = {"items": [a_run()], "_links": {"next": {"href": "/runs?continuationToken=again"}}}
    with pytest.raises(FlowsError, match="repeated"):
        c.runs(FLOW)
    assert len([r for r in service.requests if r.startswith("GET")]) == 2  # the first page, and the page it names once more

    def fresh_token_each_time(handler: BaseHTTPRequestHandler) -> None:
        handler.send_json({"items": [a_run()], "_links": {"next": {"href": f"/runs?continuationToken=t{len(service.requests)}"}}})  # type: ignore[attr-defined]

    service.answers["/runs"] = fresh_token_each_time
    monkeypatch.setattr(flows_client, "MAX_PAGES", 7)
    service.requests.clear()
    with pytest.raises(FlowsError, match="past 7 pages"):
        c.runs(FLOW)
    assert len(service.requests) == 7


def test_an_answer_that_trickles_in_ends_at_the_clients_timeout_and_is_not_asked_for_again(service: Service) -> None:
    """A byte every so often met httpx's timeout, which bounds each read: the audit waited for ever."""

    def trickle(handler: BaseHTTPRequestHandler) -> None:
        body = json.dumps(a_flow()).encode() + b" " * 400
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            for byte in body:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client hung up: as it should

    service.answers["/flows/" + FLOW] = trickle
    began = time.monotonic()
    with pytest.raises(FlowsError, match=r"did not come whole within 1 s"):
        service.client(timeout=1.0).flow(FLOW)
    assert time.monotonic() - began < 5  # the whole answer would take 20 s
    assert [r for r in service.requests if r.startswith("GET")] == [f"GET /data/foundation/flowservice/flows/{FLOW}"]


def test_an_audit_whose_flow_service_answers_oddly_reports_it_and_goes_on(service: Service, tree: Tree, tmp_path: Path) -> None:
    """The audit died with a traceback and exit 1 ("not compliant"), no report and no record; it now reports the runs
    as unread, judges with what the catalog knew, and says so: incomplete (exit 3) for a healthy tree."""
    tree.export("dsA", t("2026-11-27T00:00"), count=3, file_format="json", manifest=False)
    service.answers["/flows/" + FLOW] = a_flow()
    service.answers["/runs"] = {"items": [a_run()], "_links": {"next": {"href": "/runs?continuationToken=again"}}}
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[validation]
isolate = false
[flow_service]
base_url = "{service.base}/data/foundation/flowservice"
ims_url = "{service.base}/ims/token/v3"
client_id = "cid"
client_secret = "${{env:FS_SECRET}}"
org_id = "O@AdobeOrg"
allow_insecure_http = true
[[destinations]]
name = "d"
url = "{tree.url}"
[[exports]]
name = "e"
destination = "d"
flow_id = "{FLOW}"
datasets = ["dsA"]
format = "json"
manifest = false
schedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-28T00:00:00Z" }}
"""
    )
    result = CliRunner(env={"FS_SECRET": "s3cr3t-value"}).invoke(main, ["audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 3 and report["status"] == "incomplete", result.output
    assert any("continuation token repeated" in e["message"] for e in report["errors"]), report["errors"]
    assert [w["status"] for e in report["exports"] for w in e["windows"]] == ["ok"]


def test_a_compressed_answer_is_held_to_the_limits_as_it_unpacks(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size limit and the deadline counted the compressed bytes, and the answer was unpacked whole after: 2 MB of
    gzip became 2 GiB in memory. An honest compressed answer is read as before."""
    import gzip

    def compressed(body: bytes) -> Answer:
        def answer(handler: BaseHTTPRequestHandler) -> None:
            data = gzip.compress(body, 1)
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Encoding", "gzip")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)

        return answer

    service.answers["/flows/" + FLOW] = compressed(json.dumps(a_flow()).encode())
    assert service.client().flow(FLOW).id == FLOW
    monkeypatch.setattr(flows_client, "MAX_ANSWER", 1 << 20)
    service.answers["/flows/" + FLOW] = compressed(b'{"items": [' + b" " * (64 << 20) + b"]}")  # 64 MiB unpacked, 64 KiB sent
    with pytest.raises(FlowsError, match="larger than 1 MiB"):
        service.client().flow(FLOW)

    def twice(handler: BaseHTTPRequestHandler) -> None:  # gzip over gzip: one chunk of it unpacked to gigabytes before any check
        data = gzip.compress(gzip.compress(b" " * (64 << 20), 9), 9)
        handler.send_response(200)
        handler.send_header("Content-Encoding", "gzip, gzip")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    service.answers["/flows/" + FLOW] = twice
    with pytest.raises(FlowsError, match="encoded more than once"):
        service.client().flow(FLOW)
