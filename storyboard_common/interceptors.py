"""gRPC interceptors: request ids on every call, and the one place where exceptions become status codes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from storyboard_common.errors import status_for
from storyboard_common.logs import request_id

REQUEST_ID_KEY = "x-request-id"
log = logging.getLogger(__name__)


def incoming_request_id(context: grpc.ServicerContext | grpc.aio.ServicerContext) -> str:
    """The call's ``x-request-id`` if it sent a usable one, else a new id."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable():
            return value
    return uuid.uuid4().hex


def _abort(context: grpc.ServicerContext, method: str, error: BaseException) -> None:
    if context.code() not in (None, grpc.StatusCode.OK):
        raise error  # the servicer already aborted with a status of its own
    status = status_for(error)
    if status is None:
        log.exception("bug while serving %s", method)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id.get()})")
    code, message = status
    log.info("%s -> %s: %s", method, code.name, message)
    context.abort(code, message)


Behavior = Callable[[Any, grpc.ServicerContext], Any]


def wrapped_handler(
    handler: grpc.RpcMethodHandler, unary: Callable[[Behavior], Behavior], stream: Callable[[Behavior], Behavior]
) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped by ``unary`` (unary-unary methods) or ``stream`` (unary-stream), for a
    server interceptor; client-streaming methods (none in storyboard.v1) are left as they are."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            stream(handler.unary_stream), handler.request_deserializer, handler.response_serializer
        )
    return handler


class ServiceInterceptor(grpc.ServerInterceptor):
    """Tags each call with a request id (from ``x-request-id`` metadata, else a new one, echoed back in trailing
    metadata) and maps exceptions to specific status codes; INTERNAL is left for bugs, without their details."""

    def intercept_service(self, continuation: Callable[[Any], grpc.RpcMethodHandler | None], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        return wrapped_handler(
            handler, lambda behavior: self._unary(behavior, method), lambda behavior: self._stream(behavior, method)
        )

    @staticmethod
    def _unary(behavior: Behavior, method: str) -> Behavior:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            token = request_id.set(incoming_request_id(context))
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id.get()),))
            try:
                return behavior(request, context)
            except Exception as error:
                _abort(context, method, error)
            finally:
                request_id.reset(token)

        return wrapped

    @staticmethod
    def _stream(behavior: Behavior, method: str) -> Behavior:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            rid = incoming_request_id(context)
            context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
            # A generator runs in slices between yields, so the request id is set around each slice.
            iterator = iter(behavior(request, context))
            while True:
                token = request_id.set(rid)
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                except Exception as error:
                    _abort(context, method, error)
                finally:
                    request_id.reset(token)
                yield item

        return wrapped


def request_metadata() -> tuple[tuple[str, str], ...]:
    """Metadata that carries the current request id to a downstream call, for the asyncio channels (the threaded ones
    add it with ``RequestIdClientInterceptor``)."""
    current = request_id.get()
    return ((REQUEST_ID_KEY, current if current != "-" else uuid.uuid4().hex),)


class RequestIdClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Carries the current request id to downstream services, so one id follows a storyboard through every log."""

    @staticmethod
    def _with_request_id(details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [(k, v) for k, v in (details.metadata or ()) if k != REQUEST_ID_KEY]
        metadata.append((REQUEST_ID_KEY, request_id.get() if request_id.get() != "-" else uuid.uuid4().hex))
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_request_id(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_request_id(client_call_details), request)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):  # type: ignore[no-untyped-def]
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression
