"""Client channels from one service to another: round_robin over every address, retries of UNAVAILABLE, request
ids, and TLS or mutual TLS when configured."""

from __future__ import annotations

import json
import logging
import socket
import time
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


def _raw_channel(addresses: str, security: ChannelSecurity | None, options: list[tuple[str, object]]) -> grpc.Channel:
    target = target_for(addresses)
    if security is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, security.credentials(), options=[*options, *security.options()])


def open_channel(
    addresses: str, *, retry_services: tuple[str, ...] = (), security: ChannelSecurity | None = None
) -> grpc.Channel:
    """A channel to ``addresses`` that balances round-robin over every resolved address, plaintext or TLS."""
    options: list[tuple[str, object]] = [
        ("grpc.service_config", _service_config(retry_services)),
        ("grpc.enable_retries", 1),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # An idle channel drops its connections, and the calls that wake it all go to the first replica to answer
        # again (see connect_every_replica): a service's channels stay connected instead.
        ("grpc.client_idle_timeout_ms", GRPC_FOREVER_MS),
    ]
    return grpc.intercept_channel(_raw_channel(addresses, security, options), RequestIdClientInterceptor())


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


def connect_every_replica(
    channel: grpc.Channel, addresses: str, security: ChannelSecurity | None = None, timeout: float = 5.0
) -> int:
    """Connect ``channel`` and wait until every replica behind ``addresses`` accepts a connection (or ``timeout``
    passes); returns how many did.

    A channel connects on its first call, and round_robin sends the calls made while it connects to the first replica
    that answers: a storyboard's first frames would all land there. Connected before the first call, the channel
    spreads them over every replica from the start.
    """
    deadline = time.monotonic() + timeout
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        return 0
    probes = [(address, open_probe_channel(address, security)) for address in replica_addresses(addresses)]
    connected = 0
    try:
        waits = [(address, grpc.channel_ready_future(probe)) for address, probe in probes]
        for address, ready in waits:
            try:
                ready.result(timeout=max(0.0, deadline - time.monotonic()))
                connected += 1
            except grpc.FutureTimeoutError:
                log.info("replica %s does not accept connections yet; it gets calls once it does", address)
    finally:
        for _, probe in probes:
            probe.close()
    return connected
