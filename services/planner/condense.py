"""Fitting a story with more beats than frames: neighbouring beats share a frame, the ending always keeps one.

A storyboard must tell the whole story, so beats are combined rather than dropped: short beats with the same
subject in the same place first, the last beat only when nothing else will do, and never more than three beats in
one frame. Only a story far longer than any storyboard loses beats, evenly from its middle, never its
first or last one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from services.planner.story import Beat
from services.planner.text import tidy, words

MAX_PARTS = 3  # beats one frame may tell
_MAX_WORDS = 30  # a combined action longer than this is shortened, part by part
_IMPOSSIBLE = 10_000


@dataclass(frozen=True)
class Fitted:
    """The beats a plan shows, and what fitting them cost the story."""

    beats: list[Beat]
    combined: int  # frames that tell more than one beat
    dropped: int  # beats no frame tells


def fit_beats(beats: list[Beat], slots: int) -> Fitted:
    """``beats`` combined (and, only for very long stories, thinned) until at most ``slots`` remain.

    The beats are cut into at most ``slots`` runs of neighbours, the cheapest cut overall (dynamic programming
    over where each run ends), each run becoming one beat.
    """
    dropped = 0
    if len(beats) > slots * MAX_PARTS:
        keep = _evenly_spaced(len(beats), slots * MAX_PARTS)
        dropped = len(beats) - len(keep)
        beats = [beats[index] for index in keep]
    if len(beats) <= slots:
        return Fitted(list(beats), 0, dropped)
    runs = _cheapest_runs(beats, slots)
    fitted = []
    for start, end in runs:
        beat = beats[start]
        for following in beats[start + 1 : end]:
            beat = combine(beat, following)
        fitted.append(beat)
    return Fitted(fitted, sum(1 for beat in fitted if beat.parts > 1), dropped)


def _cheapest_runs(beats: list[Beat], slots: int) -> list[tuple[int, int]]:
    """(start, end) of each run, in order: at most ``slots`` runs of at most MAX_PARTS beats, cheapest in all."""
    total = len(beats)
    # best[count][end]: the cheapest cost of cutting beats[:end] into ``count`` runs, and where its last run starts
    best: list[list[tuple[int, int]]] = [[(_IMPOSSIBLE, -1)] * (total + 1) for _ in range(slots + 1)]
    best[0][0] = (0, -1)
    for count in range(1, slots + 1):
        for end in range(1, total + 1):
            for start in range(max(0, end - MAX_PARTS), end):
                before = best[count - 1][start][0]
                if before >= _IMPOSSIBLE:
                    continue
                cost = before + _run_cost(beats, start, end)
                if cost < best[count][end][0]:
                    best[count][end] = (cost, start)
    count = min(range(1, slots + 1), key=lambda c: (best[c][total][0], -c))
    runs: list[tuple[int, int]] = []
    end = total
    while end > 0:
        start = best[count][end][1]
        runs.append((start, end))
        end, count = start, count - 1
    return runs[::-1]


def _run_cost(beats: list[Beat], start: int, end: int) -> int:
    """What telling ``beats[start:end]`` in one frame costs the storyboard: nothing for a single beat."""
    if end - start == 1:
        return 0
    run = beats[start:end]
    cost = sum(len(words(beat.action)) for beat in run)
    for first, second in itertools.pairwise(run):
        cost += 25 if first.setting.head != second.setting.head else 0
        cost += 10 if not first.acting_last or first.acting_last != second.subject else 0
    cost += 15 if end == len(beats) else 0  # the ending keeps a frame of its own while it can
    cost += 30 * (len(run) - 2)  # spread the combining over the story
    return cost


def combine(first: Beat, second: Beat) -> Beat:
    """One beat telling ``first`` then ``second``: "the fox finds its den and sleeps"."""
    return Beat(
        action=_joined(first, second),
        setting=second.setting,
        lighting=second.lighting,
        mood=second.mood or first.mood,
        destination=second.destination,
        moving=first.moving or second.moving,
        subject_is_main=first.subject_is_main or second.subject_is_main,
        place_named=first.place_named or second.place_named,
        others=_union(first.others, second.others),
        objects=_union(first.objects, second.objects),
        characters=_union(first.characters, second.characters),
        subject=first.subject,
        parts=first.parts + second.parts,
        last_subject=second.acting_last,
    )


def _joined(first: Beat, second: Beat) -> str:
    budget = max(8, _MAX_WORDS // (first.parts + second.parts))
    head = _shortened(first.action, budget * first.parts)
    acting = first.acting_last
    if acting and acting == second.subject and second.action.startswith(acting + " "):
        predicate = _shortened(second.action[len(acting) :].strip(), budget * second.parts)
        joiner = " and " if first.parts == 1 else ", then "
        return tidy(f"{head}{joiner}{predicate}")
    return tidy(f"{head}, then {_shortened(second.action, budget * second.parts)}")


def _shortened(text: str, limit: int) -> str:
    kept = text.split()
    return tidy(" ".join(kept[:limit])) if len(kept) > limit else text


def _union(first: list[str], second: list[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _evenly_spaced(total: int, wanted: int) -> list[int]:
    """``wanted`` indexes from ``range(total)``, evenly spread, always the first and the last."""
    if wanted <= 1:
        return [total - 1]
    return sorted({round(index * (total - 1) / (wanted - 1)) for index in range(wanted)})
