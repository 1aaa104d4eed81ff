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

The web dashboard (web/, see README "Dashboard") is served by Envoy itself: one
`direct_response` route per file under /dashboard/ (`/` redirects there), each file read by
Envoy when it loads the config, so an edit of web/ needs an Envoy restart. Chart.js comes from
node_modules (`npm install`, pinned in package-lock.json). `--web-root` and `--vendor-root`
move them, `--dashboard-path` names where an Envoy in a container reads them (compose mounts
them there: `make compose-gateway`), and `--no-dashboard` leaves the routes out.
"""

from __future__ import annotations

import argparse
import json
import re
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
WEB_ROOT = HERE.parent / "web"
VENDOR_ROOT = HERE.parent / "node_modules"
DASHBOARD = "/dashboard/"
JS = "text/javascript; charset=utf-8"
# The dashboard's files: URL path under DASHBOARD, root ("web" or "vendor"), path in that
# root, content type.
WEB_FILES: tuple[tuple[str, str, str, str], ...] = (
    ("", "web", "index.html", "text/html; charset=utf-8"),
    ("app.js", "web", "app.js", JS),
    ("app.css", "web", "app.css", "text/css; charset=utf-8"),
    ("vendor/chart.umd.js", "vendor", "chart.js/dist/chart.umd.js", JS),
)
# The page calls only its own origin; Chart.js sets inline styles on its canvases.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


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
    # The dashboard's files (web/) and Chart.js (node_modules); None leaves the dashboard out.
    web_root: Path | None = WEB_ROOT
    vendor_root: Path = VENDOR_ROOT
    # Where Envoy reads the dashboard's files, when not where they are read here (a
    # container): `<dashboard_path>/web/...` and `<dashboard_path>/vendor/...`.
    dashboard_path: str | None = None

    def dashboard_routes(self) -> tuple[list[dict[str, object]], int]:
        """The dashboard's routes (ahead of the API's) and the largest file's size."""
        if self.web_root is None:
            return [], 0
        roots = {"web": self.web_root, "vendor": self.vendor_root}
        # Not API calls: the transcoder (which refuses paths it does not know) is off.
        no_transcoder = {
            "envoy.filters.http.grpc_json_transcoder": {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "disabled": True,
            }
        }
        routes: list[dict[str, object]] = [
            {
                "match": {"path": path},
                "redirect": {"path_redirect": DASHBOARD, "response_code": "FOUND"},
                "typed_per_filter_config": no_transcoder,
            }
            for path in ("/", DASHBOARD.rstrip("/"))
        ]
        largest = 0
        for url, root, relative, content_type in WEB_FILES:
            file = (roots[root] / relative).resolve()
            if not file.is_file():
                hint = " (npm install)" if root == "vendor" else ""
                raise ValueError(f"the dashboard needs {file}{hint}; or pass --no-dashboard")
            largest = max(largest, file.stat().st_size)
            served = f"{self.dashboard_path}/{root}/{relative}" if self.dashboard_path else file
            headers = {
                "content-type": content_type,
                "cache-control": "no-cache",
                "x-content-type-options": "nosniff",
            }
            if not url:
                headers["content-security-policy"] = CONTENT_SECURITY_POLICY
            routes.append(
                {
                    "match": {"path": DASHBOARD + url},
                    "direct_response": {"status": 200, "body": {"filename": str(served)}},
                    "response_headers_to_add": [
                        {
                            "header": {"key": key, "value": value},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                        for key, value in headers.items()
                    ],
                    "typed_per_filter_config": no_transcoder,
                }
            )
        # Anything else under /dashboard/: a 404 here, not a call to the server.
        routes.append(
            {
                "match": {"prefix": DASHBOARD},
                "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}},
                "typed_per_filter_config": no_transcoder,
            }
        )
        return routes, largest

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
        routes, largest = self.dashboard_routes()
        # Envoy refuses direct responses above this size (4 KiB by default).
        values["max_direct_response_bytes"] = max(4096, largest)
        text = TEMPLATE.read_text() if template is None else template
        substitutions = {name: json.dumps(value) for name, value in values.items()}
        # Routes are items of a block sequence: one `- {json}` line each, at the indent of
        # the placeholder's line.
        placeholder = re.search(r"^( *)\$\{dashboard_routes\}", text, re.MULTILINE)
        indent = placeholder.group(1) if placeholder else ""
        substitutions["dashboard_routes"] = (
            f"\n{indent}".join(f"- {json.dumps(route)}" for route in routes)
            or "# (no dashboard: --no-dashboard)"
        )
        return string.Template(text).substitute(substitutions)


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
    parser.add_argument(
        "--web-root", type=Path, default=WEB_ROOT, help="the dashboard's files (default: web/)"
    )
    parser.add_argument(
        "--vendor-root",
        type=Path,
        default=VENDOR_ROOT,
        help="node_modules, where the dashboard's Chart.js is (default: ./node_modules)",
    )
    parser.add_argument(
        "--dashboard-path",
        help="where Envoy reads the dashboard's files (DIR/web/..., DIR/vendor/...) when not "
        "where they are read here (a container; default: the same)",
    )
    parser.add_argument(
        "--no-dashboard", action="store_true", help="serve no dashboard (only the API)"
    )
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
        web_root=None if args.no_dashboard else args.web_root,
        vendor_root=args.vendor_root,
        dashboard_path=args.dashboard_path,
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
