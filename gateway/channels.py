"""Channels from the gateway to the services: the shared load-balanced channel, over TLS or mutual TLS if asked.

``storyboard_common.channels.open_channel`` makes plaintext channels only; this adds credentials to the same target,
service config (round_robin, retries of UNAVAILABLE) and request-id interceptor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from storyboard_common.channels import _service_config, open_channel, target_for
from storyboard_common.interceptors import RequestIdClientInterceptor
from storyboard_common.server import MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class ChannelSecurity:
    """TLS to the services: the roots to verify them by, and a client certificate for mutual TLS."""

    root_certificates: bytes
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str = ""  # checked against the services' certificates instead of the address

    @classmethod
    def from_files(
        cls, ca: Path | None, cert: Path | None, key: Path | None, server_name: str = ""
    ) -> ChannelSecurity | None:
        """None (plaintext) unless a CA file is given."""
        if ca is None:
            return None
        return cls(
            ca.read_bytes(),
            cert.read_bytes() if cert is not None else None,
            key.read_bytes() if key is not None else None,
            server_name,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def open_service_channel(
    addresses: str, security: ChannelSecurity | None, retry_services: tuple[str, ...] = ()
) -> grpc.Channel:
    """A channel to ``addresses`` balancing round-robin over every address, plaintext or TLS."""
    if security is None:
        return open_channel(addresses, retry_services=retry_services)
    channel = grpc.secure_channel(
        target_for(addresses),
        security.credentials(),
        options=[
            ("grpc.service_config", _service_config(retry_services)),
            ("grpc.enable_retries", 1),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            *security.options(),
        ],
    )
    return grpc.intercept_channel(channel, RequestIdClientInterceptor())


def open_probe_channel(addresses: str, security: ChannelSecurity | None) -> grpc.Channel:
    """A plain channel (no interceptors) for health probes, with the same security as the service channels."""
    if security is None:
        return grpc.insecure_channel(target_for(addresses))
    return grpc.secure_channel(target_for(addresses), security.credentials(), options=security.options())
