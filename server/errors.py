"""The one table from failures to gRPC status codes with google.rpc details (AIP-193)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RetryableError,
    StrideError,
    Unauthenticated,
    Unavailable,
)
from storage.database import DatabaseUnavailable

DOMAIN = "stride.dev"
DATABASE_RETRY_SECONDS = 1.0

CODES: dict[type[StrideError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}


@dataclass(frozen=True)
class RpcError:
    code: grpc.StatusCode
    status: status_pb2.Status
    retry_after_seconds: float | None = None

    @property
    def message(self) -> str:
        return self.status.message

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        metadata: list[tuple[str, str | bytes]] = [
            ("grpc-status-details-bin", self.status.SerializeToString())
        ]
        if self.retry_after_seconds is not None:
            metadata.append(("retry-after", str(max(1, math.ceil(self.retry_after_seconds)))))
        return tuple(metadata)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    *details: object,
    retry_after: float | None = None,
) -> RpcError:
    """A status with ErrorInfo first, then `details`, then RetryInfo when `retry_after` is set."""
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.append(_pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)))
    status.details.extend(_pack(d) for d in details)
    if retry_after is not None:
        status.details.append(_pack(_retry_info(retry_after)))
    return RpcError(code, status, retry_after)


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def from_exception(exc: BaseException, method: str) -> RpcError | None:
    """The status for an exception the API knows; None for a bug (reported as INTERNAL)."""
    if isinstance(exc, StrideError):
        code = CODES[next(cls for cls in type(exc).__mro__ if cls in CODES)]
        details: list[object] = []
        if isinstance(exc, InvalidArgument):
            details.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in exc.violations
                    ]
                )
            )
        elif isinstance(exc, NotFound | AlreadyExists):
            details.append(
                error_details_pb2.ResourceInfo(
                    resource_type=exc.resource_type,
                    resource_name=exc.resource_name,
                    description=exc.message,
                )
            )
        retry_after = exc.retry_after_seconds if isinstance(exc, RetryableError) else None
        return _status(code, exc.message, exc.reason, *details, retry_after=retry_after)
    if isinstance(exc, NotImplementedError):
        return _status(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{method} is not implemented yet",
            "NOT_IMPLEMENTED",
        )
    if isinstance(exc, OperationalError | PoolTimeout | DatabaseUnavailable):
        return _status(
            grpc.StatusCode.UNAVAILABLE,
            "the database is unavailable; retry later",
            "DATABASE_UNAVAILABLE",
            retry_after=DATABASE_RETRY_SECONDS,
        )
    return None


def internal(request_id: str) -> RpcError:
    suffix = f" (request id {request_id})" if request_id else ""
    return _status(grpc.StatusCode.INTERNAL, f"internal error{suffix}", "INTERNAL")
