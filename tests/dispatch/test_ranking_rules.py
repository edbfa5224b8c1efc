"""Fair ranking as plain functions: the score's parts, the hourly cap, rotation among similar
workers, and 1,000 simulated jobs at a busy corner where one top-rated worker stands nearest."""

from __future__ import annotations

import random
from collections import Counter, deque
from datetime import UTC, datetime, timedelta

from dispatch.trust.ranking import Record, pick, rank, score, shown_rating

T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def test_a_newcomer_with_one_five_star_review_is_not_above_a_proven_worker() -> None:
    assert shown_rating(0, 0) is None
    assert shown_rating(5, 1) == 4.58
    assert shown_rating(980, 200) == 4.89
    new = score(Record(1, 500, rating_sum=5, rating_count=1), 1000, 60)
    proven = score(Record(2, 500, rating_sum=980, rating_count=200), 1000, 60)
    assert proven.rating < new.rating


def test_each_part_of_the_score() -> None:
    s = score(Record(1, 250, rating_sum=45, rating_count=10, answered=8, accepted=8), 1000, 60)
    assert s.distance == 1.0  # a quarter of the radius x 4
    assert s.rating == round(1.5 * (5 - shown_rating(45, 10)), 3)
    assert round(s.reliability, 3) == round(2 * (1 - 9 / 10), 3)  # took 8 of 8, smoothed
    assert s.exposure == 0
    flaky = score(Record(1, 250, jobs_done=3, no_shows=1, answered=8, accepted=8), 1000, 60)
    assert round(flaky.reliability - s.reliability, 3) == round(6 * 1 / 4, 3)
    busy = score(Record(1, 250, recent=30), 1000, 60)
    assert busy.exposure == 1.0  # half the cap
    assert set(busy.parts()) == {"distance", "rating", "reliability", "exposure", "total"}


def test_the_cap_and_rotation() -> None:
    a = Record(1, 100, recent=60)  # capped
    b = Record(2, 120, recent=3, last_offer_at=T0)
    c = Record(3, 130, recent=1, last_offer_at=T0 - timedelta(minutes=5))
    d = Record(4, 140, recent=1, last_offer_at=T0 - timedelta(minutes=30))
    picked, ranked = pick([a, b, c, d], [], 99, 2, 1000, 60)
    # The same band: the least offered, then the least recently offered, go first.
    assert [x.record.worker_id for x in picked] == [4, 3]
    assert ranked[-1].record.worker_id == 1 and ranked[-1].capped
    # Nobody else: the capped worker still gets nothing.
    assert pick([a], [], 99, 2, 1000, 60)[0] == []
    # No cap configured: exposure is read per 60 offers and nobody is held back.
    assert [x.record.worker_id for x in pick([a], [], 99, 2, 1000, None)[0]] == [1]
    # Already offered and the resident are left out.
    assert [x.record.worker_id for x in pick([b, c, d], [4], 3, 5, 1000, 60)[0]] == [2]


def test_a_far_worker_does_not_jump_a_much_nearer_one_on_rating_alone() -> None:
    near = Record(1, 100, rating_sum=40, rating_count=10)  # shown 4.27
    far = Record(2, 950, rating_sum=500, rating_count=100)  # shown 4.98
    assert [x.record.worker_id for x in rank([near, far], 1000, 60)] == [1, 2]
    # ... but a slightly farther, much better rated one does go first.
    close = Record(3, 200, rating_sum=500, rating_count=100)
    assert next(x.record.worker_id for x in rank([near, close], 1000, 60)) == 3


def simulate(jobs: int, rule: str, seed: int = 7) -> tuple[Counter, int]:
    """`jobs` jobs over ten hours at one corner; 30 workers around it, worker 0 top-rated and
    nearest; waves of 3; each offered worker takes the job with their own probability, the
    first taker wins. Returns offers per worker and the most offers any worker had in an hour."""
    rnd = random.Random(seed)
    workers = list(range(30))
    dist = {w: 60 + 30 * w + rnd.uniform(0, 20) for w in workers}
    stars = {w: (500, 100) if w == 0 else (rnd.randint(40, 48) * 10, 100) for w in workers}
    takes = {w: 0.9 if w == 0 else rnd.uniform(0.4, 0.8) for w in workers}
    history: dict[int, deque] = {w: deque() for w in workers}
    answers: dict[int, list[bool]] = {w: [] for w in workers}
    offers: Counter = Counter()
    peak = 0
    for i in range(jobs):
        now = T0 + timedelta(seconds=i * 36_000 / jobs)
        for w in workers:
            while history[w] and history[w][0] <= now - timedelta(hours=1):
                history[w].popleft()
        if rule == "nearest":
            chosen = sorted(workers, key=lambda w: dist[w])[:3]
        else:
            records = [
                Record(
                    w, dist[w], rating_sum=stars[w][0], rating_count=stars[w][1],
                    answered=len(answers[w][-50:]), accepted=sum(answers[w][-50:]),
                    recent=len(history[w]), last_offer_at=history[w][-1] if history[w] else None,
                )
                for w in workers
            ]  # fmt: skip
            chosen = [x.record.worker_id for x in pick(records, [], -1, 3, 2000, 60)[0]]
        taken = False
        for w in chosen:
            offers[w] += 1
            history[w].append(now)
            peak = max(peak, len(history[w]))
            took = not taken and rnd.random() < takes[w]
            taken = taken or took
            answers[w].append(took)
    return offers, peak


def test_one_thousand_jobs_at_a_busy_corner_are_shared() -> None:
    nearest, nearest_peak = simulate(1000, "nearest")
    fair, fair_peak = simulate(1000, "fair")
    # Nearest-first: the same three workers get every offer, 100 an hour each.
    assert nearest[0] == 1000 and len(nearest) == 3 and nearest_peak == 100
    # Fair ranking: nobody above the cap in any hour (the top worker reaches it: offered the
    # most, 60 an hour, a fifth of the offers), and more than a dozen workers share the rest.
    assert fair_peak <= 60
    assert fair.most_common(1)[0][0] == 0
    assert fair[0] <= 60 * 10 and fair[0] / sum(fair.values()) <= 0.2
    assert sum(1 for w, n in fair.items() if n >= 100) >= 12
    assert sum(fair.values()) == 3000  # every job still got its full wave
