"""Schemathesis against a live server: generated requests for every operation, checked against the OpenAPI
document the server publishes (no 5xx, documented status codes, content types and response schemas).

Bounded: a few examples per operation, a loopback server only, and ``scripts/openapi.py`` checked to write
the same document without starting a server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from captionkit.serve import ServeSettings
from serve_helpers import live_server, pipeline_config

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "schema-key"
EXAMPLES = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = ServeSettings(port=0, ui=False, jobs_dir=str(tmp_path_factory.mktemp("jobs-schema")), request_timeout_s=10,
                           queue_size=16, max_upload_mb=2)
    with live_server(pipeline_config(), config, api_keys=[KEY], headers={"X-API-Key": KEY}) as live:
        yield live


@pytest.fixture(scope="module")
def schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


OPERATIONS = [("/healthz", "GET"), ("/readyz", "GET"), ("/v1/describe", "POST"), ("/v1/posts", "POST"),
              ("/v1/jobs", "GET"), ("/v1/jobs", "POST"), ("/v1/jobs/{job_id}", "GET"), ("/v1/jobs/{job_id}", "DELETE"),
              ("/v1/jobs/{job_id}/results", "GET")]


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_generated_requests_conform(server, schema, path, method):
    operation = schema[path][method]
    # Valid-by-schema bodies may still be refused (random bytes are no image), so the check that every
    # schema-valid request succeeds does not apply; everything else does.
    from schemathesis.checks import positive_data_acceptance

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call_and_validate(base_url=server.url, headers={"X-API-Key": KEY}, timeout=30,
                                          excluded_checks=[positive_data_acceptance])
        assert response.status_code < 500
        assert "Traceback" not in response.text

    check()


def test_openapi_script_writes_the_served_document(server, tmp_path):
    out = tmp_path / "openapi.json"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "openapi.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    written = json.loads(out.read_text())
    import httpx

    served = httpx.get(f"{server.url}/openapi.json").json()
    assert written["paths"].keys() == served["paths"].keys()
    assert written["components"]["schemas"].keys() == served["components"]["schemas"].keys()
