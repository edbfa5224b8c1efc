"""The machine a benchmark runs on: log lines, CPU used by processes and by the whole machine
(from /proc, in clock ticks), waiting for other jobs to quieten, and the report's description of
the machine and the code measured."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (None if the process is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), 0 if it is gone."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK if fields else 0.0


def _children_of() -> dict[int, list[int]]:
    """Every live process's children, by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := proc_stat(int(entry))):
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    return _children_of().get(pid, [])


def tree(root_pid: int) -> list[int]:
    """A process and all its live descendants (PostgreSQL's postmaster and backends), the root
    first."""
    children = _children_of()
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds of a process and all its live descendants (PostgreSQL's backends)."""
    return sum(proc_cpu_s(pid) for pid in tree(root_pid))


def machine_busy_s() -> float:
    """CPU seconds all processes on the machine have used (user, system, irq…; not idle)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


def background_load(seconds: float = 2.0) -> float:
    """CPU in use on the machine over a short sample, in % of one core."""
    before = machine_busy_s()
    time.sleep(seconds)
    return 100 * (machine_busy_s() - before) / seconds


def wait_for_quiet(max_wait_s: float, limit_pct: float = 20.0) -> float:
    """Wait (up to max_wait_s) until other jobs use under limit_pct of a core; the last load."""
    deadline = time.monotonic() + max_wait_s
    load = background_load()
    while load > limit_pct and time.monotonic() < deadline:
        log(f"other jobs use {load:.0f}% of a core; waiting for the machine to quieten")
        time.sleep(10)
        load = background_load()
    if load > limit_pct:
        log(f"WARNING: other jobs use {load:.0f}% of a core; the numbers will be low and noisy")
    return load


def pid_from_file(path: Path) -> int | None:
    """The pid on a pid file's first line (PostgreSQL's postmaster.pid, Redis's pidfile)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(path.read_text().split()[0])
    return None


def sh(*cmd: str) -> str:
    """The first line a command prints ("" if none, "?" if it cannot run)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        return next(iter((out.stdout or out.stderr).strip().splitlines()), "")
    return "?"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def postgres_version() -> str:
    from dispatch.devtools.local_servers import find_pg_bindir

    with contextlib.suppress(Exception):
        return sh(str(find_pg_bindir() / "postgres"), "--version")
    return "?"


def code_line() -> str:
    """The commit measured, and whether the service's code had uncommitted changes."""
    commit = sh("git", "-C", str(REPO), "rev-parse", "--short", "HEAD")
    dirty = sh("git", "-C", str(REPO), "status", "--porcelain", "--", "dispatch", "geo", "app.py")
    changed = " with uncommitted changes in dispatch/, geo/ or app.py"
    return f"- Code: commit {commit}" + (changed if dirty not in ("", "?") else "")


def machine_lines(shared_by: str, serving: str, tools: str = "") -> list[str]:
    """The report's machine section: `shared_by` names what shares the cores, `serving` how the
    server runs, `tools` any load tool's version (appended to PostgreSQL's line)."""
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores ({shared_by})",
        f"- Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- {platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"Litestar {version('litestar')}, uvicorn {version('uvicorn')} ({serving})",
        f"- {sh('redis-server', '--version')}",
        f"- {postgres_version()}" + (f"; {tools}" if tools else ""),
        code_line(),
    ]
