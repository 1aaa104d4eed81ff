"""Where the server is, which token to send, and the channel that carries both.

Resolution, first match wins:

- address: `--address`, `STRIDE_CLI_ADDRESS`, the server's own `STRIDE_LISTEN_ADDRESS`
  (environment, then `.env` in the working directory; a wildcard host means this
  machine), else the server's default `127.0.0.1:50051`;
- token: `--token`, `STRIDE_CLI_TOKEN`, the server's `STRIDE_ADMIN_TOKEN`, and on the
  embedded default (no `STRIDE_DATABASE_URL`) the `admin_token` file the server writes
  into its data directory (`STRIDE_DATA_DIR`, default `.stride-data`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import click
import grpc
from stride.v1 import (
    activity_pb2_grpc,
    analytics_pb2_grpc,
    athlete_pb2_grpc,
    job_pb2_grpc,
    sync_pb2_grpc,
)

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_DATA_DIR = ".stride-data"
# The file the server writes its generated admin token to (core.settings.ADMIN_TOKEN_FILE;
# repeated here so the client never imports the server's packages).
ADMIN_TOKEN_FILE = "admin_token"
WILDCARD_HOSTS = {"", "0.0.0.0", "[::]", "::"}
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def dotenv(path: Path = Path(".env")) -> dict[str, str]:
    """`KEY=VALUE` lines of a `.env` file (the server reads the same file)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _setting(name: str, environ: Mapping[str, str], file_values: Mapping[str, str]) -> str | None:
    value = environ.get(name)
    if value is None:
        value = file_values.get(name)
    return value or None


def resolve_address(
    flag: str | None, environ: Mapping[str, str], file_values: Mapping[str, str]
) -> str:
    if flag:
        return flag
    explicit = environ.get("STRIDE_CLI_ADDRESS")
    if explicit:
        return explicit
    listen = _setting("STRIDE_LISTEN_ADDRESS", environ, file_values)
    if not listen:
        return DEFAULT_ADDRESS
    host, _, port = listen.rpartition(":")
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"{host}:{port}"


def resolve_token(
    flag: str | None, environ: Mapping[str, str], file_values: Mapping[str, str]
) -> str | None:
    if flag:
        return flag
    explicit = environ.get("STRIDE_CLI_TOKEN") or _setting(
        "STRIDE_ADMIN_TOKEN", environ, file_values
    )
    if explicit:
        return explicit
    if _setting("STRIDE_DATABASE_URL", environ, file_values):
        return None  # not embedded: no data directory holds a token for us
    data_dir = Path(_setting("STRIDE_DATA_DIR", environ, file_values) or DEFAULT_DATA_DIR)
    try:
        return (data_dir / ADMIN_TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


@dataclass
class Connection:
    """The resolved address and token, with a lazily opened channel and its stubs."""

    address: str
    token: str | None
    _channels: list[grpc.Channel] = field(default_factory=list)

    @classmethod
    def resolve(
        cls,
        address: str | None,
        token: str | None,
        environ: Mapping[str, str] | None = None,
    ) -> Connection:
        env = os.environ if environ is None else environ
        file_values = dotenv()
        return cls(
            resolve_address(address, env, file_values), resolve_token(token, env, file_values)
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    @cached_property
    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(
            self.address,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._channels.append(channel)
        return channel

    @cached_property
    def athletes(self) -> athlete_pb2_grpc.AthleteServiceStub:
        return athlete_pb2_grpc.AthleteServiceStub(self.channel)

    @cached_property
    def activities(self) -> activity_pb2_grpc.ActivityServiceStub:
        return activity_pb2_grpc.ActivityServiceStub(self.channel)

    @cached_property
    def analytics(self) -> analytics_pb2_grpc.AnalyticsServiceStub:
        return analytics_pb2_grpc.AnalyticsServiceStub(self.channel)

    @cached_property
    def jobs(self) -> job_pb2_grpc.JobServiceStub:
        return job_pb2_grpc.JobServiceStub(self.channel)

    @cached_property
    def sync(self) -> sync_pb2_grpc.SyncServiceStub:
        return sync_pb2_grpc.SyncServiceStub(self.channel)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


def athlete_name(value: str | None) -> str:
    """`athletes/ID` from an id or a full name; a usage error when there is none."""
    if not value:
        raise click.UsageError(
            "no athlete: pass --athlete ID (or athletes/ID), or set STRIDE_CLI_ATHLETE"
        )
    value = value.strip().strip("/")
    if value.startswith("athletes/"):
        return value
    if "/" in value:
        raise click.BadParameter(f"{value!r} is not an athlete id or athletes/ID")
    return f"athletes/{value}"


def child_name(value: str, collection: str, athlete: str | None) -> str:
    """`athletes/A/<collection>/ID` from a full name, or from an id with --athlete."""
    value = value.strip().strip("/")
    if value.startswith("athletes/"):
        parts = value.split("/")
        if len(parts) != 4 or parts[2] != collection:
            raise click.BadParameter(
                f"{value!r} is not a name of the form athletes/ID/{collection}/ID"
            )
        return value
    if "/" in value:
        raise click.BadParameter(f"{value!r} is not an id or athletes/ID/{collection}/ID")
    return f"{athlete_name(athlete)}/{collection}/{value}"
