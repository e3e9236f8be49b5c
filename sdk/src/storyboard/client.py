"""A synchronous client for the gateway's storyboard.v1.Storyboards API."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from storyboard.v1 import common_pb2, storyboards_pb2, storyboards_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class Client:
    """Talks to one gateway. Use as a context manager, or call ``close()``."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, timeout: float | None = None) -> None:
        self.address = address
        self._timeout = timeout
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = storyboards_pb2_grpc.StoryboardsStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: tuple[type[BaseException], BaseException, TracebackType] | tuple[None, ...]) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def is_serving(self, timeout: float = 1.0) -> bool:
        """True when a gateway answers at the address and reports SERVING."""
        try:
            response = health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service="storyboard.v1.Storyboards"), timeout=timeout
            )
        except grpc.RpcError:
            return False
        return response.status == health_pb2.HealthCheckResponse.SERVING

    def generate(
        self, spec: storyboards_pb2.StoryboardSpec, idempotency_key: str = ""
    ) -> Iterator[storyboards_pb2.StoryboardEvent]:
        """Create a storyboard and yield its events until it ends."""
        request = storyboards_pb2.GenerateRequest(spec=spec, idempotency_key=idempotency_key)
        yield from self._stub.Generate(request, timeout=self._timeout)

    def create(self, spec: storyboards_pb2.StoryboardSpec, idempotency_key: str = "") -> storyboards_pb2.Storyboard:
        return self._stub.Create(
            storyboards_pb2.CreateRequest(spec=spec, idempotency_key=idempotency_key), timeout=self._timeout
        )

    def get(self, storyboard_id: str) -> storyboards_pb2.Storyboard:
        return self._stub.Get(storyboards_pb2.GetRequest(id=storyboard_id), timeout=self._timeout)

    def list(self, page_size: int = 0, page_token: str = "") -> storyboards_pb2.ListResponse:
        return self._stub.List(
            storyboards_pb2.ListRequest(page_size=page_size, page_token=page_token), timeout=self._timeout
        )

    def watch(self, storyboard_id: str, after_sequence: int = 0) -> Iterator[storyboards_pb2.StoryboardEvent]:
        yield from self._stub.Watch(
            storyboards_pb2.WatchRequest(id=storyboard_id, after_sequence=after_sequence), timeout=self._timeout
        )

    def cancel(self, storyboard_id: str) -> storyboards_pb2.Storyboard:
        return self._stub.Cancel(storyboards_pb2.CancelRequest(id=storyboard_id), timeout=self._timeout)

    def plan(self, spec: storyboards_pb2.StoryboardSpec) -> common_pb2.Plan:
        return self._stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=spec), timeout=self._timeout).plan
