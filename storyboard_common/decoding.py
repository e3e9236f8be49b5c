"""Requests that cannot be parsed (invalid UTF-8 in a string field, corrupt or truncated bytes, an integer that
overflows 64 bits) answered INVALID_ARGUMENT instead of grpcio's own INTERNAL "Exception deserializing request!".

grpcio parses a request before any interceptor's code runs and answers a failed parse with INTERNAL, the code this
API keeps for its own bugs. This interceptor gives each method a parser that never raises: bytes it cannot parse
become an ``Undecodable`` marker, and the method then raises InvalidArgument, which the shared interceptor maps like
any other bad input. ``build_server`` installs it innermost on every service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from storyboard_common.errors import InvalidArgument


@dataclass(frozen=True)
class Undecodable:
    """Stands for a request whose bytes did not parse as the method's message."""

    message_type: str


def lenient_parser(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    message_type = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    type_name = getattr(message_type, "full_name", "the request message")

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # protobuf's DecodeError, or whatever a parser raises on bytes it cannot read
            return Undecodable(type_name)

    return parse


def refuse_undecodable(request: Undecodable) -> None:
    raise InvalidArgument(
        "request",
        f"is not a valid {request.message_type} (strings must be UTF-8 and numbers must fit their fields)",
    )


class RequestDecodingInterceptor(grpc.ServerInterceptor):
    """Turns an unparsable request into INVALID_ARGUMENT. Place it innermost (last), so that the interceptor which
    maps exceptions to status codes, and the metrics, see the refusal like any other."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = lenient_parser(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary), parse, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream), parse, handler.response_serializer
            )
        return handler  # client-streaming methods: none in storyboard.v1

    @staticmethod
    def _unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                refuse_undecodable(request)
            return behavior(request, context)

        return checked

    @staticmethod
    def _stream(behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def checked(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if isinstance(request, Undecodable):
                refuse_undecodable(request)
            yield from behavior(request, context)

        return checked
