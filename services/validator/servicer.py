"""The Validator gRPC servicer: checks requests, hands them to the scorer, and shapes the replies."""

from __future__ import annotations

import grpc

from services.validator.requests import POLICY_TO_PROTO, parse_score_request
from services.validator.scorer import FrameScorer, ScoreOutcome
from services.validator.scoring import FrameResult, ReferencePolicy, Thresholds, Verdict
from services.validator.settings import ScoreLimits
from storyboard.v1 import common_pb2
from storyboard_common.errors import Unavailable
from storyboard_common.v1 import validator_pb2, validator_pb2_grpc

VERDICT_TO_PROTO = {
    Verdict.PASS: common_pb2.VERDICT_PASS,
    Verdict.LOW_CONSISTENCY: common_pb2.VERDICT_LOW_CONSISTENCY,
    Verdict.LOW_ALIGNMENT: common_pb2.VERDICT_LOW_ALIGNMENT,
    Verdict.REPETITIVE: common_pb2.VERDICT_REPETITIVE,
}


class ValidatorServicer(validator_pb2_grpc.ValidatorServicer):
    """Serves storyboard.v1.Validator: Score and Info."""

    def __init__(
        self,
        scorer: FrameScorer,
        limits: ScoreLimits,
        default_policy: ReferencePolicy,
        default_thresholds: Thresholds,
    ) -> None:
        self._scorer = scorer
        self._limits = limits
        self._default_policy = default_policy
        self._default_thresholds = default_thresholds

    def Score(self, request: validator_pb2.ScoreRequest, context: grpc.ServicerContext) -> validator_pb2.ScoreResponse:
        if not self._scorer.ready:
            # Said before the request is checked: a caller without a model to talk to needs to hear that first.
            raise Unavailable(self._scorer.not_ready_reason)
        job = parse_score_request(request, self._limits, self._default_policy, self._default_thresholds)
        return _score_response(self._scorer.score(job))

    def Info(
        self, request: validator_pb2.ValidatorInfoRequest, context: grpc.ServicerContext
    ) -> validator_pb2.ValidatorInfo:
        source = self._scorer.source
        return validator_pb2.ValidatorInfo(
            model=source.model if source.configured else "",
            pretrained=source.describe() if source.configured else "",
            device=self._scorer.device,
            ready=self._scorer.ready,
            reason=self._scorer.not_ready_reason,
            thresholds=_thresholds(self._default_thresholds),
            max_frames=self._limits.max_frames,
        )


def _score_response(outcome: ScoreOutcome) -> validator_pb2.ScoreResponse:
    return validator_pb2.ScoreResponse(
        scores=[_frame_score(result) for result in outcome.results],
        thresholds=_thresholds(outcome.thresholds),
        policy=POLICY_TO_PROTO[outcome.policy],
        model=outcome.model,
    )


def _frame_score(result: FrameResult) -> common_pb2.FrameScore:
    return common_pb2.FrameScore(
        index=result.index,
        consistency=result.consistency,
        alignment=result.alignment if result.alignment is not None else 0.0,
        repetition=result.repetition,
        most_similar_index=result.most_similar_index,
        verdict=VERDICT_TO_PROTO[result.verdict],
        characters=[
            common_pb2.CharacterConsistency(trigger_token=token, consistency=score)
            for token, score in result.characters
        ],
    )


def _thresholds(thresholds: Thresholds) -> common_pb2.Thresholds:
    return common_pb2.Thresholds(
        consistency=thresholds.consistency, alignment=thresholds.alignment, repetition=thresholds.repetition,
        reference_consistency=thresholds.reference_consistency,
    )  # fmt: skip
