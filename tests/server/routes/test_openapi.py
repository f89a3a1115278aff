"""The API's own documentation: every /api/v1 operation is tagged, summarised, described,
shows request examples, and documents its errors with the one error body.

The convention (server/routes/openapi.py): `summary=`, a docstring, `responses=errors(...)`
and, for a JSON body, `openapi_extra=examples(...)`. Each test lists every operation that
misses something, so one run names all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from farmhand import wire
from farmhand.server.app import create_app
from farmhand.server.routes.openapi import TAGS
from farmhand.server.settings import Settings

ERROR_BODY = "#/components/schemas/ErrorBody"


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = Path(tmp_path_factory.mktemp("openapi"))
    settings = Settings(
        data_dir=data, database_url=f"sqlite:///{data}/x.db", admin_token="fh_test_admin_token"
    )
    return TestClient(create_app(settings)).get("/openapi.json").json()


def operations(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op)
        for path, ops in spec["paths"].items()
        if path.startswith(wire.API_PREFIX)
        for method, op in ops.items()
    ]


def test_every_api_operation_is_tagged_summarised_and_described(spec: dict[str, Any]) -> None:
    declared = [t["name"] for t in spec["tags"]]
    assert declared == [t["name"] for t in TAGS] and all(t["description"] for t in spec["tags"])
    found = operations(spec)
    assert len(found) >= 20
    problems = []
    for name, op in found:
        if not op.get("tags") or not set(op["tags"]) <= set(declared):
            problems.append(f"{name}: tags {op.get('tags')} (declare new ones in TAGS)")
        if len(op.get("summary", "")) < 8:
            problems.append(f"{name}: no summary=")
        if len(op.get("description", "")) < 20:
            problems.append(f"{name}: no docstring")
    assert not problems, "\n" + "\n".join(problems)


def test_every_api_operation_documents_its_errors_with_the_error_body(
    spec: dict[str, Any],
) -> None:
    problems = []
    for name, op in operations(spec):
        errors = {code: r for code, r in op["responses"].items() if code.startswith("4")}
        if not {"401", "403"} <= set(errors):
            problems.append(f"{name}: 401/403 not documented (responses=errors(...))")
        for code, response in errors.items():
            content = response.get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") != ERROR_BODY:
                problems.append(f"{name}: {code} is not documented with ErrorBody")
            elif set(content.get("example", {})) != {"detail", "code"}:
                problems.append(f"{name}: {code} has no example error body")
            if response["description"] in ("", "Validation Error"):
                problems.append(f"{name}: {code} says not what it means")
        if (op.get("parameters") or op.get("requestBody")) and "422" not in errors:
            problems.append(f"{name}: takes input but documents no 422")
    assert not problems, "\n" + "\n".join(problems)
    # FastAPI's own validation error shape is never documented: ours replaces it.
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_json_request_bodies_come_with_examples_that_validate(spec: dict[str, Any]) -> None:
    problems = []
    for name, op in operations(spec):
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is None:
            continue
        if not body.get("examples"):
            problems.append(f"{name}: a JSON body without examples (openapi_extra=examples(...))")
            continue
        model = getattr(wire, body["schema"]["$ref"].rsplit("/", 1)[-1])
        for example in body["examples"].values():
            model.model_validate(example["value"])  # an example that works as is
    assert not problems, "\n" + "\n".join(problems)


def test_docs_and_redoc_load(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/x.db")
    client = TestClient(create_app(settings))
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "/openapi.json" in page.text and "farmhand" in page.text, path
