"""Strava's fault bodies: ``{"message": ..., "errors": [{"resource", "field", "code"}]}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error answered with Strava's fault body."""

    def __init__(
        self, status: int, message: str, errors: list[tuple[str, str, str]] | None = None
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "errors": [
                {"resource": resource, "field": field, "code": code}
                for resource, field, code in self.errors
            ],
        }


def bad_request(resource: str, field: str, code: str = "invalid") -> ApiError:
    return ApiError(400, "Bad Request", [(resource, field, code)])


def invalid_token() -> ApiError:
    """Unknown, revoked or expired access token (Strava answers all three alike)."""
    return ApiError(401, "Authorization Error", [("Athlete", "access_token", "invalid")])


def missing_scope(permission: str) -> ApiError:
    return ApiError(401, "Authorization Error", [("AccessToken", permission, "missing")])


def not_found(resource: str = "Activity", field: str = "id") -> ApiError:
    return ApiError(404, "Record Not Found", [(resource, field, "invalid")])


def rate_limited() -> ApiError:
    return ApiError(429, "Rate Limit Exceeded", [("Application", "rate limit", "exceeded")])
