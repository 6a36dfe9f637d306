"""`auditor serve`'s API on a real port: tokens (401/403), every route, Prometheus output."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from auditor.config import Settings, load_settings
from auditor.runtime import Runtime
from auditor.service.app import create_app
from auditor.service.worker import Worker
from tests.conftest import HTTP, Tree
from tests.integration.test_audit_tree import WEB, build_defect_tree
from tests.servers import free_port

AS_OF = datetime(2026, 11, 28, 12, tzinfo=UTC)
READ, ADMIN = "read-token-for-tests", "admin-token-for-tests"


def with_service(config: Path) -> Settings:
    text = config.read_text()
    config.write_text(
        text.replace(
            "[catalog]",
            f'[service]\ntokens = [{{ name = "r", token = "{READ}", role = "read" }}, {{ name = "a", token = "{ADMIN}", role = "admin" }}]\n\n[catalog]',
            1,
        )
    )
    return load_settings(config, {})


@pytest.fixture
def service(tree: Tree, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings = with_service(build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}"))
    runtime = Runtime(settings)
    worker = Worker(runtime, clock=lambda: AS_OF)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime, worker, clock=lambda: AS_OF), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        server.should_exit = True
        thread.join(5)
        runtime.close()


def get(base: str, path: str, token: str | None = READ, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return HTTP.get(f"{base}{path}", headers=headers, params=params or None, timeout=30)


ROUTES = ["/api/compliance", "/api/exports", "/api/exports/web/windows", "/api/alerts", "/api/audits", f"/api/restore?dataset={WEB}&at=2026-11-27T05:00:00Z"]


@pytest.mark.parametrize("path", ROUTES)
def test_every_api_route_refuses_a_missing_or_wrong_token(service: tuple[str, Settings], path: str) -> None:
    base, _ = service
    assert get(base, path, None).status_code == 401
    assert get(base, path, "not-a-token").status_code == 401
    assert get(base, path).status_code == 200


def test_starting_an_audit_needs_the_admin_role(service: tuple[str, Settings]) -> None:
    base, _ = service
    assert HTTP.post(f"{base}/api/audits", timeout=60).status_code == 401
    refused = HTTP.post(f"{base}/api/audits", headers={"Authorization": f"Bearer {READ}"}, timeout=60)
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    started = HTTP.post(f"{base}/api/audits", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
    assert started.status_code == 201 and started.json()["status"] == "not_compliant"


def test_routes_answer_from_the_catalog_after_an_audit(service: tuple[str, Settings]) -> None:
    base, _ = service
    HTTP.post(f"{base}/api/audits", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60).raise_for_status()

    compliance = get(base, "/api/compliance").json()
    assert compliance["status"] == "not_compliant" and compliance["windows"]["missing"] == 1 and compliance["windows"]["invalid"] == 5

    windows = get(base, "/api/exports/web/windows", start="2026-11-27T00:00:00Z", end="2026-11-27T09:00:00Z").json()
    assert [(w["scheduled"], w["status"]) for w in windows] == [
        ("2026-11-27T00:00:00Z", "ok"), ("2026-11-27T03:00:00Z", "ok"), ("2026-11-27T06:00:00Z", "missing"), ("2026-11-27T09:00:00Z", "late"),
    ]
    findings = get(base, "/api/exports/web/windows/2026-11-27T12:00:00Z/findings", dataset=WEB).json()
    assert [f["code"] for f in findings] == ["parquet.bad_magic"]

    plan = get(base, "/api/restore", dataset=WEB, at="2026-11-27T05:00:00Z").json()
    assert plan["complete"] is True and [c["scheduled"] for c in plan["chain"]] == ["2026-11-27T00:00:00Z", "2026-11-27T03:00:00Z"]
    assert all(len(c["files"]) == 2 for c in plan["chain"])
    broken = get(base, "/api/restore", dataset=WEB, at="2026-11-28T00:00:00Z").json()
    assert broken["complete"] is False and broken["broken"]["scheduled"] == "2026-11-27T06:00:00Z"

    assert get(base, "/api/exports/nope/windows").status_code == 404
    assert get(base, "/api/restore", dataset="nope", at="2026-11-28T00:00:00Z").status_code == 404
    assert len(get(base, "/api/audits").json()) == 1
    assert get(base, "/openapi.json", None).status_code == 401  # the API's description is behind the API's rule
    assert get(base, "/openapi.json").json()["info"]["title"] == "export-auditor"


def test_health_is_open_and_metrics_parse_as_prometheus(service: tuple[str, Settings]) -> None:
    base, _ = service
    assert get(base, "/healthz", None).json()["status"] == "ok"
    assert get(base, "/metrics", None).status_code == 401  # closed unless the config opens it
    HTTP.post(f"{base}/api/audits", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60).raise_for_status()

    families = {f.name: f for f in text_string_to_metric_families(get(base, "/metrics").text)}

    windows = {(s.labels["export"], s.labels["status"]): s.value for s in families["auditor_windows"].samples}
    assert windows[("web", "missing")] == 1 and windows[("web", "ok")] == 5 and windows[("profiles", "ok")] == 2
    rpo = {s.labels["export"]: s.value for s in families["auditor_rpo_seconds"].samples}
    assert rpo["web"] == 33 * 3600
    assert families["auditor_last_audit_timestamp_seconds"].samples[0].value > 0
    assert families["auditor_last_audit_duration_seconds"].samples[0].value >= 0
    assert 0 <= families["auditor_deep_verified_ratio"].samples[0].value <= 1


def test_twenty_clients_look_up_restores_at_once_without_errors(service: tuple[str, Settings]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    base, _ = service
    HTTP.post(f"{base}/api/audits", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60).raise_for_status()

    def client(_: int) -> list[tuple[int, str]]:
        with httpx.Client(headers={"Authorization": f"Bearer {READ}"}, timeout=30) as http:
            return [(r.status_code, r.text) for r in (http.get(f"{base}/api/restore", params={"dataset": WEB, "at": "2026-11-27T05:00:00Z"}) for _ in range(10))]

    with ThreadPoolExecutor(20) as pool:
        answers = [a for batch in pool.map(client, range(20)) for a in batch]
    assert len(answers) == 200
    assert {status for status, _ in answers} == {200}
    assert len({body for _, body in answers}) == 1  # every client saw the same plan


def test_starting_an_audit_with_no_exports_configured_is_a_clear_400(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    config = tmp_path / "auditor.toml"
    config.write_text(f'[service]\ntokens = [{{ name = "a", token = "{ADMIN}", role = "admin" }}]\n[catalog]\nurl = "sqlite:///{tmp_path / "c.db"}"\n')
    with Runtime(load_settings(config, {})) as runtime:
        client = TestClient(create_app(runtime, Worker(runtime), clock=lambda: AS_OF))
        answer = client.post("/api/audits", headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 400 and "no exports" in answer.json()["error"]
