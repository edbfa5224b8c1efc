"""Chaos, small (`make chaos` is the long run, `bench/chaos.py`): grab jobs raced for over two
app processes while Redis is SIGKILLed, started again empty and flushed, and PostgreSQL is
restarted, on private servers of the run's own. No answer is a 500, every 503 carries
`Retry-After`, no job is assigned twice, every job and every outbox row ends in a final state,
and a job posted after the faults is taken: the service recovered with no restart."""

from __future__ import annotations

import pytest

from bench.chaos import Config, run
from tests.processes import ONE_AT_A_TIME

pytestmark = [pytest.mark.slow, ONE_AT_A_TIME]


async def test_redis_killed_emptied_flushed_and_postgres_restarted() -> None:
    figures = await run(Config(jobs=60, workers=8, processes=2, posters=2, settle_s=40))
    print(f"\nchaos: {figures}")
    assert figures.problems == []
    assert figures.jobs_posted == 60 and sum(figures.jobs.values()) == 61  # and the one after
    assert figures.statuses[503] > 0, "the faults were not seen"  # the test can fail
    assert len(figures.faults) == 5 and len(figures.recovery_s) == 3
