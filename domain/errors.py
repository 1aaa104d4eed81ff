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


class InvalidArgument(StrideError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], *, reason: str | None = None) -> None:
        fields = ", ".join(v.field for v in violations)
        super().__init__(f"invalid request: {fields}", reason=reason)
        self.violations = violations


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
    """Collects every problem in a request so one error names them all."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        """Record a problem; only the first one found for a field is kept."""
        if all(item.field != field for item in self.items):
            self.items.append(FieldViolation(field, description))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
