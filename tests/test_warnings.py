"""Warnings are errors for our own code: pyproject.toml's `filterwarnings` starts with "error",
and its few `ignore`s are for third-party warnings only, matched on the module they come from.
These run a small pytest of their own under the project's configuration and read its outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECKS = """
import warnings

import pytest


def test_a_deprecation_warning_from_our_code_fails():
    from dispatch.infra import redis_client

    warnings.warn_explicit(
        "deprecated", DeprecationWarning, redis_client.__file__, 1, module=redis_client.__name__
    )


def test_redis_py_deprecations_that_our_code_triggers_fail():
    from redis.asyncio import ConnectionPool, Redis

    Redis(connection_pool=ConnectionPool(), auto_close_connection_pool=True)


def test_the_setex_that_saq_is_excused_for_fails_when_we_call_it():
    from redis import Redis

    Redis().pipeline().setex("k", 1, "v")  # queued, never sent


def test_a_resource_warning_fails():
    warnings.warn("unclosed thing", ResourceWarning)


def test_the_setex_in_saq_is_ignored():
    warnings.warn_explicit(
        "Call to deprecated setex. (Use 'set' instead.) -- Deprecated since version 2.6.12.",
        DeprecationWarning,
        "saq/queue/redis.py",
        400,
        module="saq.queue.redis",
    )


def test_nothing_to_warn_about():
    assert True
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each check's outcome and, for a failure, its reason: "PASSED", "FAILED - <error>"."""
    where = tmp_path_factory.mktemp("warnings")
    (where / "test_checks.py").write_text(textwrap.dedent(CHECKS))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(where), "-p", "no:cacheprovider", "-vv", "-rA", "test_checks.py"],
        cwd=where,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    found = {}
    for line in run.stdout.splitlines():
        outcome, _, rest = line.partition(" ")
        if outcome in ("PASSED", "FAILED", "ERROR") and "::" in rest:
            name, _, reason = rest.split("::", 1)[1].partition(" - ")
            found[name.strip()] = f"{outcome} - {reason}" if reason else outcome
    assert len(found) == 6, run.stdout + run.stderr
    return found


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("test_a_deprecation_warning_from_our_code_fails", "DeprecationWarning: deprecated"),
        (
            "test_redis_py_deprecations_that_our_code_triggers_fail",
            'DeprecationWarning: "auto_close_connection_pool" is deprecated',
        ),
        (
            "test_the_setex_that_saq_is_excused_for_fails_when_we_call_it",
            "DeprecationWarning: Call to deprecated setex.",
        ),
        ("test_a_resource_warning_fails", "ResourceWarning: unclosed thing"),
    ],
)
def test_our_warnings_fail_the_test(outcomes: dict[str, str], name: str, error: str) -> None:
    assert outcomes[name].startswith(f"FAILED - {error}"), outcomes[name]


@pytest.mark.parametrize("name", ["test_the_setex_in_saq_is_ignored", "test_nothing_to_warn_about"])
def test_what_is_ignored_or_quiet_passes(outcomes: dict[str, str], name: str) -> None:
    assert outcomes[name] == "PASSED"


def test_this_session_runs_with_warnings_as_errors() -> None:
    with pytest.raises(DeprecationWarning, match="ours"):
        warnings.warn("ours", DeprecationWarning, stacklevel=1)
