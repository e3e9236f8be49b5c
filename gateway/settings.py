"""Gateway settings: where the services are, where outputs go, and the policy the gateway owns."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from storyboard_common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """Flags ``--name`` or variables ``STORYBOARD_GATEWAY_NAME``."""

    model_config = SettingsConfigDict(env_prefix="STORYBOARD_GATEWAY_")

    port: int = Field(50051, ge=0, le=65535, description="gRPC port of the public Storyboards API; 0 picks one")
    http_port: int = Field(8000, ge=0, le=65535, description="REST bridge port; 0 picks one")
    rest: bool = Field(True, description="serve the REST bridge beside gRPC")
    planner: str = Field(..., min_length=1, description="planner address, host:port")
    renderers: str = Field(
        ...,
        min_length=1,
        description="renderer replicas: host:port, a comma-separated list, or dns:///name:port (every address used)",
    )
    validator: str = Field("", description="validator address; empty means frames are not validated")
    outputs: Path = Field(Path("outputs"), description="folder that receives one sub-folder per storyboard")
    max_retries: int = Field(2, ge=0, le=10, description="re-renders of a frame whose consistency is too low")
    render_unavailable_retries: int = Field(
        3, ge=0, le=20, description="times a render that lost its replica (UNAVAILABLE) is sent again"
    )
    max_running: int = Field(8, ge=1, le=1024, description="storyboards worked on at once; others wait queued")
    frames_in_flight: int = Field(8, ge=1, le=256, description="render calls in flight per storyboard")
    plan_timeout_seconds: float = Field(120.0, gt=0, description="deadline of one planner call")
    frame_timeout_seconds: float = Field(600.0, gt=0, description="deadline of one frame's render call")
    validate_timeout_seconds: float = Field(60.0, gt=0, description="deadline of one validator call")
