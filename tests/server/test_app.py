"""The app's public surface: health, OpenAPI, docs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.server.helpers import API


def test_healthz_needs_no_token(api: TestClient, backend: str) -> None:
    r = api.get("/healthz", headers={"Authorization": ""})
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["database"] == backend


def test_openapi_lists_every_endpoint_with_the_error_schema(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/campaigns",
        "/records",
        "/records/{record_id}",
        "/records/cancel",
        "/records/retry",
        "/leases",
        "/agents",
        "/agents/{agent_id}/heartbeat",
        "/runs/{run_id}/start",
        "/runs/{run_id}/complete",
        "/runs/{run_id}/fail",
        "/runs/{run_id}/release",
        "/tokens",
    ):
        assert API + path in paths, path
    claim = paths[API + "/leases"]["post"]
    assert claim["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    # Routes that answer with pre-serialised JSON still document their answer's schema.
    for path, model in (
        ("/leases", "Leases"),
        ("/runs/reports", "RunReportAnswers"),
        ("/runs/{run_id}/complete", "RunAck"),
    ):
        ok = paths[API + path]["post"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"]["$ref"].endswith("/" + model), path
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert api.get("/docs").status_code == 200
