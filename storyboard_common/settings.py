"""Typed settings read from environment variables and command-line flags, validated before a service starts.

Every service declares a ``ServiceSettings`` subclass with its own ``env_prefix``; a flag ``--some-option`` and the
variable ``<PREFIX>SOME_OPTION`` set the same field, the flag winning. ``load_settings`` turns a validation error
into one readable line and exit status 2, so a missing file or a bad address fails fast instead of at first use.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypeVar

import grpc
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict

LOOPBACK = "127.0.0.1"


class ServiceSettings(BaseSettings):
    """Settings every gRPC service has."""

    model_config = SettingsConfigDict(
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_exit_on_error=True,
        extra="ignore",
    )

    host: str = Field(LOOPBACK, description="address to listen on; loopback unless you mean to expose the service")
    port: int = Field(0, ge=0, le=65535, description="port to listen on; 0 picks a free one")
    grace_seconds: float = Field(
        10.0, ge=0, le=600, description="on SIGTERM, how long in-flight calls may finish before they are cancelled"
    )
    max_workers: int = Field(32, ge=1, le=1024, description="threads serving calls")
    max_connection_age_seconds: float = Field(
        300.0, gt=0, description="clients reconnect after this long, so that new replicas behind a DNS name are found"
    )
    max_connection_age_grace_seconds: float | None = Field(
        None,
        gt=0,
        description="how long calls still open on an aged connection may go on before they are cut; unset: until "
        "they end (each is bounded by its own deadline), so that ageing never cuts a long render or a Watch stream",
    )
    serve_tls_cert: Path | None = Field(
        None, description="serve TLS with this certificate chain (PEM); with --serve-tls-key; none: plaintext"
    )
    serve_tls_key: Path | None = Field(None, description="the private key (PEM) of --serve-tls-cert")
    serve_tls_client_ca: Path | None = Field(
        None, description="require client certificates signed by this CA (PEM): mutual TLS"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    log_format: Literal["text", "json"] = Field("text", description="log line format")

    @field_validator("serve_tls_cert", "serve_tls_key", "serve_tls_client_ca")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} does not exist or is not a file")
        return value

    @model_validator(mode="after")
    def _tls_is_complete(self) -> ServiceSettings:
        if (self.serve_tls_cert is None) != (self.serve_tls_key is None):
            raise ValueError("--serve-tls-cert and --serve-tls-key go together")
        if self.serve_tls_client_ca is not None and self.serve_tls_cert is None:
            raise ValueError("--serve-tls-client-ca needs --serve-tls-cert and --serve-tls-key")
        return self

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """TLS (or mutual TLS) credentials to serve with, or None for plaintext."""
        if self.serve_tls_cert is None or self.serve_tls_key is None:
            return None
        client_ca = self.serve_tls_client_ca.read_bytes() if self.serve_tls_client_ca else None
        return grpc.ssl_server_credentials(
            [(self.serve_tls_key.read_bytes(), self.serve_tls_cert.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def _env_name(settings_cls: type[BaseSettings], field: str) -> str:
    return f"{settings_cls.model_config.get('env_prefix', '')}{field}".upper()


def load_settings(
    settings_cls: type[SettingsT], argv: Sequence[str] | None = None, prog: str | None = None
) -> SettingsT:
    """Settings from the environment and ``argv`` (default: ``sys.argv[1:]``); exits 2 with one line per problem."""
    args = list(sys.argv[1:] if argv is None else argv)
    if prog:
        settings_cls.model_config["cli_prog_name"] = prog
    try:
        return CliApp.run(settings_cls, cli_args=args)
    except ValidationError as error:
        name = prog or settings_cls.__name__
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"])
            if not field:  # a check across several settings names them in its message
                print(f"{name}: invalid settings: {problem['msg']}", file=sys.stderr)
                continue
            flag = "--" + field.replace("_", "-")
            env = _env_name(settings_cls, field)
            print(f"{name}: invalid {flag} (or ${env}): {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
