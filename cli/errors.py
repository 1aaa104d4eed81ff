"""What a failed call says: its status code and message, and the `google.rpc.Status`
details the server puts in the `grpc-status-details-bin` trailer (ErrorInfo reason and
metadata, every BadRequest field violation, RetryInfo, ResourceInfo)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"

HINTS = {
    grpc.StatusCode.UNAVAILABLE: (
        "is the server running at {address}? (--address or STRIDE_CLI_ADDRESS)"
    ),
    grpc.StatusCode.UNAUTHENTICATED: (
        "pass a token with --token or STRIDE_CLI_TOKEN (the admin token of an embedded "
        "server is in its data directory's admin_token file)"
    ),
}


@dataclass
class CallError:
    code: str
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[tuple[str, str]] = field(default_factory=list)
    retry_after_seconds: float | None = None
    resource: str = ""

    @classmethod
    def of(cls, error: grpc.RpcError) -> CallError:
        call = cast(grpc.Call, error)
        code = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
        details = call.details() if hasattr(call, "details") else str(error)
        found = cls(code=code.name if code else "UNKNOWN", message=details or "")
        status = _status_of(call)
        if status is None:
            return found
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                found.reason, found.domain = info.reason, info.domain
                found.metadata = dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                found.violations += [(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                found.retry_after_seconds = retry.retry_delay.ToTimedelta().total_seconds()
            elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
                resource = error_details_pb2.ResourceInfo()
                detail.Unpack(resource)
                found.resource = resource.resource_name
        return found

    @property
    def status_code(self) -> grpc.StatusCode | None:
        return grpc.StatusCode.__members__.get(self.code)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.reason:
            data["reason"] = self.reason
        if self.metadata:
            data["metadata"] = self.metadata
        if self.violations:
            data["field_violations"] = [
                {"field": name, "description": text} for name, text in self.violations
            ]
        if self.retry_after_seconds is not None:
            data["retry_after_seconds"] = self.retry_after_seconds
        if self.resource:
            data["resource"] = self.resource
        return data

    def lines(self, address: str = "") -> list[str]:
        head = f"error: {self.code}: {self.message}"
        if self.reason:
            head += f" (reason {self.reason})"
        out = [head]
        out += [f"  {name}: {text}" for name, text in self.violations]
        out += [f"  {key}: {value}" for key, value in sorted(self.metadata.items())]
        if self.resource:
            out.append(f"  resource: {self.resource}")
        if self.retry_after_seconds is not None:
            out.append(f"  retry after {self.retry_after_seconds:g} s")
        hint = HINTS.get(self.status_code) if self.status_code else None
        if hint:
            out.append(f"  hint: {hint.format(address=address)}")
        return out


def retry_delay(error: grpc.RpcError) -> float | None:
    """How long to wait before trying again, when the server said so (rate limits)."""
    found = CallError.of(error)
    if found.status_code != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    return found.retry_after_seconds


def _status_of(call: grpc.Call) -> status_pb2.Status | None:
    try:
        trailers: Any = call.trailing_metadata() or ()
    except Exception:  # an error raised by something else than a finished call
        return None
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY:
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None


def status_lines(status: status_pb2.Status) -> list[str]:
    """A `google.rpc.Status` carried inside a message (a job's or a file's error)."""
    code = grpc.StatusCode.UNKNOWN.name
    for member in grpc.StatusCode:
        if member.value[0] == status.code:
            code = member.name
    reason = ""
    violations: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [f"  {v.field}: {v.description}" for v in bad.field_violations]
    text = f"{code}: {status.message}"
    if reason:
        text += f" (reason {reason})"
    return [text, *violations]
