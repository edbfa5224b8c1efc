"""The `dispatch` command and the local default, run as real processes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest

from bench.lib.machine import children
from dispatch.devtools.local_servers import LocalServerError, LocalServers
from tests.conftest import TEST_SECRET
from tests.processes import ServiceProcess, free_port, wait_ready
from tests.redis_mode import CLUSTER

DISPATCH = [sys.executable, "-m", "dispatch.cli"]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DISPATCH, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def cli_env(server_urls, tmp_path) -> dict[str, str]:
    db, _ = server_urls
    return {
        "DATABASE_URL": db,
        "DISPATCH_SECRET_KEY": TEST_SECRET,
        "DISPATCH_DATA_DIR": str(tmp_path),
    }


def claims(token: str) -> dict:
    return jwt.decode(token, TEST_SECRET, algorithms=["HS256"], issuer="dispatch")


def test_token_admin_prints_one_token(cli_env, clean_state) -> None:
    out = run_cli(["token", "--role", "admin"], cli_env)
    assert out.returncode == 0, out.stderr
    (token,) = out.stdout.split()
    assert claims(token)["extras"]["role"] == "admin"


def test_token_workers_by_phone_one_per_line_and_no_phone_printed(cli_env, clean_state) -> None:
    phones = ["+8613900000001", "+8613900000002", "+8613900000003"]
    args = ["token", "--role", "worker"] + [a for p in phones for a in ("--phone", p)]
    out = run_cli(args, cli_env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    ids = {claims(t)["sub"] for t in lines}
    assert len(ids) == 3 and all(claims(t)["extras"]["role"] == "worker" for t in lines)
    assert not any(p in out.stdout + out.stderr for p in phones)
    # Same phones again: the same users, not new ones.
    again = run_cli(args, cli_env)
    assert {claims(t)["sub"] for t in again.stdout.splitlines()} == ids


def test_token_operator_is_scoped_and_needs_real_communities(cli_env, clean_state) -> None:
    out = run_cli(["token", "--role", "operator"], cli_env)
    assert out.returncode == 2 and "--community" in out.stderr
    out = run_cli(["token", "--role", "operator", "--community", "999"], cli_env)
    assert out.returncode == 1 and "community_not_found" in out.stderr


def test_token_refuses_bad_phone_and_wrong_role_shapes(cli_env, clean_state) -> None:
    assert run_cli(["token", "--role", "worker"], cli_env).returncode == 2
    assert run_cli(["token", "--role", "worker", "--phone", "12345"], cli_env).returncode == 2
    assert (
        run_cli(["token", "--role", "admin", "--phone", "+8613900000001"], cli_env).returncode == 2
    )


@pytest.mark.slow
def test_local_default_serves_signs_in_and_stops_its_servers() -> None:
    """No URLs: `dispatch serve` starts private PostgreSQL and Redis, and stops them on exit."""
    root = Path(tempfile.mkdtemp(prefix="dispatch-local-"))
    root.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["DISPATCH_DATA_DIR"] = str(root / "var")
    port = free_port()
    proc = subprocess.Popen(
        [*DISPATCH, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc)
        assert (root / "var" / "servers" / "pg" / "data" / "PG_VERSION").exists()
        assert (root / "var" / "servers" / "redis" / "redis.sock").exists()
        assert (root / "var" / "secret_key").stat().st_mode & 0o077 == 0
        # Sign in as a newcomer would: OTP, read the code from the outbox as admin, trade it.
        phone = "+8613712345678"
        assert httpx.post(f"{base}/v1/auth/otp", json={"phone": phone}).status_code == 202
        admin = subprocess.run(
            [*DISPATCH, "token", "--role", "admin"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        outbox = httpx.get(
            f"{base}/v1/admin/outbox",
            params={"to": phone},
            headers={"Authorization": f"Bearer {admin}"},
        ).json()
        # A +86 newcomer's code comes in Chinese by default (DISPATCH_DEFAULT_LOCALE=auto).
        code = re.search(r"\b\d{6}\b", outbox[0]["body"]).group(0)
        r = httpx.post(
            f"{base}/v1/auth/token", json={"phone": phone, "code": code, "role": "resident"}
        )
        assert r.status_code == 200 and r.json()["role"] == "resident"
        assert httpx.get(f"{base}/schema/openapi.json").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        proc.stdout.close()  # type: ignore[union-attr]
    pid_file = root / "var" / "servers" / "pg" / "data" / "postmaster.pid"
    deadline = time.monotonic() + 30
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_file.exists(), "private PostgreSQL still running after the service stopped"
    assert not (root / "var" / "servers" / "redis" / "redis.sock").exists() or not _redis_alive(
        root / "var" / "servers" / "redis" / "redis.sock"
    )


def _redis_alive(sock: Path) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_demo_shows_dispatch_happening(server_urls, clean_state) -> None:
    """`dispatch serve --demo`: post a job with the printed resident token; a worker takes it."""
    db, redis = server_urls
    env = {**os.environ, "DATABASE_URL": db, "REDIS_URL": redis, "DISPATCH_SECRET_KEY": TEST_SECRET,
           "DISPATCH_LOG_LEVEL": "WARNING",
           **({"REDIS_CLUSTER": "1"} if CLUSTER else {})}  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [*DISPATCH, "serve", "--port", str(port), "--demo"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    drain: threading.Thread | None = None
    try:
        resident = None
        deadline = time.monotonic() + 120  # 200 workers seeded through the API first
        while resident is None and time.monotonic() < deadline:
            line = proc.stderr.readline() if proc.stderr else ""
            assert line or proc.poll() is None, "demo server exited"
            if line.startswith("resident token:"):
                resident = line.split(":", 1)[1].strip()
        assert resident, "no resident token printed"
        # Keep reading what it writes, or a full pipe would stop the server mid-write.
        drain = threading.Thread(target=proc.stderr.read, daemon=True)  # type: ignore[union-attr]
        drain.start()
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc)
        headers = {"Authorization": f"Bearer {resident}", "Idempotency-Key": "demo-1"}
        spot = {"lat": 31.2286, "lng": 121.4452}
        body = {"title": "Fix a dripping tap", "category": "plumbing", "skills": [],
                "location": spot, "mode": "grab", "price_cents": 6000}  # fmt: skip
        r = httpx.post(f"{base}/v1/jobs", json=body, headers=headers, timeout=10)
        assert r.status_code == 201, r.text
        assert r.json()["offers"]["pending"] >= 1
        job_id = r.json()["id"]
        deadline = time.monotonic() + 40
        status = "open"
        while time.monotonic() < deadline and status == "open":
            time.sleep(0.5)
            status = httpx.get(f"{base}/v1/jobs/{job_id}", headers=headers).json()["status"]
        assert status in ("assigned", "completed")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        if drain is not None:
            drain.join(10)  # it ends at the pipe's end: the server has exited
        if drain is None or not drain.is_alive():
            proc.stderr.close()  # type: ignore[union-attr]


def test_serve_with_several_processes_shares_the_port_and_stops_together(server_urls) -> None:
    """`dispatch serve --processes 2`: two server processes accept on one port, each answers,
    and SIGTERM to the parent stops them all. None of the three warns about anything, starting,
    serving or stopping (`ServiceProcess` runs them with every warning shown)."""
    server = ServiceProcess(server_urls, TEST_SECRET, "--processes", "2")
    try:
        server.wait_ready()
        kids = children(server.proc.pid)
        assert len(kids) == 2, kids
        with httpx.Client(base_url=server.base, timeout=10) as http:
            for _ in range(20):
                assert http.get("/readyz").status_code == 200
        assert server.warnings() == []
        server.proc.terminate()
        assert server.proc.wait(30) == 0
        for child in kids:
            assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)
    finally:
        server.stop()
    assert server.warnings() == []


def _state(pid: int) -> str:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[0]
    return ""


@pytest.mark.parametrize("ttl", ["-100", "0", "abc", "1.5"])
def test_token_refuses_a_lifetime_below_a_second_in_one_line(cli_env, ttl: str) -> None:
    out = run_cli(["token", "--role", "admin", f"--ttl={ttl}"], cli_env)
    assert out.returncode == 2 and out.stdout == ""
    assert "Traceback" not in out.stderr and "--ttl" in out.stderr
    assert len([line for line in out.stderr.splitlines() if "error" in line]) == 1


def test_token_lifetime_is_the_one_asked_for(cli_env, clean_state) -> None:
    out = run_cli(["token", "--role", "admin", "--ttl", "60"], cli_env)
    assert out.returncode == 0, out.stderr
    c = claims(out.stdout.strip())
    assert c["exp"] - c["iat"] == 60


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the server user differs from ours only as root")
def test_a_private_data_dir_as_root_serves(tmp_path) -> None:
    """`DISPATCH_DATA_DIR=$(mktemp -d) dispatch serve` as root: the data dir is 0700 and ours,
    so the service opens it for the server user to pass through."""
    home = Path(tempfile.mkdtemp(prefix="dispatch-home-"))  # 0700, like mktemp -d
    assert home.stat().st_mode & 0o777 == 0o700
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["DISPATCH_DATA_DIR"] = str(home)
    port = free_port()
    proc = subprocess.Popen(
        [*DISPATCH, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        assert home.stat().st_mode & 0o777 == 0o701  # passable, not listable
        assert (home / "secret_key").stat().st_mode & 0o077 == 0
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server user differs from ours only as root")
def test_a_closed_parent_of_the_data_dir_is_refused_with_the_fix(tmp_path) -> None:
    closed = Path(tempfile.mkdtemp(prefix="dispatch-closed-"))
    try:
        home = closed / "var"
        home.mkdir()
        servers = LocalServers(home / "servers", durable=False, home=home)
        with pytest.raises(LocalServerError) as refused:
            servers.start()
        assert f"chmod o+x {closed}" in str(refused.value)
        assert closed.stat().st_mode & 0o777 == 0o700  # not ours to open
    finally:
        shutil.rmtree(closed, ignore_errors=True)
