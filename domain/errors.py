"""Domain failures. The server maps each class to one gRPC code in one table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class StrideError(Exception):
    """Base of every failure a caller can act on; `reason` is a stable UPPER_SNAKE_CASE code."""

    reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def error_metadata(self) -> dict[str, str]:
        """Extra ErrorInfo metadata a client acts on (none by default)."""
        return {}


class InvalidArgument(StrideError):
    reason = "INVALID_ARGUMENT"

    SHOWN_IN_MESSAGE = 5

    def __init__(
        self, violations: list[FieldViolation], *, reason: str | None = None, omitted: int = 0
    ) -> None:
        """`omitted`: further violations found but not kept (see Violations.MAX_KEPT)."""
        shown = [v.field[:100] for v in violations[: self.SHOWN_IN_MESSAGE]]
        more = len(violations) - len(shown) + omitted
        suffix = f" and {more} more" if more else ""
        super().__init__(f"invalid request: {', '.join(shown)}{suffix}", reason=reason)
        self.violations = violations
        self.omitted = omitted

    @classmethod
    def one(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgument:
        return cls([FieldViolation(field, description)], reason=reason)


class NotFound(StrideError):
    reason = "RESOURCE_NOT_FOUND"

    def __init__(self, resource_type: str, resource_name: str) -> None:
        super().__init__(f"{resource_name} not found")
        self.resource_type = resource_type
        self.resource_name = resource_name


class AlreadyExists(StrideError):
    reason = "RESOURCE_ALREADY_EXISTS"

    def __init__(self, resource_type: str, resource_name: str, message: str) -> None:
        super().__init__(message)
        self.resource_type = resource_type
        self.resource_name = resource_name


class FailedPrecondition(StrideError):
    reason = "FAILED_PRECONDITION"


class Aborted(StrideError):
    """A concurrent change got there first (a stale etag, AIP-154): read again, then retry."""

    reason = "ABORTED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        resource_type: str = "",
        resource_name: str = "",
    ) -> None:
        super().__init__(message, reason=reason)
        self.resource_type = resource_type
        self.resource_name = resource_name


class DeadlineExceeded(StrideError):
    """The call waited on its client for too long (an idle stream)."""

    reason = "STREAM_IDLE"


class Unauthenticated(StrideError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(StrideError):
    reason = "PERMISSION_DENIED"


class RetryableError(StrideError):
    """The caller should try again after `retry_after_seconds`."""

    def __init__(self, message: str, *, retry_after_seconds: float, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_seconds = retry_after_seconds


class ResourceExhausted(RetryableError):
    pass


class Unavailable(RetryableError):
    pass


class Violations:
    """Collects the problems in a request so one error names them all.

    Keeps the first problem per field and at most MAX_KEPT fields, counting the rest: a
    request with thousands of bad entries costs constant work per entry, and its error
    stays small enough to travel in gRPC trailers."""

    MAX_KEPT = 100

    def __init__(self) -> None:
        self._by_field: dict[str, str] = {}
        self.omitted = 0

    def add(self, field: str, description: str) -> None:
        """Record a problem; only the first one found for a field is kept."""
        if field in self._by_field:
            return
        if len(self._by_field) >= self.MAX_KEPT:
            self.omitted += 1
            return
        self._by_field[field] = description

    @property
    def items(self) -> list[FieldViolation]:
        return [FieldViolation(f, d) for f, d in self._by_field.items()]

    def __bool__(self) -> bool:
        return bool(self._by_field)

    def raise_if_any(self) -> None:
        if self._by_field:
            raise InvalidArgument(self.items, omitted=self.omitted)
