"""The orchestration benchmark's arithmetic, its results file and its seeds, on made-up measurements: make bench runs
it on real ones."""

from __future__ import annotations

import argparse
import json

import pytest

from bench.orchestration import (
    Measurements,
    Options,
    Storyboard,
    counts,
    fresh_seeds,
    ideal,
    results,
    section,
    wall_over_ideal,
)
from gateway.decisions import frame_seed
from storyboard_common.validation import MAX_FRAMES


def _measured(overhead: dict[int, float], cpu: dict[int, list[float]] | None = None) -> Measurements:
    """Two rounds of made-up stage times (each stage's median is the mean of its two); at each R a storyboard
    ``overhead[R]`` seconds over the ideal, with the gateway's CPU seconds ``cpu[R]``."""
    m = Measurements(plan=[0.010, 0.010], frame=[2.0, 2.2], validate=[0.030, 0.050])
    for replicas, extra in overhead.items():
        best = ideal(m, Options(), replicas)
        for index, gateway_cpu in enumerate((cpu or {}).get(replicas, [0.4, 0.4])):
            m.add(replicas, Storyboard(wall=best + extra * index, first_frame=2.2, gateway_cpu=gateway_cpu))
    return m


@pytest.mark.parametrize(("replicas", "frames_in_turn"), [(1, 8), (2, 4), (3, 3), (4, 2), (8, 1)])
def test_the_ideal_is_the_plan_then_each_replicas_frames_in_turn_then_one_validation(replicas, frames_in_turn):
    m = _measured({})
    assert ideal(m, Options(), replicas) == pytest.approx(0.010 + frames_in_turn * 2.1 + 0.040)


def test_wall_over_ideal_is_the_median_wall_over_the_ideal_at_each_r():
    m = _measured({1: 0.0, 2: 0.0, 4: 0.0})
    m.wall = {1: [16.85, 17.05, 16.95], 2: [8.5], 4: [4.25]}  # ideals 16.85, 8.45 and 4.25 s
    ratios = wall_over_ideal(m, Options())
    assert ratios == {1: pytest.approx(16.95 / 16.85), 2: pytest.approx(8.5 / 8.45), 4: pytest.approx(1.0)}


def test_the_results_file_has_the_figures_the_issue_asks_for():
    # The CPU per frame is each storyboard's CPU over its 8 frames; the figure is the median over every storyboard.
    m = _measured({1: 0.0, 2: 0.0, 4: 0.0}, cpu={1: [0.32, 0.40], 2: [0.40, 0.48], 4: [0.48, 0.56]})
    m.wall[2] = [ideal(m, Options(), 2) * 1.0304]
    written = json.loads(json.dumps(results(m, Options())))
    assert written == {
        "frame_seconds": 2.0,
        "size": 1024,
        "wall_over_ideal": {"1": 1.0, "2": 1.03, "4": 1.0},
        "gateway_cpu_ms_per_frame": 55.0,
    }


def test_the_section_has_a_row_per_r_and_names_the_worst():
    m = _measured({1: 0.020, 2: 0.100, 4: 0.040})
    text = section(m, Options(rounds=2)).markdown()
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row[0] for row in rows] == ["| 1", "| 2", "| 4"]
    assert "(the most at R = 2, 50 ms over 8450)" in text  # the median of R = 2's two overheads
    assert "50.0 ms of CPU per frame" in text and "2.5% of a 2 s GPU frame" in text


def test_replica_counts_are_a_comma_list_of_positive_numbers():
    assert counts("1,2,4") == (1, 2, 4)
    for bad in ("", "0,2", "two"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            counts(bad)


def test_no_two_storyboards_of_a_run_share_a_frame_seed():
    """A frame's picture follows from its seed: storyboards sharing seeds would send the validator frames it has
    embedded before, found in its cache instead of scored."""
    seeds = fresh_seeds()
    frames = [frame_seed(next(seeds), frame, 1) for _ in range(50) for frame in range(1, MAX_FRAMES + 1)]
    assert len(set(frames)) == len(frames)
