"""bench/soak.py's verdicts on what it sampled (the soak itself is `make soak`): descriptors and
connections judged by each minute's median, a leak caught, requests in flight not."""

from __future__ import annotations

from typing import Any

from bench.soak import SAMPLES_PER_MINUTE, checks, minute_of


class _Load:
    pings = {204: 1000}
    problems: list[str] = []


def _procs(server_fds: int, pg_conns: int = 20, server_kb: int = 100_000) -> dict[str, tuple]:
    return {
        "server": (server_kb, server_fds, None),
        "postgres": (200_000, 60, pg_conns),
        "redis": (30_000, 40, 25),
    }


def _run(per_minute: list[list[int]], warmup_min: int = 2, **kw: Any) -> dict[str, Any]:
    """A run whose minute m sampled the server's descriptors `per_minute[m]`."""
    minutes = [
        {"minute": i + 1, "procs": minute_of([_procs(f, **kw) for f in taken])}
        for i, taken in enumerate(per_minute)
    ]
    warm = minutes[warmup_min - 1]["procs"]
    return {"load": _Load(), "warm": warm, "minutes": minutes, "warmup_s": warmup_min * 60}


def _verdict(out: dict[str, Any], what: str) -> bool:
    (ok,) = [ok for line, ok in checks(out) if line.startswith(what)]
    return ok


def test_a_minute_counts_the_median_of_its_samples() -> None:
    taken = [_procs(f) for f in (92, 93, 140, 92, 94, 91)]
    assert minute_of(taken)["server"][1] == 92
    assert minute_of(taken)["postgres"][2] == 20
    assert SAMPLES_PER_MINUTE >= 3  # a median of fewer would still be one sample's word


def test_requests_in_flight_at_the_last_sample_are_not_a_leak() -> None:
    steady = [[92, 93, 92, 95, 91, 92]] * 9
    spiky_end = [*steady, [92, 93, 104, 92, 118, 92]]  # two samples caught a burst
    assert _verdict(_run(spiky_end), "server file descriptors")


def test_descriptors_that_keep_growing_are_a_leak() -> None:
    growing = [[90 + 4 * m + k for k in range(SAMPLES_PER_MINUTE)] for m in range(10)]
    assert not _verdict(_run(growing), "server file descriptors")


def test_the_warm_up_does_not_set_the_bar() -> None:
    # Startup holds many descriptors for a while; the settled first half is the bar.
    minutes = [[300] * 6, *[[92] * 6] * 5, *[[130] * 6] * 4]
    assert not _verdict(_run(minutes, warmup_min=2), "server file descriptors")


def test_memory_growth_over_ten_percent_fails() -> None:
    out = _run([[92] * 6] * 10)
    out["minutes"][-1]["procs"] = minute_of([_procs(92, server_kb=115_000)])
    assert not _verdict(out, "server memory")
    assert _verdict(out, "postgres memory")
