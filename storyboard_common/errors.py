"""The errors services raise, and how each maps to one specific gRPC status code.

Servicers raise these instead of calling ``context.abort`` so that one interceptor (``interceptors.py``) turns every
failure into a status with a message a user can act on. Anything else that escapes is a bug: it becomes INTERNAL with
the request id and no details, and its stack trace goes to the log only.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """A failure the caller should hear about, with the status code that describes it."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """The request itself is wrong; the message starts with the offending field's name."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Cancelled(ServiceError):
    code = grpc.StatusCode.CANCELLED


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status an exception maps to, or None when it is a bug (and so INTERNAL without details)."""
    if isinstance(error, ServiceError):
        return error.code, error.message
    if isinstance(error, grpc.aio.AioRpcError) or (isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call)):
        # A downstream service already chose a specific status; pass it on unchanged.
        code = error.code()
        if code not in (None, grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
            return code, error.details() or code.name
        return None
    if isinstance(error, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(error) or "deadline exceeded"
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        # torch.OutOfMemoryError, matched by name so this module needs no torch.
        return grpc.StatusCode.RESOURCE_EXHAUSTED, "out of memory; try fewer or smaller frames"
    return None


# How each status reads over HTTP (the REST bridge), following google.rpc's published mapping.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
