"""Builds the validator's gRPC server from its settings; the model loads in the server's warm-up."""

from __future__ import annotations

from services.validator.scorer import FrameScorer
from services.validator.scoring import ReferencePolicy
from services.validator.servicer import ValidatorServicer
from services.validator.settings import ValidatorSettings
from storyboard_common.server import Registration, ServiceServer, build_server
from storyboard_common.v1 import validator_pb2_grpc

SERVICE_NAME = "storyboard.v1.Validator"


def create_server(settings: ValidatorSettings) -> tuple[ServiceServer, int]:
    """A validator server bound to ``settings.host:settings.port`` (not started), and the port it got."""
    scorer = FrameScorer(
        settings.weights(),
        device=settings.device,
        cache_size=settings.embedding_cache_size,
        max_image_pixels=settings.max_image_pixels,
        preprocess_workers=settings.preprocess_threads(),
    )
    servicer = ValidatorServicer(
        scorer,
        limits=settings.limits(),
        default_policy=ReferencePolicy(settings.reference_policy),
        default_thresholds=settings.thresholds(),
    )
    registration = Registration(
        SERVICE_NAME, lambda server: validator_pb2_grpc.add_ValidatorServicer_to_server(servicer, server)
    )
    return build_server("validator", settings, [registration], warm_up=scorer.warm_up, closers=[scorer.close])
