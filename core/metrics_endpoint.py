"""Prometheus metrics over HTTP on their own address (servers and workers)."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from core.addresses import ListenError, describe


class MetricsEndpoint:
    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        try:
            server, _thread = start_http_server(int(port), addr=host.strip("[]"))
        except OSError as exc:
            raise ListenError(f"metrics: {describe(address, exc)}") from None
        self._server: WSGIServer = server
        self.port: int = server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
