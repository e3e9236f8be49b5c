"""Gateway settings: where the services are, where outputs and jobs go, who may call, and the policy it owns."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from gateway.auth import ApiKeys
from storyboard_common.settings import ServiceSettings

JOB_STORE = Path(".jobs") / "jobs.sqlite3"  # under the outputs folder, out of the way of storyboard folders


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine ("0.0.0.0", "::" and names other than
    localhost count as reachable from elsewhere)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_list(value: str) -> list[str]:
    """The items of a comma-separated setting, without blanks."""
    return [item.strip() for item in value.split(",") if item.strip()]


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
    job_store: Path | None = Field(
        None,
        description=f"SQLite file holding jobs, plans, frame states and events, so that a restarted gateway resumes "
        f"unfinished storyboards; default: <outputs>/{JOB_STORE}. One gateway per file.",
    )
    max_retries: int = Field(2, ge=0, le=10, description="re-renders of a frame whose consistency is too low")
    render_unavailable_retries: int = Field(
        3,
        ge=0,
        le=20,
        description="times a render whose replica was gone before it began is sent at once to another replica; "
        "when none takes it, it waits for one (until --frame-timeout-seconds), and a render whose replica went away "
        "while at work on it is sent again without counting",
    )
    max_running: int = Field(8, ge=1, le=1024, description="storyboards worked on at once; others wait queued")
    frames_in_flight: int = Field(8, ge=1, le=256, description="render calls in flight per storyboard")
    plan_timeout_seconds: float = Field(120.0, gt=0, description="deadline of one planner call")
    frame_timeout_seconds: float = Field(600.0, gt=0, description="deadline of one frame's render call")
    validate_timeout_seconds: float = Field(60.0, gt=0, description="deadline of one validator call")
    progress_interval_seconds: float = Field(
        0.1,
        ge=0,
        le=60,
        description="least time between two progress events of one frame (its first and last steps always go out); "
        "0 sends every step. Replicas are asked to send no more. Each event is stored and streamed, so per-step events "
        "cost CPU that fast steps feel",
    )

    auth: Literal["auto", "required", "optional"] = Field(
        "auto",
        description="API keys: 'required' on every call; 'optional' (loopback only) checks a key when one is sent; "
        "'auto' is required when the gateway listens beyond loopback, else optional",
    )
    api_keys: str = Field(
        "",
        description="comma-separated API key entries NAME:SHA256HEX[:MAX_ACTIVE] (hashes, never the keys; make "
        "one with `python -m gateway.auth new NAME`)",
    )
    api_keys_file: Path | None = Field(
        None, description="file with one API key entry NAME:SHA256HEX[:MAX_ACTIVE] per line; # starts a comment"
    )
    max_active_per_key: int = Field(
        4, ge=1, le=10_000, description="storyboards of one API key (or the anonymous caller) worked on at once"
    )
    max_queued_per_key: int = Field(
        100, ge=0, le=100_000,
        description="storyboards of one API key that may wait for their turn beyond those at work; more are refused",
    )  # fmt: skip
    cors_origins: str = Field(
        "", description="comma-separated origins allowed to call the REST bridge from a browser; empty: none"
    )
    tls_ca: Path | None = Field(
        None, description="PEM root certificate(s) to verify the planner, renderers and validator; enables TLS"
    )
    tls_cert: Path | None = Field(None, description="PEM client certificate for mutual TLS to the services")
    tls_key: Path | None = Field(None, description="PEM private key of --tls-cert")
    tls_server_name: str = Field(
        "", description="name the services' certificates are checked against, when it differs from the address"
    )

    @field_validator("api_keys_file", "tls_ca", "tls_cert", "tls_key")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _explicit_origins(cls, value: str) -> str:
        for origin in split_list(value):
            if origin == "*" or not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com (no wildcards)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GatewaySettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together (mutual TLS needs both)")
        if self.auth == "optional" and not is_loopback(self.host):
            raise ValueError(f"--auth optional is only allowed on loopback; --host {self.host} is reachable")
        if self.auth_required and not (split_list(self.api_keys) or self.api_keys_file):
            reason = "--auth required" if self.auth == "required" else f"--host {self.host} is beyond loopback"
            raise ValueError(f"{reason}, so API keys are required: set --api-keys or --api-keys-file")
        self.api_key_set()  # a malformed entry stops the start, named by its number (never its content)
        return self

    def api_key_set(self) -> ApiKeys:
        """The configured API keys, as the gateway checks them."""
        return ApiKeys.from_config(self.api_keys, self.api_keys_file, self.auth_required, self.max_active_per_key)

    @property
    def auth_required(self) -> bool:
        """Whether every call must carry a valid API key."""
        return self.auth == "required" or (self.auth == "auto" and not is_loopback(self.host))

    @property
    def job_store_path(self) -> Path:
        return self.job_store if self.job_store is not None else self.outputs / JOB_STORE
