"""Client channels from one service to another, with load balancing, retries of UNAVAILABLE and request ids."""

from __future__ import annotations

import json

import grpc

from storyboard_common.interceptors import RequestIdClientInterceptor
from storyboard_common.server import MAX_MESSAGE_BYTES


def _service_config(retry_services: tuple[str, ...]) -> str:
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if retry_services:
        # Safe because every storyboard.v1 call is deterministic given its request (frames are pure functions of
        # model, prompt and seed): a call that found its replica gone is sent again, to another one.
        config["methodConfig"] = [
            {
                "name": [{"service": service} for service in retry_services],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    return json.dumps(config)


def target_for(addresses: str) -> str:
    """A gRPC target for one address, a comma-separated list of host:port, or a ``dns:///`` name.

    A list becomes an ``ipv4:``/``ipv6:`` target so that ``round_robin`` spreads calls over every address.
    """
    parts = [part.strip() for part in addresses.split(",") if part.strip()]
    if len(parts) <= 1 or "://" in addresses or addresses.startswith(("ipv4:", "ipv6:", "unix:")):
        return addresses.strip()
    scheme = "ipv6" if any(part.startswith("[") for part in parts) else "ipv4"
    return f"{scheme}:{','.join(parts)}"


def open_channel(addresses: str, *, retry_services: tuple[str, ...] = ()) -> grpc.Channel:
    """An insecure channel to ``addresses`` that balances round-robin over every resolved address."""
    channel = grpc.insecure_channel(
        target_for(addresses),
        options=[
            ("grpc.service_config", _service_config(retry_services)),
            ("grpc.enable_retries", 1),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    return grpc.intercept_channel(channel, RequestIdClientInterceptor())
