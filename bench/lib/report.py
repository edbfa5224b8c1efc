"""A benchmark's end: its Markdown report printed and kept under bench/results/."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import UTC, datetime

from bench.lib.machine import REPO, log

RESULTS_DIR = REPO / "bench" / "results"


def run_and_report(name: str, run: Callable[[datetime], str], write: bool = True) -> int:
    """Run `run(started)` (SIGTERM stops it as Ctrl-C does, so servers are torn down), print the
    report it returns and, with `write`, keep it as bench/results/<name>-<timestamp>.md."""

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    started = datetime.now(UTC)
    text = run(started)
    print(text)
    if write:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"{name}-{started:%Y%m%d-%H%M%S}.md"
        path.write_text(text)
        log(f"report written to {path.relative_to(REPO)}")
    return 0
