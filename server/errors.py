"""The one table from failures to gRPC status codes with google.rpc details (AIP-193)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError

from domain.errors import (
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
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
# Bounds on what one error carries (see _bad_request).
MAX_MESSAGE_CHARS = 400
MAX_FIELD_CHARS = 200
MAX_DESCRIPTION_CHARS = 300
MAX_VIOLATION_BYTES = 3000
CONFLICT_RETRY_SECONDS = 0.1

CODES: dict[type[StrideError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Aborted: grpc.StatusCode.ABORTED,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
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
    metadata: dict[str, str] | None = None,
) -> RpcError:
    """A status with ErrorInfo first, then `details`, then RetryInfo when `retry_after` is set."""
    status = status_pb2.Status(code=code.value[0], message=_clip(message, MAX_MESSAGE_CHARS))
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)
    status.details.append(_pack(info))
    status.details.extend(_pack(d) for d in details)
    if retry_after is not None:
        status.details.append(_pack(_retry_info(retry_after)))
    return RpcError(code, status, retry_after)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bad_request(exc: InvalidArgument) -> tuple[error_details_pb2.BadRequest, int]:
    """The violations that fit the size budget, and how many more there were.

    Status details travel base64-encoded in a trailer; clients refuse trailers of more than
    8-16 KB (grpc's default limits), which would turn INVALID_ARGUMENT into the client's own
    RESOURCE_EXHAUSTED. Long paths and descriptions are clipped, the list is cut to fit.
    """
    bad_request = error_details_pb2.BadRequest()
    size = 0
    for kept, violation in enumerate(exc.violations):
        entry = error_details_pb2.BadRequest.FieldViolation(
            field=_clip(violation.field, MAX_FIELD_CHARS),
            description=_clip(violation.description, MAX_DESCRIPTION_CHARS),
        )
        size += entry.ByteSize() + 3
        if size > MAX_VIOLATION_BYTES:
            return bad_request, len(exc.violations) - kept + exc.omitted
        bad_request.field_violations.append(entry)
    return bad_request, exc.omitted


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def from_exception(exc: BaseException, method: str) -> RpcError | None:
    """The status for an exception the API knows; None for a bug (reported as INTERNAL)."""
    if isinstance(exc, StrideError):
        code = CODES[next(cls for cls in type(exc).__mro__ if cls in CODES)]
        details: list[object] = []
        metadata: dict[str, str] = {}
        if isinstance(exc, InvalidArgument):
            bad_request, omitted = _bad_request(exc)
            details.append(bad_request)
            if omitted:
                metadata["omitted_violations"] = str(omitted)
        elif isinstance(exc, NotFound | AlreadyExists) or (
            isinstance(exc, Aborted) and exc.resource_name
        ):
            details.append(
                error_details_pb2.ResourceInfo(
                    resource_type=exc.resource_type,
                    resource_name=exc.resource_name,
                    description=exc.message,
                )
            )
        metadata.update(exc.error_metadata())
        retry_after = exc.retry_after_seconds if isinstance(exc, RetryableError) else None
        return _status(
            code, exc.message, exc.reason, *details, retry_after=retry_after, metadata=metadata
        )
    if isinstance(exc, NotImplementedError):
        return _status(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{method} is not implemented yet",
            "NOT_IMPLEMENTED",
        )
    if isinstance(exc, StaleDataError) or (isinstance(exc, IntegrityError) and _is_conflict(exc)):
        # A row the call depended on changed or vanished under it (a race with a delete
        # that locking did not rule out): retrying the whole call is safe.
        return _status(
            grpc.StatusCode.ABORTED,
            "the request conflicted with a concurrent change; retry",
            "CONCURRENT_MODIFICATION",
            retry_after=CONFLICT_RETRY_SECONDS,
        )
    if isinstance(exc, OperationalError | PoolTimeout | DatabaseUnavailable):
        return _status(
            grpc.StatusCode.UNAVAILABLE,
            "the database is unavailable; retry later",
            "DATABASE_UNAVAILABLE",
            retry_after=DATABASE_RETRY_SECONDS,
        )
    return None


# Foreign-key and unique violations are races between concurrent calls; NOT NULL or CHECK
# violations are bugs and stay INTERNAL.
_PG_CONFLICTS = {"23503", "23505"}  # foreign_key_violation, unique_violation
_SQLITE_CONFLICTS = {787, 1555, 2067}  # CONSTRAINT_FOREIGNKEY, _PRIMARYKEY, _UNIQUE


def _is_conflict(exc: IntegrityError) -> bool:
    original = exc.orig
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _PG_CONFLICTS
    return getattr(original, "sqlite_errorcode", None) in _SQLITE_CONFLICTS


def internal(request_id: str) -> RpcError:
    suffix = f" (request id {request_id})" if request_id else ""
    return _status(grpc.StatusCode.INTERNAL, f"internal error{suffix}", "INTERNAL")
