"""The orchestration benchmark's arithmetic, on made-up measurements: only `make bench` runs it on real ones."""

from __future__ import annotations

import pytest

from bench.orchestration import TARGET, Measurements, Options, ideal, shortest_frame


def _measured(frame: float, overhead: dict[int, float]) -> Measurements:
    """A storyboard with a 16 ms plan, a 4 ms validation, frames of ``frame`` seconds and, at each R, ``overhead``
    seconds on top of the ideal."""
    m = Measurements(plan=[0.016], frame=[frame], validate=[0.004])
    m.wall = {replicas: [ideal(m, Options(), replicas) + extra] for replicas, extra in overhead.items()}
    return m


@pytest.mark.parametrize("replicas", [1, 2, 4, 8])
def test_the_shortest_frame_is_the_one_at_which_the_same_overhead_meets_the_target(replicas):
    overhead = {replicas: 0.074}
    shortest = shortest_frame(_measured(0.5, overhead), Options(), replicas)
    at_shortest = _measured(shortest, overhead)
    wall = at_shortest.wall[replicas][0]
    assert wall / ideal(at_shortest, Options(), replicas) == pytest.approx(TARGET)
    longer = _measured(shortest * 1.1, overhead)
    assert longer.wall[replicas][0] / ideal(longer, Options(), replicas) < TARGET
