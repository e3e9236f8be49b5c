"""The gateway's pure decisions about a request: its adapters per frame, its normalized spec."""

from __future__ import annotations

import pytest

from gateway.spec import frame_adapters, normalized_spec
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import InvalidArgument

PLAN = common_pb2.Plan(
    characters=[
        common_pb2.CharacterRef(name="Aldar Kose", trigger_token="aldar_kose_man", adapter="aldar"),
        common_pb2.CharacterRef(name="Mira", trigger_token="mira_girl", adapter="mira"),
        common_pb2.CharacterRef(name="The Khan", trigger_token="khan_man"),  # no adapter of its own
    ]
)


def _adapters(scene_tokens, extra=()) -> list[tuple[str, float]]:
    scene = common_pb2.Scene(trigger_tokens=scene_tokens)
    refs = [common_pb2.AdapterRef(name=name, weight=weight) for name, weight in extra]
    return [(ref.name, round(ref.weight, 3)) for ref in frame_adapters(PLAN, scene, refs)]


def test_a_frame_gets_the_adapters_of_the_characters_it_shows_then_the_requests():
    assert _adapters(["aldar_kose_man", "khan_man"], [("style", 0.5)]) == [("aldar", 1.0), ("style", 0.5)]
    assert _adapters(["mira_girl"]) == [("mira", 1.0)]
    assert _adapters([], [("style", 0.5)]) == [("style", 0.5)]


def test_an_adapter_the_request_and_a_character_share_is_applied_once_at_the_requests_weight():
    assert _adapters(["aldar_kose_man", "mira_girl"], [("aldar", 0.7)]) == [("aldar", 0.7), ("mira", 1.0)]


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
