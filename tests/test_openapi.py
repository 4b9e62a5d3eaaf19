"""/openapi.json, served by the real server, documents every /ledger/v1 route of the app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

import farthing
from farthing.config import Settings
from farthing.http import create_app
from tests.conftest import JOURNAL_KEY
from tests.http.conftest import running_server

PREFIX = "/ledger/v1"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# The native API as specified; the app must have at least these (the check is not vacuous).
SPECIFIED = {
    ("/ledger/v1/accounts", "post"),
    ("/ledger/v1/transfers", "post"),
    ("/ledger/v1/accounts/lookup", "post"),
    ("/ledger/v1/transfers/lookup", "post"),
    ("/ledger/v1/accounts/{account_id}", "get"),
    ("/ledger/v1/transfers/{transfer_id}", "get"),
    ("/ledger/v1/accounts/{account_id}/limit", "post"),
    ("/ledger/v1/accounts/{account_id}/transfers", "get"),
    ("/ledger/v1/accounts/{account_id}/balance", "get"),
}

Operation = tuple[str, str]


def _served_routes(app: FastAPI) -> Iterator[tuple[str | None, set[str] | None]]:
    """(path, methods) of every route, including those of included routers."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - FastAPI that flattens included routers itself.
        for route in app.routes:
            yield getattr(route, "path", None), getattr(route, "methods", None)
        return
    for context in iter_route_contexts(app.routes):
        yield context.path, context.methods


def routed_operations(app: FastAPI) -> set[Operation]:
    """(path, method) of every route the app serves under /ledger/v1, documented or not."""
    operations: set[Operation] = set()
    for path, methods in _served_routes(app):
        if path is None or not path.startswith(PREFIX):
            continue
        lowered = {method.lower() for method in methods or ()}
        if "get" in lowered:
            lowered.discard("head")  # Starlette answers HEAD for every GET route implicitly.
        operations.update((path, method) for method in lowered)
    return operations


def documented_operations(document: dict[str, Any]) -> set[Operation]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS and path.startswith(PREFIX)
    }


def undocumented(app: FastAPI, document: dict[str, Any]) -> set[Operation]:
    return routed_operations(app) - documented_operations(document)


@pytest.fixture
def app(sqlite_url: str) -> Iterator[FastAPI]:
    created = create_app(Settings(database_url=sqlite_url, journal_key=JOURNAL_KEY))
    yield created
    created.state.engine.dispose()


@pytest.fixture
def served(sqlite_url: str, tmp_path: Path) -> dict[str, Any]:
    """The document as the running server serves it (no API key needed)."""
    with running_server(sqlite_url, tmp_path / "server.log") as base_url:
        response = httpx.get(f"{base_url}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def test_openapi_documents_every_ledger_route(app: FastAPI, served: dict[str, Any]) -> None:
    assert served["openapi"].startswith("3.")
    assert served["info"]["title"] == "Farthing"
    assert served["info"]["version"] == farthing.__version__
    routed = routed_operations(app)
    assert routed >= SPECIFIED
    assert undocumented(app, served) == set()
    # Nor does it document operations the app does not serve.
    assert documented_operations(served) == routed
    assert served == app.openapi()
    for path, method in sorted(routed):
        operation = served["paths"][path][method]
        assert {"200", "400", "401"} <= set(operation["responses"]), (path, method)
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), (path, method)
        if method == "post":
            assert operation["requestBody"]["required"] is True, (path, method)


def test_a_route_missing_from_the_document_is_caught(app: FastAPI) -> None:
    async def hidden() -> dict[str, str]:
        return {}

    assert undocumented(app, app.openapi()) == set()
    router = APIRouter(prefix=PREFIX)
    router.add_api_route("/hidden", hidden, methods=["GET"], include_in_schema=False)
    app.include_router(router)
    app.add_api_route(
        f"{PREFIX}/accounts/{{account_id}}", hidden, methods=["DELETE"], include_in_schema=False
    )
    app.openapi_schema = None
    assert undocumented(app, app.openapi()) == {
        (f"{PREFIX}/hidden", "get"),
        (f"{PREFIX}/accounts/{{account_id}}", "delete"),
    }


def test_documented_errors_are_the_ones_the_api_gives(app: FastAPI) -> None:
    document = app.openapi()
    for path, method in sorted(documented_operations(document)):
        assert "422" not in document["paths"][path][method]["responses"], (path, method)
