"""The gateway's decisions, as pure functions without I/O: a request's normalized spec, each attempt's seed and
adapters, whether a frame is tried again, which attempt is kept, which frames are left to make."""

from __future__ import annotations

import pytest

from gateway import decisions
from gateway.decisions import frame_adapters
from gateway.outputs import AttemptInfo
from gateway.spec import normalized_spec
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import InvalidArgument

PLAN = common_pb2.Plan(
    characters=[
        common_pb2.CharacterRef(name="Aldar Kose", trigger_token="aldar_kose_man", adapter="aldar"),
        common_pb2.CharacterRef(name="Mira", trigger_token="mira_girl", adapter="mira", adapter_weight=0.8),
        common_pb2.CharacterRef(name="The Khan", trigger_token="khan_man"),  # no adapter of its own
    ]
)


def _adapters(scene_tokens, extra=()) -> list[tuple[str, float]]:
    scene = common_pb2.Scene(trigger_tokens=scene_tokens)
    refs = [common_pb2.AdapterRef(name=name, weight=weight) for name, weight in extra]
    return [(ref.name, round(ref.weight, 3)) for ref in frame_adapters(PLAN, scene, refs)]


def test_a_frame_gets_the_adapters_of_the_characters_it_shows_then_the_requests():
    assert _adapters(["aldar_kose_man", "khan_man"], [("style", 0.5)]) == [("aldar", 1.0), ("style", 0.5)]
    assert _adapters(["mira_girl"]) == [("mira", 0.8)]  # at the character's registered weight
    assert _adapters([], [("style", 0.5)]) == [("style", 0.5)]


def test_an_adapter_the_request_and_a_character_share_is_applied_once_at_the_requests_weight():
    assert _adapters(["aldar_kose_man", "mira_girl"], [("aldar", 0.7)]) == [("aldar", 0.7), ("mira", 0.8)]


def test_a_character_adapter_the_renderers_lack_is_left_out_with_a_warning_and_the_rest_kept():
    checked = decisions.with_available_adapters(PLAN, frozenset({"mira", "style"}))
    assert [(c.name, c.adapter) for c in checked.characters] == [("Aldar Kose", ""), ("Mira", "mira"), ("The Khan", "")]
    assert list(checked.warnings) == [
        "the renderers have no adapter 'aldar', so Aldar Kose is drawn from the prompt alone (aldar_kose_man)"
    ]
    assert PLAN.characters[0].adapter == "aldar", "the plan given is not changed"
    assert decisions.with_available_adapters(PLAN, frozenset({"aldar", "mira"})) is PLAN
    assert decisions.with_available_adapters(PLAN, None) is PLAN  # the renderers could not be asked


def test_the_same_adapter_twice_in_a_request_is_one_adapter_and_two_weights_are_refused():
    spec = sb.StoryboardSpec(story="a fox crosses a river")
    spec.adapters.add(name="style", weight=0.5)
    spec.adapters.add(name="other", weight=1.0)
    spec.adapters.add(name="style", weight=0.5)
    assert [(a.name, a.weight) for a in normalized_spec(spec).adapters] == [("style", 0.5), ("other", 1.0)]
    spec.adapters.add(name="other", weight=0.25)
    with pytest.raises(InvalidArgument) as refused:
        normalized_spec(spec)
    assert refused.value.message.startswith("spec.adapters[3].weight: 'other' is listed twice, at 1 and 0.25")


def test_first_attempts_keep_the_originals_seeds_and_retries_never_collide_with_them():
    assert [decisions.frame_seed(42, frame, 1) for frame in range(1, 9)] == list(range(42, 50))
    retries = {decisions.frame_seed(42, frame, attempt) for frame in range(1, 11) for attempt in (2, 3, 4)}
    assert len(retries) == 30 and not retries & set(range(42, 52))
    assert decisions.frame_seed(42, 3, 2) == decisions.frame_seed(42, 3, 2)  # the same every time
    assert decisions.frame_seed(2**63 - 1, 2, 1) == 0  # wraps within the seed range


@pytest.mark.parametrize(
    ("frame", "verdict", "again"),
    [
        (3, common_pb2.VERDICT_LOW_CONSISTENCY, True),
        (3, common_pb2.VERDICT_PASS, False),
        (3, common_pb2.VERDICT_LOW_ALIGNMENT, False),
        (3, common_pb2.VERDICT_NOT_VALIDATED, False),
        (1, common_pb2.VERDICT_LOW_CONSISTENCY, False),  # the reference is measured against itself
    ],
)
def test_only_a_frame_too_far_from_frame_one_is_tried_again(frame, verdict, again):
    assert decisions.tries_again(frame, verdict) is again
    assert list(decisions.attempt_numbers(2)) == [1, 2, 3]


def _attempt(number: int, consistency: float | None) -> AttemptInfo:
    score = None if consistency is None else common_pb2.FrameScore(consistency=consistency)
    return AttemptInfo(frame=3, attempt=number, seed=number, prompt="", file="", score=score)


def test_the_best_scored_attempt_is_kept_and_an_unscored_one_never_replaces_a_scored_one():
    assert decisions.best_attempt([_attempt(1, 0.4), _attempt(2, 0.6), _attempt(3, 0.5)]).attempt == 2
    assert decisions.best_attempt([_attempt(1, 0.4), _attempt(2, None)]).attempt == 1
    assert decisions.best_attempt([_attempt(1, None), _attempt(2, 0.1)]).attempt == 2
    assert decisions.best_attempt([_attempt(1, 0.5), _attempt(2, 0.5)]).attempt == 1  # the earliest of equals
    assert decisions.best_attempt([]) is None
    assert decisions.next_attempt_number([_attempt(1, 0.4), _attempt(3, 0.1)]) == 4
    assert decisions.next_attempt_number([]) == 1


def test_the_frames_left_to_make_are_those_not_kept_and_those_whose_file_is_gone():
    frames = [sb.FrameResult(frame=n, rendered=n in (1, 2, 4)) for n in range(1, 6)]
    assert decisions.frames_to_make(frames, present=[1, 2, 4]) == [3, 5]
    assert decisions.frames_to_make(frames, present=[1, 4]) == [2, 3, 5]


@pytest.mark.parametrize(
    ("frames", "max_batch", "replicas", "slots", "shared", "size"),
    [
        (8, 4, 1, 8, False, 4),  # one replica: batches as large as it makes
        (8, 4, 4, 8, False, 2),  # four: two frames each, every replica at work
        (8, 4, 8, 8, False, 1),  # as many replicas as frames: one each, as before
        (8, 8, 1, 3, False, 3),  # never more than the frames in flight
        (10, 8, 4, 3, True, 8),  # sharing attention: all it batches, whatever the replicas
    ],
)
def test_a_group_is_the_renderers_batch_spread_over_its_replicas(frames, max_batch, replicas, slots, shared, size):
    assert decisions.group_size(frames, max_batch, replicas, slots, shared) == size


def test_first_attempts_are_grouped_by_what_a_renderer_batches_by_in_frame_order():
    keys = {1: "aldar", 2: "merchant", 3: "aldar", 4: "aldar", 5: "merchant", 6: "aldar"}
    assert decisions.first_attempt_groups([6, 5, 4, 3, 2, 1], keys, 3) == [[1, 3, 4], [2, 5], [6]]
    assert decisions.first_attempt_groups([1, 2, 3], {1: "a", 2: "a", 3: "a"}, 1) == [[1], [2], [3]]


def test_an_adapter_set_goes_to_one_replica_and_different_sets_spread():
    style = [common_pb2.AdapterRef(name="style", weight=0.5), common_pb2.AdapterRef(name="aldar", weight=1.0)]
    assert decisions.adapter_set_key(style) == decisions.adapter_set_key(list(reversed(style))) == "aldar@1;style@0.5"
    assert decisions.adapter_set_key([]) == ""
    replicas = [f"10.0.0.{n}:50053" for n in range(1, 5)]
    chosen = decisions.adapter_replica("aldar@1", replicas)
    assert decisions.adapter_replica("aldar@1", list(reversed(replicas))) == chosen  # whatever the order
    others = [replica for replica in replicas if replica != chosen]
    moved = decisions.adapter_replica("aldar@1", [*others, "10.0.0.9:50053"])
    assert moved in (*others, "10.0.0.9:50053")
    assert len({decisions.adapter_replica(f"character{n}@1", replicas) for n in range(40)}) == len(replicas)
