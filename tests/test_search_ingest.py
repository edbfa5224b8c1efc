"""bench/search_ingest.py's pure parts: the pings both engines are fed and the sanity check of
answers under ingest (the bench itself is `make bench-search-ingest`)."""

from __future__ import annotations

import numpy as np

from bench.search import NOW, make_world
from bench.search_ingest import RADII, ROUND_S, STEP_M, Sanity, Walk, radius_of
from geo.distance import haversine_m


def test_walks_split_the_workers_and_step_10_m_a_round() -> None:
    world = make_world(5_000, "clustered")
    walks = [Walk(world, j, 3, first_round=10) for j in range(3)]
    firsts = [w.next_round() for w in walks]
    ids = sorted(i for f in firsts for i in f[0])
    assert ids == world.ids.tolist()  # disjoint slices covering every online worker
    _, lat0, lng0, ts0 = firsts[0]
    _, lat1, lng1, ts1 = walks[0].next_round()
    assert ts0 == NOW + 11 * ROUND_S and ts1 == ts0 + ROUND_S
    steps = [haversine_m(a, b, c, d) for a, b, c, d in zip(lat0, lng0, lat1, lng1, strict=True)]
    assert np.allclose(steps, STEP_M, rtol=1e-3)
    again = Walk(world, 0, 3, first_round=10).next_round()
    assert again[1] == lat0 and again[2] == lng0  # the same pings for both engines


def test_sanity_flags_what_cannot_be_a_right_answer() -> None:
    world = make_world(5_000, "uniform")
    sanity = Sanity(world)
    good = world.ids[world.eligible][:3].tolist()
    assert sanity.why(good, [1.0, 2.0, 3.0], 500, None) == ""
    assert "sorted" in sanity.why(good, [3.0, 2.0, 1.0], 500, None)
    assert "beyond" in sanity.why(good, [1.0, 2.0, 600.0], 500, None)
    assert "duplicate" in sanity.why([good[0], good[0]], [1.0, 1.0], 500, None)
    bad = int(world.ids[~world.eligible][0])
    assert "ineligible" in sanity.why([bad], [1.0], 500, None)
    assert "not online" in sanity.why([int(world.ids.max()) + 1], [1.0], 500, None)
    assert {radius_of(i) for i in range(16)} == set(RADII)
