"""Listening addresses: what a process says when it cannot listen on one (the gRPC server,
the metrics endpoints of servers and workers)."""

from __future__ import annotations

import errno
import socket


class ListenError(RuntimeError):
    """An address cannot be listened on; the message names it and says why."""


def describe(address: str, error: OSError) -> str:
    """One line naming the address and the reason, for the operator."""
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host of {address}: {error.strerror}"
    if error.errno == errno.EADDRINUSE:
        return f"address {address} is already in use"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"address {address} is not an address of this machine"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"not permitted to listen on {address}"
    return f"cannot listen on {address}: {error.strerror or error}"
