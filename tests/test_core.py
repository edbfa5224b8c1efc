"""The rules are plain Python: the job state machine, wave picking and cancellation fees
(`dispatch.grab.rules`), what a job must meet and which jobs wait for review
(`dispatch.jobs.rules`), which pings can be true (`dispatch.workers.rules`), the caller
(`dispatch.identity.principal`), phone numbers (`dispatch.identity.phones`), dispatch parameters
(`dispatch.communities.params`), booking's calendar (`dispatch.booking.rules`), errors and money
(`dispatch.core`). Importing them loads no
web framework, no database layer and no Redis client."""

from __future__ import annotations

import json
import subprocess
import sys

CORE = [
    "dispatch.core.errors",
    "dispatch.core.money",
    "dispatch.grab.rules",
    "dispatch.jobs.rules",
    "dispatch.workers.rules",
    "dispatch.identity.principal",
    "dispatch.identity.phones",
    "dispatch.communities.params",
    "dispatch.booking.rules",
    "dispatch.safety.rules",
]
FRAMEWORKS = ("litestar", "sqlalchemy", "redis", "asyncpg", "geoalchemy2", "saq", "uvicorn")


def test_the_core_loads_no_framework() -> None:
    probe = (
        "import importlib, json, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout)
    assert loaded == [], f"the core imports {loaded}: move that code to a service"


def test_the_rules_answer_values_with_values() -> None:
    from datetime import UTC, datetime, timedelta

    from dispatch.grab.rules import cancellation_fee, check_transition
    from dispatch.identity.principal import Principal
    from dispatch.jobs.rules import review_reason

    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    fee = cancellation_fee(
        status="assigned",
        cancelled_by="resident",
        price_cents=10_000,
        assigned_at=now - timedelta(minutes=10),
        now=now,
    )
    assert fee == 1_000
    check_transition("open", "cancelled")
    assert review_reason("Helper wanted", "先交押金 200 元") is not None
    assert Principal(1, "operator", frozenset({7})).can_operate(7)


def test_logs_hide_tokens_and_codes_inside_text() -> None:
    from dispatch.infra.logs import redact

    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyIn0.AqOn05WPeVnXG7bn7y_BD5PudUYB5PkDW7JM_xo0R1Y"
    line = f'127.0.0.1:5 - "WebSocket /v1/workers/me/stream?token={jwt}" [accepted]'
    out = redact(None, "info", {"event": line, "url": "/v1/x?a=1&code=123456&b=2"})
    assert jwt not in out["event"] and "stream?token=[redacted]" in out["event"]
    assert out["url"] == "/v1/x?a=1&code=[redacted]&b=2"
    bearer = redact(None, "info", {"event": f"Bearer {jwt} sent"})
    assert bearer["event"] == "Bearer [redacted] sent"
