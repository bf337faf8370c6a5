"""With the database gone, the API answers 503 problems quickly, never 500."""

from __future__ import annotations

import socket

import httpx
import pytest

from pipeline_coverage.config import WebSettings
from pipeline_coverage.web import deps
from pipeline_coverage.web.app import create_app
from tests.conftest import serving


def test_database_down_gives_503_not_500(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deps, "POOL_TIMEOUT", 0.5)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://nobody@127.0.0.1:{port}/none?connect_timeout=1"
    app = create_app(url, WebSettings(secret_key="x", pool_size=1), open_pool=False)
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/problem+json"
        response = client.get(
            "/v1/coverage-runs",
            headers={"Authorization": "Bearer pcov_" + "0" * 32 + "_secret"},
        )
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 503
