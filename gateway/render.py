"""Render gateway/envoy.yaml (a template) into the Envoy config for one deployment.

    python -m gateway.render --listen 127.0.0.1:8080 --upstream 127.0.0.1:50051 \\
        --cors-origin http://localhost:8080 --out build/envoy.yaml

Every `${name}` of the template is filled with a JSON value (JSON is YAML), so lists such
as the upstream endpoints and the CORS origins need no YAML quoting rules. The services the
transcoder serves are read from the descriptor set (every `stride.*` service in it), so a
new service needs no edit here. `--upstream` and `--cors-origin` repeat or take
comma-separated lists; upstream host names are resolved by Envoy (STRICT_DNS, every address
of every name is an endpoint). In a container, `--descriptor-path` is where Envoy finds
gen/stride.binpb (mounted), and the admin interface stays on the container's 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "envoy.yaml"
DESCRIPTOR = HERE.parent / "gen" / "stride.binpb"
# JSON bodies of REST calls; uploads stream past this limit (their own limit is the server's).
DEFAULT_JSON_BODY_LIMIT = 2**20
# Above the server's WatchJob heartbeat (STRIDE_WATCH_HEARTBEAT_SECONDS, 15 s by default).
DEFAULT_STREAM_IDLE_SECONDS = 300


def split_host_port(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT` for IPv6) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} must look like HOST:PORT with a port from 0 to 65535")
    return host.removeprefix("[").removesuffix("]"), int(port)


def services_in(descriptor: Path) -> list[str]:
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    return sorted(
        f"{file.package}.{service.name}"
        for file in files.file
        if file.package.startswith("stride.")
        for service in file.service
    )


def _origin_matcher(origin: str) -> dict[str, object]:
    if origin == "*":
        return {"prefix": ""}
    return {"exact": origin.rstrip("/")}


@dataclass
class Gateway:
    listen: str
    upstreams: Sequence[str]
    cors_origins: Sequence[str] = field(default_factory=list)
    admin_port: int = 9901
    descriptor: Path = DESCRIPTOR
    # Where Envoy reads the descriptor set, when not where it is read here (a container).
    descriptor_path: str | None = None
    json_body_limit: int = DEFAULT_JSON_BODY_LIMIT
    stream_idle_seconds: int = DEFAULT_STREAM_IDLE_SECONDS

    def render(self, template: str | None = None) -> str:
        if not self.upstreams:
            raise ValueError("at least one upstream is needed")
        listen_host, listen_port = split_host_port(self.listen)
        endpoints = []
        for upstream in self.upstreams:
            host, port = split_host_port(upstream)
            endpoints.append(
                {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
            )
        values: dict[str, object] = {
            "listen_host": listen_host,
            "listen_port": listen_port,
            "admin_port": self.admin_port,
            "upstreams": endpoints,
            "cors_origins": [_origin_matcher(origin) for origin in self.cors_origins],
            "descriptor": self.descriptor_path or str(self.descriptor.resolve()),
            "services": services_in(self.descriptor),
            "json_body_limit": self.json_body_limit,
            "stream_idle_timeout": f"{self.stream_idle_seconds}s",
        }
        text = TEMPLATE.read_text() if template is None else template
        return string.Template(text).substitute(
            {name: json.dumps(value) for name, value in values.items()}
        )


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.render", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT Envoy serves on")
    parser.add_argument(
        "--upstream",
        action="append",
        help="HOST:PORT of a Stride server (repeat for several; default 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="an origin browsers may call from, e.g. http://localhost:8080 (repeat; '*' for any)",
    )
    parser.add_argument("--admin-port", type=int, default=9901, help="admin port on 127.0.0.1")
    parser.add_argument(
        "--descriptor", type=Path, default=DESCRIPTOR, help="the descriptor set (services)"
    )
    parser.add_argument(
        "--descriptor-path", help="the descriptor set's path as Envoy sees it (default: the same)"
    )
    parser.add_argument("--json-body-limit", type=int, default=DEFAULT_JSON_BODY_LIMIT)
    parser.add_argument("--stream-idle-seconds", type=int, default=DEFAULT_STREAM_IDLE_SECONDS)
    parser.add_argument("--out", type=Path, help="where to write the config (default: stdout)")
    args = parser.parse_args(argv)
    gateway = Gateway(
        listen=args.listen,
        upstreams=_split(args.upstream or ["127.0.0.1:50051"]),
        cors_origins=_split(args.cors_origin),
        admin_port=args.admin_port,
        descriptor=args.descriptor,
        descriptor_path=args.descriptor_path,
        json_body_limit=args.json_body_limit,
        stream_idle_seconds=args.stream_idle_seconds,
    )
    try:
        text = gateway.render()
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
