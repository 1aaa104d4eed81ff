"""Listening sockets: a port in use is refused unless sharing it was configured.

gRPC turns SO_REUSEPORT on by default, so a second server started on a busy port would
silently join the first and receive half of its calls. Sharing a port is only right when
several processes are deliberately run as one service (STRIDE_REUSE_PORT).
"""

from __future__ import annotations

import errno
import socket

import grpc

from core.addresses import ListenError, describe

# Ping idle connections every 5 minutes and drop those that do not answer in 20 s: a
# client that vanished without closing its connection frees what its calls still hold.
KEEPALIVE_MS = 300_000
KEEPALIVE_TIMEOUT_MS = 20_000


def server_options(*, reuse_port: bool) -> list[tuple[str, int]]:
    return [
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ]


def add_port(server: grpc.aio.Server, address: str, *, reuse_port: bool) -> int:
    """Bind `address` (HOST:PORT) and return the port, or raise ListenError."""
    if not reuse_port:
        # gRPC's own failure says only "Failed to bind" (and logs a C-level line), so look
        # first: a port someone else listens on is the common case and deserves a clear word.
        busy = probe(address)
        if busy is not None and busy.errno == errno.EADDRINUSE:
            raise ListenError(describe(address, busy))
    try:
        return server.add_insecure_port(address)
    except RuntimeError:
        reason = probe(address)
        raise ListenError(
            describe(address, reason) if reason else f"cannot listen on {address}"
        ) from None


def probe(address: str) -> OSError | None:
    """Why binding `address` fails right now (None if it would succeed or the port is 0).

    Binds like gRPC does (SO_REUSEADDR, no SO_REUSEPORT), on every address the host resolves to.
    """
    host, _, port_text = address.rpartition(":")
    port = int(port_text)
    if port == 0:
        return None
    try:
        candidates = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        return exc
    for family, kind, proto, _, sockaddr in candidates:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
        except OSError as exc:
            return exc
    return None
