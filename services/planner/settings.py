"""The planner's settings: flags ``--some-option`` or variables ``STORYBOARD_PLANNER_SOME_OPTION``.

The OpenAI key itself is never a setting that could be logged or echoed: it comes from ``OPENAI_API_KEY`` or from
the file ``--openai-api-key-file`` names, read when a plan is made.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.planner.prompts import DEFAULT_NEGATIVE_PROMPT, DEFAULT_QUALITY_TAGS
from storyboard_common.settings import ServiceSettings

API_KEY_ENV = "OPENAI_API_KEY"


class PlannerSettings(ServiceSettings):
    """Settings of the planner service."""

    model_config = SettingsConfigDict(env_prefix="STORYBOARD_PLANNER_")

    port: int = Field(50052, ge=0, le=65535, description="port to listen on; 0 picks a free one")
    backend: Literal["offline", "openai"] | None = Field(
        None,
        description="planner backend: 'openai' (any OpenAI-compatible server) or 'offline' (deterministic, no "
        "network); default: openai when an API key is configured, else offline",
    )
    characters_file: Path | None = Field(
        None, description="TOML character registry (see examples/characters.toml); none: no registered characters"
    )
    openai_model: str = Field("gpt-4o", min_length=1, description="chat model the openai backend asks")
    openai_base_url: str | None = Field(
        None,
        description="base URL of an OpenAI-compatible API (Azure OpenAI, vLLM, Ollama, LM Studio); default: "
        "$OPENAI_BASE_URL or api.openai.com",
    )
    openai_api_key_file: Path | None = Field(
        None, description=f"file holding the API key; default: the {API_KEY_ENV} environment variable"
    )
    request_timeout_seconds: float = Field(
        60.0, gt=0, le=600, description="longest wait for one model response (the caller's deadline also applies)"
    )
    max_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="retries of a model call after a connection error, a timeout, 408, 409, 429 or 5xx (the openai "
        "client's own, with its backoff and the server's Retry-After; fewer when the caller's deadline is near)",
    )
    feedback_rounds: int = Field(
        2, ge=0, le=2, description="times a plan that breaks the storyboard rules is sent back to the model"
    )
    cache_size: int = Field(256, ge=0, le=100_000, description="plans kept for identical requests at temperature 0")
    quality_tags: str = Field(
        ", ".join(DEFAULT_QUALITY_TAGS), description="comma-separated tags ending every prompt (dropped first)"
    )
    negative_prompt: str = Field(DEFAULT_NEGATIVE_PROMPT, description="negative prompt shared by every frame")
    clip_vocab_file: Path | None = Field(
        None, description="CLIP BPE vocabulary for token counting; default: the one bundled with open_clip"
    )

    @field_validator("characters_file", "openai_api_key_file", "clip_vocab_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} does not exist or is not a file")
        return value

    @model_validator(mode="after")
    def _choose_backend(self) -> PlannerSettings:
        if self.backend is None:
            self.backend = "openai" if self.api_key_configured() else "offline"
        return self

    def api_key_configured(self) -> bool:
        """Whether an API key is available (the variable is set, or a key file is given)."""
        return bool(os.environ.get(API_KEY_ENV, "").strip()) or self.openai_api_key_file is not None

    def read_api_key(self) -> str | None:
        """The API key: the key file's content when one is given, else ``$OPENAI_API_KEY``; None when neither."""
        if self.openai_api_key_file is not None:
            try:
                key = self.openai_api_key_file.read_text(encoding="utf-8").strip()
            except OSError:
                key = ""
            return key or None
        return os.environ.get(API_KEY_ENV, "").strip() or None
