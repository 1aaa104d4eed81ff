"""Prometheus metrics over HTTP on their own address (servers, workers, the supervisor)."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from core.addresses import ListenError, describe


class MetricsEndpoint:
    """Serves `registry`: the process's own metrics by default; the supervisor of several
    server processes passes a registry that reads every process's files instead."""

    def __init__(self, address: str, registry: CollectorRegistry = REGISTRY) -> None:
        host, _, port = address.rpartition(":")
        try:
            server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
        except OSError as exc:
            raise ListenError(f"metrics: {describe(address, exc)}") from None
        self._server: WSGIServer = server
        self.port: int = server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
