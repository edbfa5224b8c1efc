"""The OpenAPI document tells the truth: errors as problem details with their statuses, bodies
that forbid unknown fields, integer limits as integers, public probes outside the bearer scheme,
required headers required; and schemathesis, run over every operation with an admin and a
resident token and all its checks, finds nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dispatch.web.openapi import ERRORS, operations
from tests.conftest import TEST_SECRET
from tests.processes import ServiceProcess

CONFIG = Path(__file__).parent / "fuzz" / "schemathesis.toml"
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))


def test_every_operation_declares_its_errors(app) -> None:
    missing = [key for key, _ in operations(app) if key not in ERRORS]
    assert not missing, f"add these operations to dispatch.api.openapi.ERRORS: {missing}"
    stale = sorted(set(ERRORS) - {key for key, _ in operations(app)})
    assert not stale, f"no such operations any more: {stale}"


async def document(client) -> dict[str, Any]:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    return r.json()


def walk(node: Any):
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from walk(child)
    elif isinstance(node, list):
        for child in node:
            yield from walk(child)


async def test_errors_are_documented_as_problem_details(client) -> None:
    doc = await document(client)
    op = doc["paths"]["/v1/jobs"]["post"]
    for status in ("400", "401", "403", "404", "409", "413", "415", "422"):
        assert list(op["responses"][status]["content"]) == ["application/problem+json"], status
    problem = doc["components"]["schemas"]["Problem"]
    assert {"status", "title", "detail", "code"} <= set(problem["required"])
    assert "429" in doc["paths"]["/v1/auth/otp"]["post"]["responses"]
    for item in doc["paths"].values():
        for op in item.values():
            for response in op["responses"].values():
                assert "application/json" not in response.get("content", {}) or (
                    "status_code" not in str(response)
                ), "Litestar's own error shape is still documented"


async def test_bodies_forbid_unknown_fields_and_limits_are_integers(client) -> None:
    doc = await document(client)
    schemas = doc["components"]["schemas"]
    for name in ("JobCreate", "CommunityCreate", "OtpRequest", "WorkerProfileIn", "Point"):
        assert schemas[name]["additionalProperties"] is False, name
    skill = schemas["WorkerProfileIn"]["properties"]["skills"]["items"]
    assert skill["maxLength"] == 40 and "pattern" in skill
    for node in walk(doc):
        if node.get("type") == "integer":
            for bound in ("minimum", "maximum"):
                assert not isinstance(node.get(bound), float), node
    job_id = doc["paths"]["/v1/jobs/{job_id}"]["get"]["parameters"][0]["schema"]
    assert job_id == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


async def test_probes_are_public_and_required_headers_required(client) -> None:
    doc = await document(client)
    assert doc["security"] == [{"BearerToken": []}]
    for path in ("/healthz", "/readyz", "/metrics", "/v1/auth/otp", "/v1/telephony/voice"):
        (op,) = doc["paths"][path].values()
        assert op["security"] == [], path
    assert "security" not in doc["paths"]["/v1/jobs"]["post"]
    (key,) = [
        p for p in doc["paths"]["/v1/jobs"]["post"]["parameters"] if p["name"] == "Idempotency-Key"
    ]
    assert key["required"] is True
    (optional,) = doc["paths"]["/v1/offers/{offer_id}/accept"]["post"]["parameters"][1:]
    assert optional["name"] == "Idempotency-Key" and optional["required"] is False
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def run_schemathesis(base: str, token: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("schemathesis")
    return subprocess.run(
        [
            str(cli),
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{base}/schema/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(EXAMPLES),
            "--generation-database",
            "none",
            "--header",
            f"Authorization: Bearer {token}",
            # The operators' event stream never ends by design (tests/dispatch/test_ops_events.py
            # covers it); a fuzzer waiting for its end would wait for ever.
            "--exclude-path",
            "/v1/ops/communities/{community_id}/events",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
async def test_schemathesis_finds_nothing(server_urls, principals) -> None:
    """Every operation, every check, as an admin and as a resident (a bounded run; `make fuzz`
    runs longer)."""
    admin = (await principals.admin())["Authorization"].split()[1]
    _, resident = await principals.user("resident")
    server = ServiceProcess(server_urls, TEST_SECRET)
    try:
        await asyncio.to_thread(server.wait_ready)
        for token in (admin, resident["Authorization"].split()[1]):
            seed = os.environ.get("SCHEMATHESIS_SEED", "20261203")
            done = await asyncio.to_thread(run_schemathesis, server.base, token, "--seed", seed)
            assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    finally:
        server.stop()
