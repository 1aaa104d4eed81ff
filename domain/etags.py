"""Entity tags (AIP-154) for optimistic concurrency.

A resource's etag is its revision, a counter every real update increments, written as a
quoted decimal: revision 3 is the etag `"3"` (the quotes are part of the value, as in an
HTTP ETag header). Clients treat it as opaque and send back what they read; an empty etag
asks for an unconditional write.
"""

from __future__ import annotations

from domain.errors import Aborted


def etag(revision: int) -> str:
    return f'"{revision}"'


def check(sent: str, revision: int, resource_type: str, resource_name: str) -> None:
    """Raise Aborted when the caller sent an etag that is not the current one."""
    if sent and sent != etag(revision):
        raise Aborted(
            f"{resource_name} was changed since it was read (etag {sent} is not current); "
            "read it again and retry",
            reason="ETAG_MISMATCH",
            resource_type=resource_type,
            resource_name=resource_name,
        )
