"""The Planner gRPC service: validates the request at the edge and hands it to the planner."""

from __future__ import annotations

import grpc

from services.planner.budget import CallBudget
from services.planner.planning import DEFAULT_TEMPERATURE, StoryPlanner, StoryRequest
from storyboard_common.v1 import planner_pb2, planner_pb2_grpc
from storyboard_common.validation import check_num_frames, check_range, check_seed, check_story


def story_request(request: planner_pb2.PlanRequest) -> StoryRequest:
    """The validated request; InvalidArgument names the offending field (e.g. ``options.num_frames``)."""
    options = request.options
    return StoryRequest(
        story=check_story(request.story, "story"),
        num_frames=check_num_frames(options.num_frames, "options.num_frames")
        if options.HasField("num_frames")
        else None,
        temperature=check_range(options.temperature, 0.0, 1.0, "options.temperature")
        if options.HasField("temperature")
        else DEFAULT_TEMPERATURE,
        seed=check_seed(options.seed, "options.seed") if options.HasField("seed") else None,
        characters=tuple(name.strip() for name in options.characters),
    )


class PlannerServicer(planner_pb2_grpc.PlannerServicer):
    """storyboard.v1.Planner over a ``StoryPlanner``."""

    def __init__(self, planner: StoryPlanner) -> None:
        self._planner = planner

    def Plan(self, request: planner_pb2.PlanRequest, context: grpc.ServicerContext) -> planner_pb2.PlanResponse:
        plan = self._planner.plan(story_request(request), CallBudget.from_context(context))
        return planner_pb2.PlanResponse(plan=plan)

    def Review(self, request: planner_pb2.ReviewRequest, context: grpc.ServicerContext) -> planner_pb2.PlanResponse:
        return planner_pb2.PlanResponse(plan=self._planner.review(request.plan))

    def ReferenceImage(
        self, request: planner_pb2.ReferenceImageRequest, context: grpc.ServicerContext
    ) -> planner_pb2.ReferenceImageResponse:
        [character] = self._planner.registry.resolve([request.trigger_token], "trigger_token")
        return planner_pb2.ReferenceImageResponse(image=character.reference_picture(request.number))

    def ListCharacters(
        self, request: planner_pb2.ListCharactersRequest, context: grpc.ServicerContext
    ) -> planner_pb2.ListCharactersResponse:
        return planner_pb2.ListCharactersResponse(characters=[c.to_proto() for c in self._planner.registry])
