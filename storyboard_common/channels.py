"""Client channels from one service to another: round_robin over every address, retries of UNAVAILABLE, request
ids, and TLS or mutual TLS when configured."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import grpc

from storyboard_common.interceptors import RequestIdClientInterceptor
from storyboard_common.server import GRPC_FOREVER_MS, MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)


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


def _service_config(retry_services: tuple[str, ...], attempts: int = 4) -> str:
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if retry_services and attempts > 1:
        # Safe because every storyboard.v1 call is deterministic given its request (frames are functions of model,
        # prompt and seed): a call that found no replica able to take it is sent again, to another one. gRPC sends a
        # call again only before any answer came, so a render is never started twice this way.
        config["methodConfig"] = [
            {
                "name": [{"service": service} for service in retry_services],
                "retryPolicy": {
                    "maxAttempts": attempts,
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


def _raw_channel(addresses: str, security: ChannelSecurity | None, options: list[tuple[str, object]]) -> grpc.Channel:
    target = target_for(addresses)
    if security is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, security.credentials(), options=[*options, *security.options()])


def open_channel(
    addresses: str, *, retry_services: tuple[str, ...] = (), security: ChannelSecurity | None = None
) -> grpc.Channel:
    """A channel to ``addresses`` that balances round-robin over every resolved address, plaintext or TLS."""
    options = _channel_options(retry_services, attempts=4)
    return grpc.intercept_channel(_raw_channel(addresses, security, options), RequestIdClientInterceptor())


def _channel_options(retry_services: tuple[str, ...], attempts: int) -> list[tuple[str, object]]:
    return [
        ("grpc.service_config", _service_config(retry_services, attempts)),
        ("grpc.enable_retries", 1),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # An idle channel drops its connections, and the calls that wake it all go to the first replica to answer
        # again (see connect_every_replica): a service's channels stay connected instead.
        ("grpc.client_idle_timeout_ms", GRPC_FOREVER_MS),
    ]


def _raw_aio_channel(
    addresses: str, security: ChannelSecurity | None, options: list[tuple[str, object]]
) -> grpc.aio.Channel:
    target = target_for(addresses)
    if security is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, security.credentials(), options=[*options, *security.options()])


def open_aio_channel(
    addresses: str,
    *,
    retry_services: tuple[str, ...] = (),
    attempts: int = 4,
    security: ChannelSecurity | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel to ``addresses`` that balances round-robin over every resolved address, plaintext or TLS;
    calls to ``retry_services`` that find no replica are made up to ``attempts`` times. Open it in the loop that
    uses it. Calls carry the request id when made with ``request_metadata()``."""
    return _raw_aio_channel(addresses, security, _channel_options(retry_services, attempts))


def open_aio_probe_channel(addresses: str, security: ChannelSecurity | None = None) -> grpc.aio.Channel:
    """A plain asyncio channel (default policy) for health probes, with the same security."""
    return _raw_aio_channel(addresses, security, [])


def open_probe_channel(addresses: str, security: ChannelSecurity | None = None) -> grpc.Channel:
    """A plain channel (no interceptors, default policy) for health probes, with the same security."""
    return _raw_channel(addresses, security, [])


def replica_addresses(addresses: str) -> list[str]:
    """The address of every replica ``addresses`` names now: the items of a list, or what a DNS name resolves to
    (an empty list when it resolves to nothing yet)."""
    target = target_for(addresses)
    if target.startswith(("ipv4:", "ipv6:")):
        return target.split(":", 1)[1].split(",")
    if not target.startswith("dns:"):
        return [target]
    name = target.removeprefix("dns:")
    name = name.split("/", 3)[-1] if name.startswith("//") else name  # dns:[//authority/]host:port
    host, _, port = name.rpartition(":")
    try:
        found = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return []
    return sorted(
        {f"[{info[4][0]}]:{port}" if info[0] == socket.AF_INET6 else f"{info[4][0]}:{port}" for info in found}
    )


async def connect_every_replica(
    channel: grpc.aio.Channel, addresses: str, security: ChannelSecurity | None = None, timeout: float = 5.0
) -> int:
    """Connect ``channel`` and wait until every replica behind ``addresses`` accepts a connection (or ``timeout``
    passes); returns how many did.

    A channel connects on its first call, and round_robin sends the calls made while it connects to the first replica
    that answers: a storyboard's first frames would all land there. Connected before the first call, the channel
    spreads them over every replica from the start.
    """
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout)
    except TimeoutError:
        return 0
    replicas = replica_addresses(addresses)
    answered = await asyncio.gather(*(_accepts(address, security, timeout) for address in replicas))
    for address, accepted in zip(replicas, answered, strict=True):
        if not accepted:
            log.info("replica %s does not accept connections yet; it gets calls once it does", address)
    return sum(answered)


async def _accepts(address: str, security: ChannelSecurity | None, timeout: float) -> bool:
    async with open_aio_probe_channel(address, security) as probe:
        try:
            await asyncio.wait_for(probe.channel_ready(), timeout)
        except TimeoutError:
            return False
        return True
