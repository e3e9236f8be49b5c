"""The gRPC pieces of a service that runs on an asyncio loop (the gateway): the same request ids, status mapping and
request decoding as the threaded services' interceptors, as ``grpc.aio`` interceptors, and the server they go on.

grpc.aio runs each call in a task of its own, so a request id set at a call's start holds for the whole call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from storyboard_common.decoding import Undecodable, lenient_parser, refuse_undecodable
from storyboard_common.errors import status_for
from storyboard_common.interceptors import REQUEST_ID_KEY, incoming_request_id
from storyboard_common.logs import request_id
from storyboard_common.server import MAX_MESSAGE_BYTES, age_options
from storyboard_common.settings import ServiceSettings

log = logging.getLogger(__name__)

UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamBehavior = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


def wrapped_handler(
    handler: grpc.RpcMethodHandler,
    unary: Callable[[UnaryBehavior], UnaryBehavior],
    stream: Callable[[StreamBehavior], StreamBehavior],
    deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped by ``unary`` (unary-unary methods) or ``stream`` (unary-stream), and its
    request parsed by ``deserializer`` if given; client-streaming methods (none in storyboard.v1) are left as they
    are."""
    parse = deserializer or handler.request_deserializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), parse, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), parse, handler.response_serializer)
    return handler


async def _abort(context: grpc.aio.ServicerContext, method: str, error: Exception) -> None:
    status = status_for(error)
    if status is None:
        log.error("bug while serving %s", method, exc_info=error)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id.get()})")
    code, message = status
    log.info("%s -> %s: %s", method, code.name, message)
    await context.abort(code, message)


def _tag(context: grpc.aio.ServicerContext) -> None:
    request_id.set(incoming_request_id(context))
    context.set_trailing_metadata(((REQUEST_ID_KEY, request_id.get()),))


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Tags each call with a request id (from ``x-request-id`` metadata, else a new one, echoed back in trailing
    metadata) and maps exceptions to specific status codes; INTERNAL is left for bugs, without their details."""

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method

        def unary(behavior: UnaryBehavior) -> UnaryBehavior:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
                _tag(context)
                try:
                    return await behavior(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await _abort(context, method, error)

            return wrapped

        def stream(behavior: StreamBehavior) -> StreamBehavior:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                _tag(context)
                try:
                    async for item in behavior(request, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await _abort(context, method, error)

            return wrapped

        return wrapped_handler(handler, unary, stream)


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    """Turns an unparsable request into INVALID_ARGUMENT (see ``storyboard_common.decoding``). Place it innermost, so
    that the status mapping and the metrics see the refusal like any other."""

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler

        def unary(behavior: UnaryBehavior) -> UnaryBehavior:
            async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, Undecodable):
                    refuse_undecodable(request)
                return await behavior(request, context)

            return checked

        def stream(behavior: StreamBehavior) -> StreamBehavior:
            async def checked(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if isinstance(request, Undecodable):
                    refuse_undecodable(request)
                async for item in behavior(request, context):
                    yield item

            return checked

        return wrapped_handler(handler, unary, stream, lenient_parser(handler.request_deserializer))


def build_server(
    settings: ServiceSettings,
    services: Sequence[tuple[str, Callable[[grpc.aio.Server], None]]],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, health_aio.HealthServicer, int]:
    """An asyncio gRPC server hosting ``services`` (full name, how to add it) plus health (NOT_SERVING until the
    caller says otherwise) and reflection, bound to ``settings.host:settings.port``; returns it, its health servicer
    and the port bound. Call from the loop that will run it."""
    server = grpc.aio.server(
        interceptors=[ServiceInterceptor(), *interceptors, RequestDecodingInterceptor()],
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
            *age_options(settings),
        ],
    )
    for _, add in services:
        add(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = [name for name, _ in services]
    reflection.enable_server_reflection([*names, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
    address = f"{settings.host}:{settings.port}"
    credentials = settings.server_credentials()
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"cannot listen on {address}")
    return server, health, port


async def set_health(health: health_aio.HealthServicer, names: Sequence[str], serving: bool) -> None:
    """Report every service in ``names`` (and the server as a whole, "") SERVING or NOT_SERVING."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", *names):
        await health.set(name, status)
